-- The watch (`<code>_watch` DAG, rpu.watch): alert history. One row per alert: a transmission gap, a rejected
-- file, an abnormal establishment-day, a drop of the DP coding rate, a shadow establishment ready to switch.
-- A row is found again every day by (region, kind, etab, key), so an alert is mailed only when it changes state:
--   new (pending_notice 'new', or 'reprise' when first seen already 7 days old),
--   a transmission gap still open at 7 days ('reprise', once), a gap closed ('closed': back to normal).
-- `pending_notice` is set when the state changes and cleared once the mails are sent (at-least-once: a failed
-- mail is sent again by the next try). No patient data: `details` holds counts, dates, FINESS and file names.
-- The region column is redundant in a regional database; it lets a dashboard union several regions.

CREATE TABLE alert (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    region         text        NOT NULL,
    kind           text        NOT NULL CHECK (kind IN ('missing', 'rejected', 'abnormal_day', 'dp_drop',
                                                         'shadow_ready')),
    etab           text        NOT NULL,  -- FINESS (ET); for a file rejected before its establishment is known,
                                          -- the FINESS of its header or its sender, else ''
    key            text        NOT NULL,  -- missing: first day without transmission (or 'never'); rejected: file
                                          -- id; abnormal_day: the day; dp_drop, shadow_ready: first day seen
    state          text        NOT NULL CHECK (state IN ('open', 'closed')),
    first_seen     timestamptz NOT NULL,  -- cut-off of the watch run that found it
    last_seen      timestamptz NOT NULL,  -- cut-off of the latest watch run that still found it
    closed_at      timestamptz,           -- cut-off of the run that found it over (events: first_seen)
    notified_state text        CHECK (notified_state IN ('new', 'reprise', 'closed')),
    last_notified  timestamptz,           -- when the mails of notified_state were sent
    notifications  integer     NOT NULL DEFAULT 0,
    pending_notice text        CHECK (pending_notice IN ('new', 'reprise', 'closed')),
    details        jsonb       NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT alert_identity UNIQUE (region, kind, etab, key),
    CONSTRAINT alert_closed_at CHECK ((state = 'closed') = (closed_at IS NOT NULL))
);
CREATE INDEX alert_open_idx ON alert (region, etab) WHERE state = 'open';
CREATE INDEX alert_pending_idx ON alert (region) WHERE pending_notice IS NOT NULL;
CREATE INDEX alert_first_seen_idx ON alert (region, first_seen);

-- For dashboards: the open alerts, with their age in days (whole days since first seen).
CREATE VIEW open_alert AS
SELECT id, region, kind, etab, key, first_seen, last_seen, notified_state, last_notified, details,
       extract(day FROM (last_seen - first_seen))::integer AS open_days
FROM alert
WHERE state = 'open';

-- The watch's daily look-ups on received files: the last accepted file of each establishment, the files
-- rejected in the last day.
CREATE INDEX received_file_accepted_etab_received ON received_file (etab, received_at) WHERE status = 'accepted';
CREATE INDEX received_file_rejected_received ON received_file (received_at) WHERE status = 'rejected';
