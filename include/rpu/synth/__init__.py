"""Realistic synthetic RPU 2006 files: daily sliding-window files, real-world variants, injected errors.

Everything is deterministic: a visit depends only on (FINESS, entry day, seed), so the files of consecutive
days re-send the same visits identically (the sliding window), and the same arguments give the same bytes.
Files are written as text chunks (never an XML tree), so memory stays flat whatever the size.

Main entry points (the modules: ``model`` the distributions, ``visits`` one day's visits, ``render`` the XML,
``daily`` the daily files and injected errors, ``big`` one big file)
-----------------
- ``visits_for_day(finess, day, seed, mean_per_day)`` — the visits that entered on one day.
- ``write_file(path, finess, visits, extract=..., period=...)`` — one OSCOUR file, streamed.
- ``daily_file(out_dir, finess, send_day, seed=..., mean_per_day=...)`` — the file an establishment sends on
  ``send_day`` (EXTRACT ``send_day 02:xx:xx``, entry dates ``send_day-window_days`` … ``send_day-1``).
- ``generate(region, out_dir, start=..., days=...)`` — every establishment, every send day, in
  ``out_dir/<finess>/RPU_<finess>_<YYYYMMDDHHMMSS>.xml``; ``plan(...)`` says beforehand what each file is.
- ``big_file(path, finess, n_visits)`` — one file of exactly ``n_visits`` visits (benchmarks).
- the ``rpu synth`` subcommand: rpu.cli.synth.

Realism (clean generator)
-------------------------
Counts per day: Poisson around the establishment mean × weekday factor (Monday highest) × a mild winter
peak. Entry hours follow a daily curve (night trough, late-morning and early-evening peaks; flatter at
weekends). Ages 0–100 with infant, young-adult and elderly peaks (paediatric / adult units restrict them,
from the establishment name); NAISSANCE = entry − age. A clinical category (trauma, cardio, respiratory, …)
drives MOTIF (SFMU-like codes), DP (≈ 60 frequent CIM-10 codes, ≈ 85 % filled), gravity, transport,
hospitalisation (≈ 20 %: MODE_SORTIE 6/7, DESTINATION 1–4, hospital ORIENT), acts and length of stay
(log-normal, median ≈ 3 h, about 1 % over 24 h, capped at 48 h). Coded values always come from ``rpu_format`` domains and respect its
``*_BY_MODE_*`` coherence tables; some items are left empty at realistic rates (PROVENANCE, MOTIF,
TRANSPORT_PEC, GRAVITE, DP, rarely NAISSANCE). MODE_SORTIE 9 (death) has empty DESTINATION and ORIENT.
CP: mostly a dozen local codes (département from the FINESS; the demo's fictional 99… uses 58), some
``<dep>999``, ``99999`` and ``99xxx`` (abroad), with fictional accented COMMUNE names.
Establishment sizes in ``generate`` come from the name (``establishment_profile``): CHU/CHR 150–220 a day,
clinics 15–35, other hospitals 40–110, × ``scale``; "pédiatrique" units get children only (and ×0.55),
"adultes" units 15 years and over.

Sliding window: a visit is identical in every file that carries it, except that on its *first* send
(entry day = send day − 1) about 10 % of visits have no diagnosis coded yet (empty DP and LISTE_DA); the
next file carries the final coding.

Real-world variants (``VARIANTS``; per establishment in ``generate``, or ``daily_file(variant=...)``)
-------------------------------------------------------------------------------------------------
- ``no_declaration``: no ``<?xml …?>`` line, UTF-8 bytes.
- ``latin1``: declared ISO-8859-1 (accented COMMUNE as Latin-1 bytes; characters outside Latin-1 such as
  ``œ`` become character references); empty items written ``<DP/>``.
- ``cp1252_undeclared``: no declaration, Windows-1252 bytes (``é``, typographic apostrophe ``’`` in
  COMMUNE): the bytes are not valid UTF-8 (a reader must fall back to Windows-1252).
- ``one_passages_per_patient``: each PATIENT wrapped in its own PASSAGES.
- ``seconds``: ENTREE / SORTIE written ``JJ/MM/AAAA HH:MM:SS`` (seconds derived from the visit, stable).
- ``empty_datefin``: ``<DATEFIN></DATEFIN>`` (the period ends at the last entry date in the file).
- ``regional_extras``: extra elements at the end of each PATIENT: HMED, CIRCONSTANCE (sometimes free text
  with ``&``/``<``, escaped), ENTREE_UHCD, MODE_SORTIE_UHCD, DESTINATION_UHCD, ORIENT_UHCD (filled only
  for ORIENT=UHCD, empty elements otherwise).

Injectable errors (``ERRORS``; ``generate(errors=...)``, each injected exactly once, placed by seed)
--------------------------------------------------------------------------------------------------
Rejected files are *additional* files sent later the same day (EXTRACT ``send_day 1x:xx:xx``, a manual
re-send), so the regular daily series stays complete; the two file-content errors alter the regular
daily file of that day (in a region too small for distinct slots, they too become additional files).
``generate`` writes files in arrival order (EXTRACT), day by day.

- ``malformed``: a daily file truncated at 40–80 % of its bytes (no closing tags): not well-formed → reject.
- ``unknown_finess``: header FINESS is a valid (Luhn) FINESS of no establishment of the region → reject.
- ``other_finess``: header FINESS (ET) of ANOTHER establishment of the region, file dropped in this
  establishment's directory → reject (it must not replace the other establishment's data). Needs two
  establishments.
- ``missing_finess``: no FINESS element in the header → reject.
- ``missing_extract``: no EXTRACT element in the header → reject.
- ``bad_entree``: the regular daily file, with three visits whose ENTREE is empty, an impossible date
  (``31/02/… 25:61``) or a two-digit year (``05/01/24 10:12``): those visits cannot be stored, the others can.
- ``quality``: the regular daily file, with visits carrying out-of-domain values (SEXE X, MODE_ENTREE 0,
  TRANSPORT TAXI, GRAVITE 6, ORIENT DOMICILE), incoherent blocks (MODE_ENTREE 8 + PROVENANCE 1,
  MODE_SORTIE 8 + DESTINATION 1 + ORIENT REA, MODE_SORTIE 6 + empty DESTINATION + ORIENT FUGUE), age > 120,
  birth after entry, SORTIE before ENTREE, an 80 h stay, bad CIM-10 / CCAM codes, a bad CP, an ISO birth
  date → stored with quality flags, not rejected. ``QUALITY_CASES`` lists them in order.

File names always carry the FINESS of the directory (the sending establishment), whatever the header says.
Files are written to ``<name>.part`` and renamed, so an intake never sees a half-written file.
"""
from __future__ import annotations

# The package's public entry points, as listed above.
from rpu.synth.big import big_file, big_file_name
from rpu.synth.model import ERRORS, QUALITY_CASES, VARIANTS, Visit
from rpu.synth.daily import PlannedFile, daily_file, generate, plan, write_planned
from rpu.synth.render import file_name, write_file
from rpu.synth.visits import day_count, visits_for_day

__all__ = ["ERRORS", "QUALITY_CASES", "VARIANTS", "PlannedFile", "Visit", "big_file", "big_file_name", "daily_file",
           "day_count", "file_name", "generate", "plan", "visits_for_day", "write_file", "write_planned"]
