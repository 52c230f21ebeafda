-- Outbound flows: every file prepared for a recipient (InVS/SpF, ARS, ATIH) and what became of it.
-- A slot is (recipient, kind, establishment, period, run): a retry of the same run re-sends the very file
-- prepared the first time (same name, same sha256), never a second, different one.

CREATE TABLE send_ledger (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recipient    text        NOT NULL CHECK (recipient IN ('invs', 'ars', 'atih')),
    kind         text        NOT NULL CHECK (kind IN ('daily', 'cumulative', 'reprise')),
    etab         char(9),                 -- NULL for a region-wide file (ARS export)
    period_start date        NOT NULL,
    period_end   date        NOT NULL,
    run_id       text        NOT NULL,
    file_name    text        NOT NULL,
    sha256       char(64)    NOT NULL,
    size_bytes   bigint      NOT NULL,
    visits       integer     NOT NULL,
    local_path   text        NOT NULL,    -- the prepared file, kept in the outbox
    remote_path  text,
    status       text        NOT NULL CHECK (status IN ('prepared', 'sent', 'failed')),
    error        text,
    attempts     integer     NOT NULL DEFAULT 0,
    prepared_at  timestamptz NOT NULL DEFAULT now(),
    sent_at      timestamptz
);
CREATE UNIQUE INDEX send_ledger_slot
    ON send_ledger (recipient, kind, coalesce(etab, ''), period_start, period_end, run_id, file_name);
CREATE INDEX send_ledger_recipient_time ON send_ledger (recipient, prepared_at);

-- ATIH anonymisation: postal code → PMSI geographic code of residence (loaded from a file by `rpu geo load`).
CREATE TABLE pmsi_geo (
    cp        char(5) PRIMARY KEY,
    code_geo  char(5) NOT NULL,
    source    text    NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now()
);

-- Exports are rendered by PostgreSQL itself (one line of text per visit, streamed by COPY ... TO STDOUT), with
-- one format() per visit. Templates are written with chr(1)/chr(2) standing for the tags' < and > (neither can
-- occur in XML text): a line is then either escaped whole when one of its values holds &, <, >, \, tab or a
-- newline (rare: rpu_xml_line) or just given its brackets back (rpu_xml_brackets). Backslash, tab and
-- newlines become character references, so that a line of COPY's text output is the XML as is.
CREATE FUNCTION rpu_xml_template(template text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT
AS $$ SELECT replace(replace(template, '<', chr(1)), '>', chr(2)) $$;

CREATE FUNCTION rpu_xml_brackets(line text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT
AS $$ SELECT replace(replace(line, chr(1), '<'), chr(2), '>') $$;

CREATE FUNCTION rpu_xml_line(line text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT
AS $$ SELECT rpu_xml_brackets(replace(replace(replace(replace(replace(replace(replace(
        line, '&', '&amp;'), '<', '&lt;'), '>', '&gt;'), E'\\', '&#92;'), E'\t', '&#9;'), E'\n', '&#10;'),
        E'\r', '&#13;')) $$;

-- The children of LISTE_DA / LISTE_ACTES (empty for an empty list).
CREATE FUNCTION rpu_xml_items(child text, vals text[]) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN cardinality(vals) > 0 THEN
        chr(1) || child || chr(2)
        || array_to_string(vals, chr(1) || '/' || child || chr(2) || chr(1) || child || chr(2))
        || chr(1) || '/' || child || chr(2)
        ELSE '' END $$;

-- Age in whole years at a date (NULL when unknown). Integer arithmetic on YYYYMMDD numbers: several times
-- cheaper than age(), which matters once per visit in an export of millions.
CREATE FUNCTION rpu_age(birth date, at date) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT
AS $$ SELECT floor(((date_part('year', at) * 10000 + date_part('month', at) * 100 + date_part('day', at))
                  - (date_part('year', birth) * 10000 + date_part('month', birth) * 100 + date_part('day', birth)))
                 / 10000)::integer $$;
