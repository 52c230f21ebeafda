"""rpu.watch without Airflow: cut-off windows, the anomaly rule (μ − 3σ after dropping days below μ − 2σ) and
the DP drop with hand-computed numbers, findings on a seeded real PostgreSQL, the alert history's state machine,
the mails (templates, recipients, no patient data) and `rpu watch`.

Files "received on day X" are loaded for real and dated back by support.seeding.Seeder."""
from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest

from rpu import intake, mail, store
from rpu.watch import alerts, rules
from rpu.watch import mails as watch_mails
from rpu.config import parse_region
from support.rpu_xml import rpu_file, visit
from support.seeding import PATIENT, PATIENT_TRACES, TZ, Seeder, usual

GOOD = "990000127"        # CH de Valbourg: active, has a technical contact
OTHER = "990000135"       # CH de Saint-Aurèle: active, no contact
SHADOW = "990000200"      # Clinique des Tilleuls: shadow, has a contact
CONTACT = "dsi@valbourg.example.org"
SHADOW_CONTACT = "si@tilleuls.example.org"
ARS = "veille@ars.example.org"
D = date(2026, 6, 16)     # a Tuesday: the watched day (cut-off 06:00 that morning)
CUT = datetime(2026, 6, 16, 6, 0, tzinfo=TZ)


def region_data(**overrides) -> dict:
    data = {
        "code": "demo", "name": "Région de démonstration", "timezone": "Europe/Paris",
        "alerts": {"ars": [ARS]},
        "establishments": [
            {"finess": GOOD, "name": "CH de Valbourg", "status": "active", "contact": CONTACT},
            {"finess": OTHER, "name": "CH de Saint-Aurèle", "status": "active"},
            {"finess": SHADOW, "name": "Clinique des Tilleuls", "status": "shadow", "contact": SHADOW_CONTACT},
        ],
    }
    data.update(overrides)
    return data


@pytest.fixture
def region(tmp_path):
    return dataclasses.replace(parse_region(region_data()), archive_dir=tmp_path / "archive")


@pytest.fixture
def seed(region, db, tmp_path) -> Seeder:
    return Seeder(region, db, tmp_path)


def find(region, db, now=CUT) -> rules.Findings:
    with store.connection(db) as conn:
        return rules.findings(conn, region, now)


def _no_patient_data(*texts: str) -> None:
    for text in texts:
        for trace in PATIENT_TRACES:
            assert trace not in text, trace


# --- cut-off windows -----------------------------------------------------------------------------------------

def test_the_watched_period_ends_at_the_latest_cut_off(region):
    prev, cut = rules.cutoffs(region, datetime(2026, 6, 16, 6, 0, tzinfo=TZ))
    assert (prev, cut) == (datetime(2026, 6, 15, 6, 0, tzinfo=TZ), CUT)
    # later the same day (a manual run at 14:00): still the morning's cut-off
    assert rules.cutoffs(region, datetime(2026, 6, 16, 14, 0, tzinfo=TZ))[1] == CUT
    # before the cut-off: the previous day's
    assert rules.cutoffs(region, datetime(2026, 6, 16, 5, 59, tzinfo=TZ))[1] == CUT - timedelta(days=1)
    # given in UTC: judged in the region's time zone (04:00 UTC is 06:00 in Paris in June)
    assert rules.cutoffs(region, datetime(2026, 6, 16, 4, 0, tzinfo=ZoneInfo("UTC")))[1] == CUT
    # across the change to summer time the cut-off stays at 06:00 local time (23 hours apart)
    prev, cut = rules.cutoffs(region, datetime(2026, 3, 29, 7, 0, tzinfo=TZ))
    assert (prev.hour, cut.hour, (cut.timestamp() - prev.timestamp()) / 3600) == (6, 6, 23)
    # another cut-off hour from the region file
    late = region.adjusted(watch={"cutoff": "08:30"})
    assert rules.cutoffs(late, datetime(2026, 6, 16, 8, 0, tzinfo=TZ))[1] == datetime(2026, 6, 15, 8, 30, tzinfo=TZ)
    with pytest.raises(ValueError, match="timezone-aware"):
        rules.cutoffs(region, datetime(2026, 6, 16, 6, 0))


def test_a_reception_belongs_to_the_day_of_the_next_cut_off(region):
    assert rules.window_day(datetime(2026, 6, 16, 3, 0, tzinfo=TZ), region) == D
    assert rules.window_day(datetime(2026, 6, 16, 6, 0, tzinfo=TZ), region) == D          # at the cut-off: in
    assert rules.window_day(datetime(2026, 6, 16, 6, 1, tzinfo=TZ), region) == D + timedelta(days=1)
    assert rules.window_day(datetime(2026, 6, 15, 22, 0, tzinfo=ZoneInfo("UTC")), region) == D   # 00:00 Paris


# --- the anomaly rule and the DP drop, by hand ---------------------------------------------------------------

def test_mu_minus_3_sigma_after_dropping_days_below_mu_minus_2_sigma():
    # Six Tuesdays: 95, 105, 100, 10, 95, 105.
    # All six: μ = 510 / 6 = 85; squares of the deviations 100 + 400 + 225 + 5625 + 100 + 400 = 6850,
    # σ = √(6850 / 5) = √1370 ≈ 37.01; μ − 2σ ≈ 10.97: the day with 10 visits is dropped.
    # The five kept: μ = 100; squares 25 + 25 + 0 + 25 + 25 = 100, σ = √(100 / 4) = 5; threshold μ − 3σ = 85.
    base = rules.baseline([95, 105, 100, 10, 95, 105])
    assert (base.mean, base.sd, base.threshold, base.used, base.dropped) == (100, 5, 85, 5, 1)
    assert rules.is_abnormal(84, base)
    assert not rules.is_abnormal(85, base)           # strictly below
    # without the drop the outlier would hide everything: μ − 3σ = 85 − 111.04 < 0
    assert 85 - 3 * 1370 ** 0.5 < 0


def test_anomaly_rule_edge_cases():
    assert rules.baseline([10, 11, 12]) is None     # fewer than MIN_HISTORY (4) comparable days: no judgement
    assert not rules.is_abnormal(0, None)
    # 4 days, nothing dropped: μ = 11, σ = √((1 + 1 + 1 + 1) / 3) ≈ 1.155, threshold ≈ 7.54
    base = rules.baseline([10, 12, 10, 12])
    assert base.dropped == 0 and base.mean == 11 and base.threshold == pytest.approx(11 - 3 * (4 / 3) ** 0.5)
    assert rules.is_abnormal(7, base) and not rules.is_abnormal(8, base)
    # a constant history (σ = 0): any lower count is below the threshold
    flat = rules.baseline([20, 20, 20, 20])
    assert (flat.threshold, rules.is_abnormal(19, flat), rules.is_abnormal(20, flat)) == (20, True, False)


def test_sudden_drop_of_the_dp_coding_rate():
    # baseline 90 %, 30 visits: binomial σ = √(0.9 × 0.1 / 30) ≈ 0.055; 3σ ≈ 0.164 < 20 points, so 20 points
    assert rules.dp_drop(0.70, 30, 0.90)
    assert not rules.dp_drop(0.71, 30, 0.90)
    # baseline 50 %, 20 visits: 3σ = 3 × √(0.25 / 20) ≈ 0.335 > 20 points: a drop of 25 points is noise
    assert not rules.dp_drop(0.25, 20, 0.50)
    assert rules.dp_drop(0.16, 20, 0.50)
    # fewer than 20 visits where a DP is expected: not judged
    assert not rules.dp_drop(0.0, 19, 0.90)


# --- findings on seeded data --------------------------------------------------------------------------------

def test_all_well_finds_nothing(region, db, seed):
    for etab in (GOOD, OTHER):
        seed.normal(etab, D - timedelta(days=3), D)
    f = find(region, db)
    assert not f.anything, watch_mails.describe(f)
    assert f.missing == f.rejected == f.abnormal == f.dp_drops == f.recovered == []
    assert {s.etab: s.days_without for s in f.establishments} == {GOOD: 0, OTHER: 0, SHADOW: None}
    assert "Rien à signaler" in watch_mails.describe(f)


def test_a_missing_day(region, db, seed):
    seed.normal(GOOD, D - timedelta(days=3), D - timedelta(days=1))      # nothing received this morning
    seed.normal(OTHER, D - timedelta(days=3), D)
    seed.daily(GOOD, D, at=time(6, 30))          # after the cut-off: tomorrow's watch will see it
    [m] = find(region, db).missing
    assert (m.etab, m.days, m.gap_start, m.reprise_needed, m.lost_since) == (GOOD, 1, D, False, None)
    assert m.last_accepted == datetime.combine(D - timedelta(days=1), time(3, 0), tzinfo=TZ)
    assert m.catch_up_until == D + timedelta(days=6)   # a file received by then still covers the day before D
    # the next day the late file counts, and ended a 1-day gap that the window covers: no reprise (the entry
    # day D itself is in no file yet: tomorrow's will bring it)
    f = find(region, db, CUT + timedelta(days=1))
    assert [x.etab for x in f.missing] == [OTHER]
    [r] = f.recovered
    assert (r.etab, r.gap_start, r.gap_days, r.reprise) == (GOOD, D, 1, [])


def test_an_eight_day_gap_needs_a_reprise_and_the_recovery_says_which_days(region, db, seed):
    seed.normal(GOOD, D - timedelta(days=10), D - timedelta(days=8))    # last file received D-8
    seed.normal(OTHER, D - timedelta(days=10), D)
    f = find(region, db)
    [m] = f.missing
    assert (m.days, m.gap_start, m.reprise_needed) == (8, D - timedelta(days=7), True)
    assert m.lost_since == D - timedelta(days=8) and m.catch_up_until is None
    assert "REPRISE NÉCESSAIRE" in watch_mails.describe(f)
    # 6 days: the window still covers it
    assert not find(region, db, CUT - timedelta(days=2)).missing[0].reprise_needed
    # 7 days: a file received later that day still covers the day before the gap — the last day the mails give
    # ("au plus tard"); no reprise yet
    seven = find(region, db, CUT - timedelta(days=1)).missing[0]
    assert (seven.days, seven.reprise_needed, seven.catch_up_until) == (7, False, D - timedelta(days=1))
    # the file of D+1 covers D-6 … D: entry days D-8 … D-7 are not provided by any file
    seed.daily(GOOD, D + timedelta(days=1))
    f = find(region, db, CUT + timedelta(days=1))
    assert [x.etab for x in f.missing] == [OTHER]            # (OTHER's file of D+1 is not seeded)
    [r] = f.recovered
    assert (r.gap_start, r.gap_days) == (D - timedelta(days=7), 8)
    assert r.reprise == [(D - timedelta(days=8), D - timedelta(days=7))]


def test_never_received_and_shadow_establishments(region, db, seed):
    seed.normal(OTHER, D - timedelta(days=8), D)
    seed.normal(SHADOW, D - timedelta(days=8), D)
    f = find(region, db)
    [m] = f.missing                  # GOOD never sent; the shadow establishment is not watched for gaps
    assert (m.etab, m.days, m.last_accepted, m.gap_start) == (GOOD, None, None, None)
    [s] = f.shadow_ready
    assert (s.etab, s.consecutive_days) == (SHADOW, 10)      # history received D-9, then every day
    assert "prêt à basculer" in watch_mails.describe(f)


def test_rejected_files_since_the_previous_cut_off_with_their_reasons(region, db, seed, tmp_path):
    seed.normal(GOOD, D - timedelta(days=2), D)
    seed.normal(OTHER, D - timedelta(days=2), D)
    seed.daily(GOOD, D - timedelta(days=1), ok=False, at=time(5, 0))     # before the previous cut-off
    bad = seed.daily(GOOD, D, ok=False, at=time(4, 0))
    f = find(region, db)
    [r] = f.rejected
    week = sum(usual(D - timedelta(days=n)) for n in range(1, 8))
    assert (r.file_id, r.etab, r.name, r.visits) == (bad["file_id"], GOOD, "CH de Valbourg", week)
    assert r.file_name == bad["file"] and r.received_at == datetime.combine(D, time(4, 0), tzinfo=TZ)
    assert [(x["rule"], x["label"]) for x in r.reasons] == [
        ("EXTRACT_MISSING", "date d'extraction (EXTRACT) absente ou illisible")]
    assert "EXTRACT" in r.reasons[0]["message"]
    # a file not well formed: the rule and the line, not libxml2's message (it may quote the content)
    path = tmp_path / "truncated.xml"
    data = rpu_file([visit(**PATIENT)], finess=OTHER, extract=f"{D:%d/%m/%Y} 02:00:00")
    path.write_bytes(data[:-40])
    receipt = intake.ingest_path(region, db, path, sender=OTHER)
    assert receipt["status"] == "rejected"
    with psycopg.connect(db) as conn:
        conn.execute("UPDATE received_file SET received_at = %s WHERE id = %s",
                     (datetime.combine(D, time(5, 0), tzinfo=TZ), receipt["file_id"]))
    r = find(region, db).rejected[1]
    assert r.etab == OTHER and r.reasons[0]["rule"] == "NOT_WELL_FORMED" and r.reasons[0]["message"] is None


def test_an_abnormal_day_below_mu_minus_3_sigma(region, db, seed):
    low = D - timedelta(days=3)                               # Saturday 13 June: 2 visits instead of 10-12
    counts = lambda day: 2 if day == low else usual(day)      # noqa: E731
    seed.normal(GOOD, D - timedelta(days=2), D, counts)
    seed.normal(OTHER, D - timedelta(days=2), D)
    f = find(region, db)
    [a] = f.abnormal
    # the 8 previous Saturdays: usual() gives 10, 12, 11, 10, 12, 11, 10, 12 (sum 88): μ = 11, squares of the
    # deviations 1 + 1 + 0 + 1 + 1 + 0 + 1 + 1 = 6, σ = √(6 / 7) ≈ 0.926; μ − 2σ ≈ 9.15: nothing dropped;
    # threshold μ − 3σ ≈ 8.22. The Saturday with 2 visits is abnormal; 10, 11 or 12 never are.
    history = [usual(low - timedelta(weeks=k)) for k in range(1, 9)]
    assert history == [10, 12, 11, 10, 12, 11, 10, 12]
    assert (a.etab, a.day, a.weekday, a.visits, a.history, a.dropped) == (GOOD, low, "samedi", 2, 8, 0)
    assert a.mean == 11 and a.sd == pytest.approx((6 / 7) ** 0.5)
    assert a.threshold == pytest.approx(11 - 3 * (6 / 7) ** 0.5) == pytest.approx(8.2225, abs=1e-4)
    assert "ANORMAL" in watch_mails.describe(f) and "seuil 8.2" in watch_mails.describe(f)


def test_a_sudden_drop_of_the_dp_coding_rate(region, db, seed):
    bad = D - timedelta(days=2)
    per_day = lambda day: 30                                                  # noqa: E731
    seed.normal(GOOD, D - timedelta(days=2), D, per_day, dp_missing=lambda day: 20 if day == bad else 0)
    seed.normal(OTHER, D - timedelta(days=2), D)
    [d] = find(region, db).dp_drops
    assert d.etab == GOOD and d.baseline_rate == 1.0 and d.baseline_expected == 28 * 30
    assert [(x["day"], x["coded"], x["expected"]) for x in d.days] == [(bad, 10, 30)]
    assert find(region, db).abnormal == []                                    # the visits are all there


# --- the alert history: state machine ------------------------------------------------------------------------

def _findings(region, day: date, missing: dict[str, int] | None = None, **lists) -> rules.Findings:
    """Hand-made findings of the cut-off of `day`: `missing` = {etab: consecutive days}."""
    prev, cut = rules.cutoffs(region, datetime.combine(day, time(6, 0), tzinfo=TZ))
    f = rules.Findings(region.code, region.name, region.timezone, cut, cut, prev, **lists)
    for etab, days in (missing or {}).items():
        gap = day - timedelta(days=days - 1)
        f.missing.append(rules.Missing(etab, region.establishment(etab).name, days,
                                       datetime.combine(gap - timedelta(days=1), time(3, 0), tzinfo=TZ), gap,
                                       days >= 7, gap - timedelta(days=1) if days >= 7 else None,
                                       None if days >= 7 else gap + timedelta(days=6)))
    return f


def _record(region, db, f, ack=True) -> list[tuple[str, str, str]]:
    with store.connection(db) as conn:
        notices = alerts.record(conn, region, f, f.now)
        if ack:
            alerts.acknowledge(conn, notices, f.now)
    return [(n["kind"], n["etab"], n["notice"]) for n in notices]


def test_state_machine_new_then_silent_then_reprise_once_then_back_to_normal(region, db):
    g = D     # first day without transmission
    assert _record(region, db, _findings(region, g, {GOOD: 1})) == [("missing", GOOD, "new")]
    for n in range(2, 7):                         # days 2 … 6: the same gap, nothing to tell
        assert _record(region, db, _findings(region, g + timedelta(days=n - 1), {GOOD: n})) == []
    assert _record(region, db, _findings(region, g + timedelta(days=6), {GOOD: 7})) == [("missing", GOOD, "reprise")]
    assert _record(region, db, _findings(region, g + timedelta(days=7), {GOOD: 8})) == []
    assert _record(region, db, _findings(region, g + timedelta(days=8), {GOOD: 9})) == []
    back = g + timedelta(days=9)
    f = _findings(region, back, recovered=[rules.Recovered(GOOD, "CH de Valbourg", g, 9, datetime.combine(
        back, time(3, 0), tzinfo=TZ), [(g - timedelta(days=1), g + timedelta(days=1))])])
    with store.connection(db) as conn:
        [n] = alerts.record(conn, region, f, f.now)
        alerts.acknowledge(conn, [n], f.now)
        assert alerts.open_alerts(conn, region) == []
    assert (n["kind"], n["notice"], n["contact"]) == ("missing", "closed", CONTACT)
    assert n["details"]["reprise"] == [[(g - timedelta(days=1)).isoformat(), (g + timedelta(days=1)).isoformat()]]
    assert n["details"]["gap_days"] == 9 and n["details"]["gap_start"] == g.isoformat()
    assert _record(region, db, _findings(region, back + timedelta(days=1))) == []
    # a new gap later is a new alert
    assert _record(region, db, _findings(region, back + timedelta(days=5), {GOOD: 1})) == [("missing", GOOD, "new")]
    rows = psycopg.connect(db).execute(
        "SELECT key, state, notified_state, notifications, first_seen, closed_at FROM alert ORDER BY id").fetchall()
    assert rows[0][:4] == (g.isoformat(), "closed", "closed", 3)       # new, reprise, closed: three mails
    assert rows[0][4] == datetime.combine(g, time(6, 0), tzinfo=TZ)
    assert rows[0][5] == datetime.combine(back, time(6, 0), tzinfo=TZ)
    assert rows[1][:4] == ((back + timedelta(days=5)).isoformat(), "open", "new", 1)


def test_a_gap_first_seen_at_eight_days_is_told_once_as_reprise_needed(region, db):
    assert _record(region, db, _findings(region, D, {GOOD: 8, OTHER: 1})) == [
        ("missing", GOOD, "reprise"), ("missing", OTHER, "new")]
    assert _record(region, db, _findings(region, D + timedelta(days=1), {GOOD: 9, OTHER: 2})) == []


def test_notices_not_mailed_are_returned_until_acknowledged_and_reruns_change_nothing(region, db):
    f = _findings(region, D, {GOOD: 1})
    assert _record(region, db, f, ack=False) == [("missing", GOOD, "new")]
    assert _record(region, db, f, ack=False) == [("missing", GOOD, "new")]      # the mail failed: again
    assert _record(region, db, _findings(region, D + timedelta(days=1), {GOOD: 2})) == [("missing", GOOD, "new")]
    assert _record(region, db, _findings(region, D + timedelta(days=1), {GOOD: 2})) == []
    # a run for a past date (before the gap) does not close it, nor does it change the alert
    assert _record(region, db, _findings(region, D - timedelta(days=2))) == []
    with store.connection(db) as conn:
        [a] = alerts.open_alerts(conn, region)
    assert (a["kind"], a["etab"], a["key"], a["last_seen"].date()) == ("missing", GOOD, D.isoformat(),
                                                                        D + timedelta(days=1))


def test_a_gap_of_an_establishment_no_longer_watched_closes_silently(region, db):
    assert _record(region, db, _findings(region, D, {GOOD: 1})) == [("missing", GOOD, "new")]
    shadowed = dataclasses.replace(region, establishments=tuple(
        dataclasses.replace(e, status="shadow") if e.finess == GOOD else e for e in region.establishments))
    assert _record(shadowed, db, _findings(shadowed, D + timedelta(days=1))) == []
    assert psycopg.connect(db).execute("SELECT state, details->>'closed_because' FROM alert").fetchall() == [
        ("closed", "not_watched")]


def test_events_and_episodes(region, db):
    rej = rules.Rejected(42, "RPU_bad.xml", GOOD, "CH de Valbourg", CUT - timedelta(hours=2), 3,
                         [{"rule": "EXTRACT_MISSING", "label": "x", "line": 1, "visit": None, "message": None}])
    low = rules.AbnormalDay(GOOD, "CH de Valbourg", D - timedelta(days=2), "dimanche", 2, 11.0, 1.0, 8.0, 8, 0)
    drop = lambda first: rules.DpDrop(OTHER, "CH de Saint-Aurèle", [   # noqa: E731
        {"day": first, "rate": 0.3, "expected": 30, "coded": 9}], 0.95, 840)
    f = _findings(region, D, rejected=[rej], abnormal=[low], dp_drops=[drop(D - timedelta(days=1))])
    assert sorted(_record(region, db, f)) == [("abnormal_day", GOOD, "new"), ("dp_drop", OTHER, "new"),
                                             ("rejected", GOOD, "new")]
    # the next day: the same rejected file (a re-run), the same abnormal day, the drop goes on (first day seen
    # shifts): nothing new
    f = _findings(region, D + timedelta(days=1), rejected=[rej], abnormal=[low], dp_drops=[drop(D)])
    assert _record(region, db, f) == []
    with store.connection(db) as conn:
        kinds = sorted(a["kind"] for a in alerts.open_alerts(conn, region))
    assert kinds == ["abnormal_day", "dp_drop"]              # a rejected file is an event: never open
    # both over: closed silently
    assert _record(region, db, _findings(region, D + timedelta(days=2))) == []
    with store.connection(db) as conn:
        assert alerts.open_alerts(conn, region) == []


# --- mails ----------------------------------------------------------------------------------------------------

def test_every_watch_template_renders_without_patient_data(region, db, seed):
    seed.normal(GOOD, D - timedelta(days=12), D - timedelta(days=8))
    seed.normal(OTHER, D - timedelta(days=3), D - timedelta(days=1))
    seed.normal(SHADOW, D - timedelta(days=8), D)
    seed.daily(GOOD, D, ok=False)
    f = find(region, db)
    with store.connection(db) as conn:
        notices = alerts.record(conn, region, f, CUT)
    mails = watch_mails.mails(region, f, notices)
    assert [(m["template"], m["to"]) for m in mails] == [
        ("watch_ars", [ARS]), ("file_rejected", [CONTACT]), ("missing_transmission", [CONTACT]),
        ("shadow_ready", [SHADOW_CONTACT])]
    ars = mails[0]
    assert ars["subject"] == ("[RPU demo] Veille du 16/06/2026 : 1 absence de transmission, 1 reprise nécessaire, "
                              "1 fichier rejeté, 1 établissement prêt à basculer")
    for m in mails:
        _no_patient_data(m["subject"], m["text"], m["html"])
        assert "\n" not in m["subject"] and "{{" not in m["text"] + m["html"]
    assert "CH de Saint-Aurèle (FINESS 990000135) : 1 jour sans transmission" in ars["text"]
    assert "reprise" in mails[2]["subject"]
    assert set(mail.templates()) >= {"watch_ars", "missing_transmission", "file_rejected", "back_to_normal",
                                     "shadow_ready", "reprise_summary"}


def test_notify_sends_one_ars_mail_then_marks_the_notices_and_a_failed_mail_is_sent_again(region, db):
    from rpu import outbox

    f = _findings(region, D, {GOOD: 1, OTHER: 1})
    sent = []
    with store.connection(db) as conn:
        notices = alerts.record(conn, region, f, f.now)

        def broken(*args):
            raise ConnectionRefusedError("SMTP down")

        with pytest.raises(outbox.MailNotDelivered, match="SMTP down"):
            watch_mails.notify(conn, region, f, notices, send=broken)
        # the notices are told (kept in the outbox with the mails): not found again, the mails still owed
        assert alerts.record(conn, region, f, f.now) == []
        assert [(m["template"], m["recipients"]) for m in outbox.pending(conn, region)] == [
            ("watch_ars", [ARS]), ("missing_transmission", [CONTACT])]
        out = watch_mails.notify(conn, region, f, [], send=lambda *a: sent.append(a))      # the next try sends them
        assert outbox.pending(conn, region) == []
    assert [(m["template"], m["to"]) for m in out] == [("watch_ars", [ARS]), ("missing_transmission", [CONTACT])]
    assert [a[0] for a in sent] == ["smtp_default"] * 2
    # nothing to tell: no mail; with a daily digest: one mail saying so, with what is still open
    assert watch_mails.mails(region, f, []) == []
    digest = region.adjusted(watch={"daily_digest": True})
    [m] = watch_mails.mails(digest, f, [])
    assert m["subject"] == "[RPU demo] Veille du 16/06/2026 : rien de nouveau (2 absences de transmission toujours " \
                           "en cours)"
    assert "Rien de nouveau à signaler (récapitulatif quotidien)" in m["text"] and "TOUJOURS EN COURS" in m["text"]
    # no ARS address: the ARS mail is skipped (logged), the contacts still get theirs, the notices are marked
    quiet = dataclasses.replace(region, ars_emails=())
    rej = rules.Rejected(7, "RPU_x.xml", GOOD, "CH de Valbourg", CUT + timedelta(hours=20), 0, [])
    f2 = _findings(quiet, D + timedelta(days=1), {GOOD: 2, OTHER: 2}, rejected=[rej])
    sent.clear()
    with store.connection(db) as conn:
        notices = alerts.record(conn, quiet, f2, None)
        assert [(n["kind"], n["notice"]) for n in notices] == [("rejected", "new")]
        out = watch_mails.notify(conn, quiet, f2, notices, send=lambda *a: sent.append(a))
        assert alerts.record(conn, quiet, f2, None) == []
    assert [(m["template"], m["to"]) for m in out] == [("file_rejected", [CONTACT])]
    assert "(motif non précisé)" in sent[0][3]


# --- rpu watch ------------------------------------------------------------------------------------------------

def test_rpu_watch_prints_the_findings_and_records_nothing(db, seed, tmp_path, monkeypatch, capsys):
    import yaml

    from rpu.cli import main

    regions = tmp_path / "regions"
    regions.mkdir()
    (regions / "demo.yaml").write_text(yaml.safe_dump(region_data(), allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("RPU_REGIONS_DIR", str(regions))
    seed.normal(GOOD, D - timedelta(days=3), D - timedelta(days=1))
    seed.normal(OTHER, D - timedelta(days=3), D)
    assert main(["watch", "--region", "demo", "--db", db, "--at", "2026-06-16 07:00", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["cutoff"] == "2026-06-16T06:00:00+02:00" and out["day"] == "2026-06-16"
    assert [(m["etab"], m["days"], m["last_accepted"]) for m in out["missing"]] == [
        (GOOD, 1, "2026-06-15T03:00:00+02:00")]
    assert main(["watch", "--region", "demo", "--db", db, "--at", "2026-06-15 07:00"]) == 0
    text = capsys.readouterr().out
    assert "Rien à signaler" in text and "15/06/2026 06:00" in text
    assert main(["watch", "--region", "demo", "--db", db, "--at", "2026-06-16T07"]) == 2
    assert "expected 'YYYY-MM-DD HH:MM'" in capsys.readouterr().err
    assert psycopg.connect(db).execute("SELECT count(*) FROM alert").fetchone() == (0,)


def test_quality_gate_findings_are_told_in_plain_words(region, db, seed):
    """A file accepted with quality expectations not met: in the findings and in the ARS mail, in words."""
    seed.normal(GOOD, D - timedelta(days=2), D)
    seed.normal(OTHER, D - timedelta(days=2), D)
    bad = {**PATIENT, "SEXE": "X"}                      # out of the SEXE domain for every visit
    path = seed.dir / "bad_quality.xml"
    path.write_bytes(rpu_file([visit(ENTREE=f"{D - timedelta(days=1):%d/%m/%Y} 1{i}:00",
                                     SORTIE=f"{D - timedelta(days=1):%d/%m/%Y} 1{i}:30", **bad) for i in range(5)],
                              finess=GOOD, debut=f"{D - timedelta(days=1):%d/%m/%Y}",
                              fin=f"{D - timedelta(days=1):%d/%m/%Y}", extract=f"{D:%d/%m/%Y} 04:00:00"))
    receipt = intake.ingest_path(region, db, path, sender=GOOD)
    assert receipt["quality"]["status"] == "failed"
    with psycopg.connect(db) as conn:
        conn.execute("UPDATE received_file SET received_at = %s WHERE id = %s",
                     (datetime.combine(D, time(4, 30), tzinfo=TZ), receipt["file_id"]))
    f = find(region, db)
    [q] = f.quality
    assert (q.file_name, q.etab, q.quarantined) == ("bad_quality.xml", GOOD, False)
    names = {x["name"] for x in q.failed}
    assert "SEXE_DOMAIN" in names
    assert "QUALITÉ" in watch_mails.describe(f) and "SEXE_DOMAIN" in watch_mails.describe(f)
    with psycopg.connect(db, autocommit=True) as conn:
        notices = alerts.record(conn, region, f, f.now)
    [ars] = [m for m in watch_mails.mails(region, f, notices) if m["template"] == "watch_ars"]
    assert "CONTRÔLE QUALITÉ (1)" in ars["text"] and "SEXE_DOMAIN" in ars["text"] and "bad_quality.xml" in ars["text"]
    assert "contrôle qualité non atteint" in ars["subject"]
    with psycopg.connect(db, autocommit=True) as conn:   # told once: once mailed, the next run does not repeat it
        alerts.acknowledge(conn, notices, f.now)
        assert not [n for n in alerts.record(conn, region, find(region, db), f.now) if n["kind"] == "quality"]


# --- issue 11: late files, establishments declared without data ---------------------------------------------------

def test_a_file_received_after_the_cut_off_is_told_once_in_the_ars_summary(region, db, seed):
    """The file due on D-1 (entry days up to D-2) arrived at 06:30, after that morning's cut-off: it was in neither
    that day's watch nor that morning's sends. The next summary says so, once."""
    seed.normal(GOOD, D - timedelta(days=3), D - timedelta(days=2))
    seed.normal(OTHER, D - timedelta(days=3), D)
    late = seed.daily(GOOD, D - timedelta(days=1), at=time(6, 30))
    f = find(region, db)
    [x] = f.late
    assert (x.file_id, x.etab, x.due, x.period_end) == (late["file_id"], GOOD, D - timedelta(days=1),
                                                         D - timedelta(days=2))
    assert x.received_at == datetime.combine(D - timedelta(days=1), time(6, 30), tzinfo=TZ)
    assert f"RETARD    {GOOD} CH de Valbourg : {late['file']} reçu le 15/06/2026 06:30" in watch_mails.describe(f)
    with store.connection(db) as conn:
        notices = alerts.record(conn, region, f, f.now)
        [ars] = [m for m in watch_mails.mails(region, f, notices) if m["template"] == "watch_ars"]
        assert "1 fichier arrivé après la coupure" in ars["subject"]
        assert "FICHIERS ARRIVÉS APRÈS L'HEURE DE COUPURE (1)" in ars["text"]
        assert (f"CH de Valbourg (FINESS {GOOD}) : {late['file']}, reçu le 15/06/2026 à 06:30, après la coupure de "
                "06:00 (passages jusqu'au 14/06/2026") in ars["text"]
        assert late["file"] in ars["html"] and "après l'heure de coupure" in ars["html"]
        _no_patient_data(ars["subject"], ars["text"], ars["html"])
        alerts.acknowledge(conn, notices, f.now)
        assert not [n for n in alerts.record(conn, region, find(region, db), f.now) if n["kind"] == "late"]
    # a file received before the cut-off is not late, nor one received after it but for a later day
    assert find(region, db, CUT - timedelta(days=1)).late == []


def test_an_establishment_declared_without_data_is_said_so_with_for_how_long(region, db, seed):
    """Active in the region file, no accepted file ever: "déclaré, pas encore en production" — no file is sent for
    it (tests/dags/test_send_dags.py) and the watch says since when it is declared without data."""
    seed.normal(OTHER, D - timedelta(days=5), D)
    first = find(region, db, CUT - timedelta(days=3))       # the first watch that sees GOOD declared
    with store.connection(db) as conn:
        notices = alerts.record(conn, region, first, first.now)
        [ars] = [m for m in watch_mails.mails(region, first, notices) if m["template"] == "watch_ars"]
        alerts.acknowledge(conn, notices, first.now)
    assert "1 établissement déclaré sans données" in ars["subject"]
    assert "DÉCLARÉS, PAS ENCORE EN PRODUCTION (1)" in ars["text"]
    assert f"CH de Valbourg (FINESS {GOOD}) : déclaré depuis le 13/06/2026 (0 jour), aucun fichier accepté" in ars["text"]
    f = find(region, db)
    [m] = f.missing
    assert (m.etab, m.days, m.declared_since, m.declared_days) == (GOOD, None, D - timedelta(days=3), 3)
    assert (f"DÉCLARÉ   {GOOD} CH de Valbourg : pas encore en production — déclaré depuis le 13/06/2026 (3 jour(s))"
            in watch_mails.describe(f))
    digest = region.adjusted(watch={"daily_digest": True})
    with store.connection(db) as conn:
        assert alerts.record(conn, digest, f, f.now) == []      # told once; then among what is still going on
    [m] = watch_mails.mails(digest, f, [])
    assert "déclaré, pas encore en production depuis 3 jours (le 13/06/2026) : aucun fichier accepté" in m["text"]
