-- The national database (ATIH, Syrius platform): the cumulative files the regions send, as received.
-- One row per file looked at: accepted (counted), duplicate (same content as an accepted file of the region:
-- changes nothing) or rejected (why; a file refused for carrying identifying items keeps no count at all).
CREATE TABLE national_file (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    region        text        NOT NULL,
    file_name     text        NOT NULL,
    remote_path   text,                     -- where it was found on the Syrius SFTP server (NULL: by hand)
    sha256        char(64),
    size_bytes    bigint      NOT NULL DEFAULT 0,
    status        text        NOT NULL CHECK (status IN ('accepted', 'rejected', 'duplicate')),
    rule          text,                     -- the rule that rejected it
    message       text,
    finess        char(9),
    ordre         smallint,
    extract       timestamp,                -- EXTRACT of its header (the region's local time)
    period_start  date,
    period_end    date,
    year          smallint,
    rpu           integer,                  -- visits in the file
    duplicate_of  bigint REFERENCES national_file (id),
    superseded_by bigint REFERENCES national_file (id),   -- a newer file of the same FINESS_ordre and year
    received_at   timestamptz NOT NULL DEFAULT now(),
    delivered_at  timestamptz,              -- receipt written and file moved out of the drop directory
    CHECK (status <> 'accepted' OR (finess IS NOT NULL AND ordre IS NOT NULL AND extract IS NOT NULL
                                    AND period_start IS NOT NULL AND period_end IS NOT NULL AND rpu IS NOT NULL))
);
CREATE INDEX national_file_unit ON national_file (region, finess, ordre, year, extract) WHERE status = 'accepted';
CREATE INDEX national_file_name ON national_file (region, file_name);
CREATE INDEX national_file_remote ON national_file (remote_path, sha256);

-- The visits of an accepted file per month of entry (of its year).
CREATE TABLE national_file_month (
    file_id bigint   NOT NULL REFERENCES national_file (id) ON DELETE CASCADE,
    month   smallint NOT NULL CHECK (month BETWEEN 1 AND 12),
    rpu     integer  NOT NULL,
    PRIMARY KEY (file_id, month)
);

-- What the reconciliation has already mailed: a send found not conforming is told once per status.
CREATE TABLE national_told (
    region    text        NOT NULL,
    ledger_id bigint      NOT NULL,     -- send_ledger.id in the region's database
    status    text        NOT NULL,
    file_name text        NOT NULL,
    told_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (region, ledger_id, status)
);

-- The mail outbox of rpu.outbox (the tables of the regional database's migration 010): ATIH's mails wait here
-- while the SMTP server is down. IF NOT EXISTS: a national schema applied to a region's database (a small
-- installation, the demo) uses the outbox already there.
CREATE TABLE IF NOT EXISTS mail_outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    region      text        NOT NULL,
    template    text        NOT NULL,
    dedupe_key  text,
    subject     text        NOT NULL,
    body_text   text        NOT NULL,
    body_html   text        NOT NULL,
    recipients  text[]      NOT NULL,
    delivered   text[]      NOT NULL DEFAULT '{}',
    refused     jsonb       NOT NULL DEFAULT '{}',
    state       text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done')),
    attempts    integer     NOT NULL DEFAULT 0,
    last_error  text,
    queued_at   timestamptz NOT NULL DEFAULT now(),
    done_at     timestamptz
);
CREATE INDEX IF NOT EXISTS mail_outbox_pending ON mail_outbox (region, id) WHERE state = 'pending';
CREATE UNIQUE INDEX IF NOT EXISTS mail_outbox_dedupe ON mail_outbox (region, dedupe_key) WHERE dedupe_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS mail_refusal (
    region        text        NOT NULL,
    address       text        NOT NULL,
    code          integer     NOT NULL,
    message       text        NOT NULL,
    template      text        NOT NULL,
    first_refused timestamptz NOT NULL DEFAULT now(),
    last_refused  timestamptz NOT NULL DEFAULT now(),
    reported_at   timestamptz,
    PRIMARY KEY (region, address)
);
