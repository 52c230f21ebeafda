-- Replace the postal code → PMSI geographic code table (run in one transaction with the COPY that follows).
DELETE FROM pmsi_geo;
