-- bench/export.py only: the same rows as an ATIH export, every column, no rendering (the floor of an export).
SELECT * FROM visit WHERE etab = %(etab)s AND entry_date BETWEEN %(start)s AND %(end)s
