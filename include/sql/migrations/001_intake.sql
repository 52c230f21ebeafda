-- Intake: received files, stored visits, rejected visits, and which file each establishment-day comes from.
-- One database per region, so no region column.

CREATE TABLE received_file (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    file_name       text        NOT NULL,
    sha256          char(64)    NOT NULL,
    size_bytes      bigint      NOT NULL,
    sender          char(9),                 -- FINESS (ET) of the SFTP directory the file came from
    finess          text,                    -- FINESS written in the header (ET or EJ)
    etab            char(9),                 -- the establishment (ET) the visits are stored under
    ordre           smallint,
    extract         timestamp,               -- EXTRACT, local time of the region
    period_start    date,                    -- effective period replaced (declared, else min/max entry)
    period_end      date,
    status          text        NOT NULL CHECK (status IN ('accepted', 'rejected', 'duplicate')),
    duplicate_of    bigint REFERENCES received_file (id),
    visits_total    integer     NOT NULL DEFAULT 0,
    visits_loaded   integer     NOT NULL DEFAULT 0,
    visits_rejected integer     NOT NULL DEFAULT 0,
    visits_flagged  integer     NOT NULL DEFAULT 0,
    days_applied    date[]      NOT NULL DEFAULT '{}',   -- days this file now provides
    days_kept_newer date[]      NOT NULL DEFAULT '{}',   -- days left to a file with a later EXTRACT
    errors          jsonb       NOT NULL DEFAULT '[]',
    warnings        jsonb       NOT NULL DEFAULT '[]',
    flags           jsonb       NOT NULL DEFAULT '{}',   -- quality rule → number of visits flagged
    per_day         jsonb       NOT NULL DEFAULT '{}',   -- entry date → accepted visits
    received_at     timestamptz NOT NULL DEFAULT now(),
    processed_at    timestamptz NOT NULL DEFAULT now(),
    archive_path    text,                    -- local archive copy
    remote_path     text                     -- where it was found on the intake SFTP server
);
CREATE INDEX received_file_sha256 ON received_file (sha256);
CREATE INDEX received_file_etab_extract ON received_file (etab, extract);

CREATE TABLE visit (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- no FOREIGN KEY: checking it row by row doubles the cost of a load's INSERT; the loader writes the
    -- received_file row first in the same transaction, and nothing else writes visits
    file_id       bigint    NOT NULL,
    etab          char(9)   NOT NULL,
    ordre         smallint  NOT NULL,
    idx           integer   NOT NULL,        -- position in its file
    line          integer,
    entry_date    date      NOT NULL,
    cp            text,
    commune       text,
    naissance     date,
    sexe          text,
    entree        timestamp NOT NULL,
    mode_entree   text,
    provenance    text,
    transport     text,
    transport_pec text,
    motif         text,
    gravite       text,
    dp            text,
    da            text[]    NOT NULL DEFAULT '{}',
    actes         text[]    NOT NULL DEFAULT '{}',
    sortie        timestamp,
    mode_sortie   text,
    destination   text,
    orient        text,
    extra         jsonb     NOT NULL DEFAULT '{}',   -- regional elements, raw
    raw_invalid   jsonb     NOT NULL DEFAULT '{}',   -- unreadable dates as written
    flags         text[]    NOT NULL DEFAULT '{}'    -- quality rules the visit breaks
);
CREATE INDEX visit_etab_day ON visit (etab, entry_date);
CREATE INDEX visit_file ON visit (file_id);

CREATE TABLE rejected_visit (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    file_id  bigint  NOT NULL REFERENCES received_file (id),
    idx      integer NOT NULL,
    line     integer,
    rule     text    NOT NULL,
    message  text    NOT NULL,
    raw      jsonb   NOT NULL                -- the items as received, to let the establishment correct them
);
CREATE INDEX rejected_visit_file ON rejected_visit (file_id);

-- For each establishment-day, the file whose data is stored: the replacement rule compares EXTRACTs per day,
-- so files can arrive in any order and an older extraction never overwrites a newer one.
CREATE TABLE day_source (
    etab    char(9)   NOT NULL,
    ordre   smallint  NOT NULL,
    day     date      NOT NULL,
    file_id bigint    NOT NULL REFERENCES received_file (id),
    extract timestamp NOT NULL,
    PRIMARY KEY (etab, ordre, day)
);
