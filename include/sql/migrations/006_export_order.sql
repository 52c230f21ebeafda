-- Exports read an establishment's visits in (entry day, load order) straight from an index instead of sorting
-- them: a sort of a year of one establishment costs more than reading it. This index replaces
-- visit_etab_day, whose uses (a day's cancel-and-replace, counts per establishment and day) it also serves.
CREATE INDEX visit_etab_day_id ON visit (etab, entry_date, id);
DROP INDEX visit_etab_day;

-- array_to_string() is STABLE, so an IMMUTABLE SQL function calling it is never inlined: it ran as a
-- function call per visit, ~2 µs each, most of the time of an export. STABLE, it is inlined.
ALTER FUNCTION rpu_xml_items(text, text[]) STABLE;

-- Visits are now written into the file by rpu.exports (escaping in Python, only for the rare values that
-- need it); these helpers of the former SQL rendering have no caller left.
DROP FUNCTION rpu_xml_line(text);
DROP FUNCTION rpu_xml_brackets(text);
DROP FUNCTION rpu_xml_template(text);
