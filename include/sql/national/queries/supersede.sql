-- The newest accepted file of a FINESS_ordre and year (latest EXTRACT, then latest received) supersedes the others.
WITH unit AS (
    SELECT id, first_value(id) OVER (ORDER BY extract DESC, received_at DESC, id DESC) AS latest
    FROM national_file
    WHERE region = %(region)s AND finess = %(finess)s AND ordre = %(ordre)s AND year = %(year)s
      AND status = 'accepted'
)
UPDATE national_file f
SET superseded_by = CASE WHEN unit.id = unit.latest THEN NULL ELSE unit.latest END
FROM unit
WHERE f.id = unit.id AND f.superseded_by IS DISTINCT FROM CASE WHEN unit.id = unit.latest THEN NULL ELSE unit.latest END;
