-- Mails are queued here before they are sent, so that none is lost while the SMTP server is down or refuses an
-- address: a mail stays `pending` until every address accepted it or refused it for good (5xx). A retry sends
-- only to the addresses still owed. Mails hold no patient data (counts, dates, FINESS, file names).
CREATE TABLE mail_outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    region      text        NOT NULL,
    template    text        NOT NULL,     -- include/templates/mail/<template>.*.j2
    dedupe_key  text,                     -- the same mail queued twice (a retried task) is queued once
    subject     text        NOT NULL,
    body_text   text        NOT NULL,
    body_html   text        NOT NULL,
    recipients  text[]      NOT NULL,
    delivered   text[]      NOT NULL DEFAULT '{}',   -- addresses the SMTP server accepted
    refused     jsonb       NOT NULL DEFAULT '{}',   -- address → {code, message}: refused for good, not retried
    state       text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done')),
    attempts    integer     NOT NULL DEFAULT 0,
    last_error  text,                     -- why the last attempt left addresses owed
    queued_at   timestamptz NOT NULL DEFAULT now(),
    done_at     timestamptz
);
CREATE INDEX mail_outbox_pending ON mail_outbox (region, id) WHERE state = 'pending';
CREATE UNIQUE INDEX mail_outbox_dedupe ON mail_outbox (region, dedupe_key) WHERE dedupe_key IS NOT NULL;

-- Addresses an SMTP server refused for good: told to the region's operations once (reported_at), not at every
-- mail; forgotten when the address accepts a mail again.
CREATE TABLE mail_refusal (
    region        text        NOT NULL,
    address       text        NOT NULL,
    code          integer     NOT NULL,
    message       text        NOT NULL,
    template      text        NOT NULL,   -- the mail refused first
    first_refused timestamptz NOT NULL DEFAULT now(),
    last_refused  timestamptz NOT NULL DEFAULT now(),
    reported_at   timestamptz,
    PRIMARY KEY (region, address)
);
