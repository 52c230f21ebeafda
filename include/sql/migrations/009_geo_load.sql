-- Every load of the postal code → PMSI geographic code table (pmsi_geo), by hand (`rpu geo load`) or from the
-- region file's `atih.geo_table` (by the ATIH sends). The file a region names is loaded again only when its
-- content changed since it was last loaded: a table loaded by hand stays in use until another load.
CREATE TABLE geo_load (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    origin    text        NOT NULL CHECK (origin IN ('manual', 'region')),
    path      text        NOT NULL,     -- the file as given (absolute)
    sha256    char(64)    NOT NULL,
    rows      integer     NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX geo_load_path ON geo_load (origin, path, id DESC);
