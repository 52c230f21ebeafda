"""The daily watch of a region: who did not transmit, whose file was rejected, which day looks wrong.

Three steps, each plain Python (the `<region>_watch` DAG calls them; `rpu watch` runs the first only):

  `findings(conn, region, now)` — what is wrong at the cut-off: establishments with no accepted file since the
      previous cut-off (consecutive days without transmission, last accepted file, "reprise needed" once the
      sliding window can no longer cover the gap; or "declared, not yet in production" and for how long, when
      none was ever accepted), establishments back to normal after a gap (with the entry days to ask in a
      reprise), files rejected since the previous cut-off (with their reasons), files that arrived after the
      cut-off of their day, abnormal days (visit count below μ − 3σ), sudden drops of the DP coding rate,
      shadow establishments ready to switch.
  `record(conn, region, findings, now)` — the alert history (table `alert`): each finding is found again every
      day under the same identity, and only a change of state is to be told: new; a transmission gap still
      open at 7 days ("reprise needed", once); a gap closed ("back to normal"). Returns what must be mailed.
  `notify(conn, region, findings, notices)` — ONE mail to the region's ARS addresses summarising the notices
      (none when there is none, unless the region asks for a daily digest), and a notice to the technical
      contact of each establishment concerned that has one: queued in the outbox (rpu.outbox) together with
      marking the notices told, then delivered — an address refused for now is owed the mail until it accepts
      it, one refused for good is told to operations once.

The rules (cut-off windows, μ − 3σ on the same weekday, the DP drop, the state machine) are in docs/watch.md.
No patient data anywhere: counts, dates, FINESS, file names and rule names only. No Airflow import here.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta

from rpu import store
from rpu.config import Region

log = logging.getLogger(__name__)

# The establishments' files carry J-1 … J-7: a file received on day X covers the entry days X-7 … X-1. With the
# last accepted file received on day L, the entry days from L on are missing, and a file received on day R
# brings L back only if R ≤ L + 7. The watch of day D counts n = D − L days without transmission: at n = 7 a file
# received later that same day D still covers L (the mails give D as the last day, "au plus tard"); from n = 8
# no file can: a reprise is needed.
ESTABLISHMENT_WINDOW = 7
REPRISE_AFTER_DAYS = ESTABLISHMENT_WINDOW + 1

# Abnormal days (μ − 3σ): each day of the last establishment window is compared with the same weekday of the
# previous `watch_history_weeks` weeks (days with data only); at least MIN_HISTORY such days are needed.
MIN_HISTORY = 4

# DP coding rate: share of the visits where a DP is expected (ORIENT not FUGUE/PSA/SCAM/REO) that have a valid
# DP. A day's rate is compared with the pooled rate of the 28 days before the judged window.
DP_BASELINE_DAYS = 28
DP_MIN_DAY = 20             # visits where a DP is expected, for a day to be judged
DP_MIN_BASELINE = 100       # the same, over the baseline
DP_MIN_DROP = 0.20          # at least 20 percentage points below the baseline…
DP_SIGMAS = 3               # …and at least 3 binomial standard deviations below it

KINDS = ("missing", "rejected", "late", "quality", "abnormal_day", "dp_drop", "shadow_ready")
EVENT_KINDS = frozenset({"rejected", "late", "quality"})   # told once, never open
EPISODE_KINDS = frozenset({"dp_drop", "shadow_ready"})     # one open alert per establishment at a time
NOTICES = ("new", "reprise", "closed")
WEEKDAYS_FR = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
# Reasons of a rejected file: rule, French label, line and visit number. The message itself is mailed only for
# the header rules, built from the header alone; a parser or visit message may quote the content (libxml2
# shows the bytes of an encoding error, ENTREE_INVALID the value read): it stays in the receipt.
SAFE_MESSAGE_RULES = frozenset({"FINESS_MISSING", "FINESS_UNKNOWN", "FINESS_NOT_SENDER", "EXTRACT_MISSING",
                                "FILE_TOO_LARGE", "DOCTYPE_FORBIDDEN"})


# --- findings -----------------------------------------------------------------------------------------------

@dataclass
class EtabStatus:
    """One watched establishment at the cut-off."""
    etab: str
    name: str
    status: str
    last_accepted: datetime | None      # last accepted file received up to the cut-off
    days_without: int | None            # consecutive days without an accepted file (None: never received)


@dataclass
class Missing:
    """An active establishment with no accepted file since the previous cut-off."""
    etab: str
    name: str
    days: int | None                    # consecutive days without transmission (None: no file ever accepted)
    last_accepted: datetime | None
    gap_start: date | None              # the first day without transmission
    reprise_needed: bool                # the gap reached REPRISE_AFTER_DAYS: the window no longer covers it
    lost_since: date | None             # first entry day the next file cannot cover (when reprise_needed)
    catch_up_until: date | None         # last day a file can be received for the window to cover the gap
    # "declared, not yet in production" (no accepted file ever): watched since that day, for that many days
    declared_since: date | None = None
    declared_days: int | None = None


@dataclass
class Recovered:
    """An active establishment whose accepted file of the day follows a gap."""
    etab: str
    name: str
    gap_start: date
    gap_days: int
    back_at: datetime                   # the file that ended the gap
    reprise: list[tuple[date, date]]    # entry-day periods still without data: what to ask in a reprise


@dataclass
class Rejected:
    """A file rejected since the previous cut-off."""
    file_id: int
    file_name: str
    etab: str                           # FINESS (ET) when known, else that of the header or sender, else ""
    name: str | None
    received_at: datetime
    visits: int
    reasons: list[dict]                 # rule, label, line, visit, message (file-level rules only)


@dataclass
class Late:
    """A file accepted after the cut-off of the day it was due (the day after its last entry day): it was in
    neither that day's watch nor that morning's sends."""
    file_id: int
    file_name: str
    etab: str
    name: str | None
    received_at: datetime
    due: date                           # the day whose cut-off it missed
    period_end: date
    visits: int


@dataclass
class QualityFailed:
    """A file accepted since the previous cut-off whose quality gate found expectations not met (or could not
    run): told in plain words; `quarantined` when a blocking expectation holds the batch back."""
    file_id: int
    file_name: str
    etab: str
    name: str | None
    run_at: datetime
    status: str                         # failed | error
    quarantined: bool
    failed: list[dict]                  # name, description, blocking, unexpected_count, unexpected_percent…


@dataclass(frozen=True)
class Baseline:
    """μ and σ of a day's history after dropping the days below μ − 2σ, and the threshold μ − 3σ."""
    mean: float
    sd: float
    threshold: float
    used: int                           # days kept
    dropped: int                        # days dropped (below μ − 2σ of all days)


@dataclass
class AbnormalDay:
    """An establishment-day whose visit count is below μ − 3σ of the same weekday's recent counts."""
    etab: str
    name: str
    day: date
    weekday: str
    visits: int
    mean: float
    sd: float
    threshold: float
    history: int
    dropped: int


@dataclass
class DpDrop:
    """Days whose DP coding rate fell suddenly, against the 28 days before the window."""
    etab: str
    name: str
    days: list[dict]                    # day, rate, expected, coded
    baseline_rate: float
    baseline_expected: int


@dataclass
class ShadowReady:
    etab: str
    name: str
    consecutive_days: int


@dataclass
class Findings:
    region: str
    region_name: str
    timezone: str
    now: datetime
    cutoff: datetime                    # the latest cut-off at or before `now`
    previous_cutoff: datetime           # the cut-off one day before: the watched period is ]previous, cutoff]
    establishments: list[EtabStatus] = field(default_factory=list)
    missing: list[Missing] = field(default_factory=list)
    recovered: list[Recovered] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    late: list[Late] = field(default_factory=list)
    quality: list[QualityFailed] = field(default_factory=list)
    abnormal: list[AbnormalDay] = field(default_factory=list)
    dp_drops: list[DpDrop] = field(default_factory=list)
    shadow_ready: list[ShadowReady] = field(default_factory=list)

    @property
    def day(self) -> date:
        """The watched day: the local date of the cut-off."""
        return self.cutoff.date()

    @property
    def anything(self) -> bool:
        return bool(self.missing or self.recovered or self.rejected or self.late or self.quality or self.abnormal
                    or self.dp_drops or self.shadow_ready)

    def issues(self) -> list[dict]:
        """Each finding under its alert identity (kind, etab, key) with the details stored in the history."""
        out = []
        for m in self.missing:
            out.append(_issue("missing", m.etab, m.gap_start.isoformat() if m.gap_start else "never", m,
                              reprise=m.reprise_needed))
        for r in self.rejected:
            out.append(_issue("rejected", r.etab, str(r.file_id), r))
        for x in self.late:
            out.append(_issue("late", x.etab, str(x.file_id), x))
        for q in self.quality:
            out.append(_issue("quality", q.etab, str(q.file_id), q))
        for a in self.abnormal:
            out.append(_issue("abnormal_day", a.etab, a.day.isoformat(), a))
        for d in self.dp_drops:
            out.append(_issue("dp_drop", d.etab, _jsonable(d.days[0]["day"]), d))
        for s in self.shadow_ready:
            out.append(_issue("shadow_ready", s.etab, self.day.isoformat(), s))
        return out

    def to_dict(self) -> dict:
        """JSON-able (XCom, `rpu watch --json`); dates as ISO strings."""
        return _jsonable({
            "region": self.region, "region_name": self.region_name, "timezone": self.timezone,
            "now": self.now, "cutoff": self.cutoff, "previous_cutoff": self.previous_cutoff, "day": self.day,
            "anything": self.anything,
            **{k: [asdict(x) for x in getattr(self, k)] for k in (
                "establishments", "missing", "recovered", "rejected", "late", "quality", "abnormal", "dp_drops",
                "shadow_ready")},
        })


def _issue(kind: str, etab: str, key: str, finding, reprise: bool = False) -> dict:
    details = _jsonable(asdict(finding))
    return {"kind": kind, "etab": etab, "key": key, "reprise": reprise, "details": details}


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 4)
    return value


def _local(now: datetime, region: Region) -> datetime:
    """`now` (timezone-aware, pendulum or not) as a plain datetime in the region's time zone."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return datetime.fromtimestamp(now.timestamp(), tz=region.tz)


def _cutoff_time(region: Region) -> time:
    hour, minute = region.watch_cutoff.split(":")
    return time(int(hour), int(minute))


def cutoffs(region: Region, now: datetime) -> tuple[datetime, datetime]:
    """(previous cut-off, cut-off): the latest cut-off at or before `now` and the one a day earlier, both at the
    cut-off's wall-clock time in the region's time zone (so a DST change does not shift them)."""
    local = _local(now, region)
    at = _cutoff_time(region)
    cut = datetime.combine(local.date(), at, tzinfo=region.tz)
    if cut > local:
        cut = datetime.combine(local.date() - timedelta(days=1), at, tzinfo=region.tz)
    return datetime.combine(cut.date() - timedelta(days=1), at, tzinfo=region.tz), cut


def window_day(received_at: datetime, region: Region) -> date:
    """The watched day a reception belongs to: the date of the first cut-off at or after it."""
    local = received_at.astimezone(region.tz)
    return local.date() if local.timetz().replace(tzinfo=None) <= _cutoff_time(region) else \
        local.date() + timedelta(days=1)


def reprise_periods(conn, etab: str, gap_start: date, day: date) -> list[tuple[date, date]]:
    """Entry days that no file provides and that the sliding window can no longer bring: from the day before
    the gap (the last file before it stopped at the day before that) to `day` - 7 (the next file, received on
    `day` + 1, covers `day` - 6 … `day`). What the ARS must ask in a reprise; empty when the window covered it."""
    start, end = gap_start - timedelta(days=1), day - timedelta(days=ESTABLISHMENT_WINDOW)
    if end < start:
        return []
    from rpu.exports import periods

    rows = conn.execute(store.query("watch_uncovered_days"), {"etab": etab, "start": start, "end": end}).fetchall()
    return periods([r[0] for r in rows])


def baseline(history: list[int]) -> Baseline | None:
    """μ, σ (sample standard deviation) of `history` after dropping the values below μ − 2σ of all of them,
    and the threshold μ − 3σ; None with fewer than MIN_HISTORY values."""
    if len(history) < MIN_HISTORY:
        return None
    m0, s0 = statistics.fmean(history), statistics.stdev(history)
    kept = [v for v in history if v >= m0 - 2 * s0]
    m, s = statistics.fmean(kept), statistics.stdev(kept)
    return Baseline(mean=m, sd=s, threshold=m - 3 * s, used=len(kept), dropped=len(history) - len(kept))


def is_abnormal(visits: int, base: Baseline | None) -> bool:
    """Below μ − 3σ (strictly); never without a baseline."""
    return base is not None and visits < base.threshold


def dp_drop(rate_day: float, expected_day: int, baseline_rate: float) -> bool:
    """A sudden drop: at least DP_MIN_DROP (20 points) and DP_SIGMAS binomial standard deviations below the
    baseline rate."""
    if expected_day < DP_MIN_DAY:
        return False
    noise = math.sqrt(baseline_rate * (1 - baseline_rate) / expected_day)
    return baseline_rate - rate_day >= max(DP_MIN_DROP, DP_SIGMAS * noise) - 1e-12


def _reasons(errors: list[dict]) -> list[dict]:
    from rpu.problems import RULES

    out = []
    for e in errors[:10]:
        rule = e.get("rule", "")
        out.append({"rule": rule, "label": RULES.get(rule, ("", rule))[1], "line": e.get("line"),
                    "visit": e.get("visit"), "message": e.get("message") if rule in SAFE_MESSAGE_RULES else None})
    return out


def findings(conn, region: Region, now: datetime) -> Findings:
    """What is wrong at the latest cut-off at or before `now` (timezone-aware); see the module's doc."""
    from rpu import transition

    previous, cut = cutoffs(region, now)
    day = cut.date()
    f = Findings(region=region.code, region_name=region.name, timezone=region.timezone,
                 now=_local(now, region), cutoff=cut, previous_cutoff=previous)

    # transmissions: last accepted file per establishment, up to the cut-off
    last = {r[0].strip(): (r[1], r[2]) for r in conn.execute(
        store.query("watch_last_accepted"), {"cutoff": cut, "previous": previous})}
    declared = {r[0].strip(): r[1].astimezone(region.tz).date() for r in conn.execute(
        store.query("watch_declared_since"), {"region": region.code})}
    for e in region.establishments:
        last_accepted, last_before = last.get(e.finess, (None, None))
        days = (day - window_day(last_accepted, region)).days if last_accepted else None
        f.establishments.append(EtabStatus(e.finess, e.name, e.status,
                                           last_accepted.astimezone(region.tz) if last_accepted else None, days))
        if e.status != "active":
            continue
        if last_accepted is None or days >= 1:
            gap_start = window_day(last_accepted, region) + timedelta(days=1) if last_accepted else None
            needed = days is not None and days >= REPRISE_AFTER_DAYS
            since = min(declared.get(e.finess, day), day) if last_accepted is None else None
            f.missing.append(Missing(
                e.finess, e.name, days, f.establishments[-1].last_accepted, gap_start, needed,
                gap_start - timedelta(days=1) if needed else None,
                gap_start + timedelta(days=ESTABLISHMENT_WINDOW - 1) if gap_start and not needed else None,
                since, (day - since).days if since else None))
        elif last_before is not None:
            before_day = window_day(last_before, region)
            if (day - before_day).days > 1:                      # the file of the day ends a gap
                gap_start = before_day + timedelta(days=1)
                f.recovered.append(Recovered(e.finess, e.name, gap_start, (day - gap_start).days,
                                             last_accepted.astimezone(region.tz),
                                             reprise_periods(conn, e.finess, gap_start, day)))

    # files rejected since the previous cut-off
    for r in conn.execute(store.query("watch_rejected"), {"cutoff": cut, "previous": previous}):
        file_id, file_name, sender, finess, etab, received_at, visits, errors = r
        est = region.establishment((etab or "").strip() or (sender or "").strip() or (finess or "").strip())
        who = est.finess if est else ((etab or sender or finess or "").strip())
        f.rejected.append(Rejected(file_id, file_name, who, est.name if est else None,
                                   received_at.astimezone(region.tz), visits, _reasons(errors or [])))

    # accepted files received after the cut-off of the day they were due
    for file_id, file_name, etab, received_at, period_end, visits in conn.execute(store.query("watch_late"), {
            "previous": previous, "cutoff": cut, "tz": region.timezone, "cut_time": _cutoff_time(region)}):
        est = region.establishment(etab.strip())
        f.late.append(Late(file_id, file_name, etab.strip(), est.name if est else None,
                           received_at.astimezone(region.tz), period_end + timedelta(days=1), period_end,
                           visits))

    # accepted files whose quality gate found expectations not met (rpu.quality), in plain words
    from rpu import quality

    for q in quality.failed_since(conn, previous):    # gates run since then; files received in the period
        if not previous < q["received_at"] <= cut:
            continue
        # Day counts are the watch's own abnormal-day rule (μ − 3σ, told once per day): the batch suite's count
        # expectations would repeat it for every file of the sliding window that holds that day (unless blocking:
        # then the batch is held back, which the ARS must hear of).
        q["failed"] = [x for x in q["failed"] if x.get("suite") != "rpu_batch" or x.get("blocking")]
        if not q["failed"] and q["status"] != "error":
            continue
        est = region.establishment((q["etab"] or q["sender"] or "").strip())
        f.quality.append(QualityFailed(q["file_id"], q["file"], est.finess if est else (q["etab"] or "").strip(),
                                       est.name if est else None, q["run_at"].astimezone(region.tz), q["status"],
                                       q["quarantined"], q["failed"]))

    # abnormal days and DP coding rate: the last establishment window, against history
    _quality(conn, region, f, day)

    # shadow establishments ready to switch
    for s in transition.establishments(conn, region, day):
        if s["ready_to_switch"]:
            f.shadow_ready.append(ShadowReady(s["finess"], s["name"], s["consecutive_days"]))
    return f


def _quality(conn, region: Region, f: Findings, day: date) -> None:
    first_judged = day - timedelta(days=ESTABLISHMENT_WINDOW)
    last_judged = day - timedelta(days=1)
    start = min(first_judged - timedelta(weeks=region.watch_history_weeks),
                first_judged - timedelta(days=DP_BASELINE_DAYS))
    counts: dict[str, dict[date, tuple[int, int, int]]] = {}
    for etab, d, visits, expected, coded in conn.execute(store.query("watch_daily_counts"),
                                                         {"etabs": [e.finess for e in region.active],
                                                          "start": start, "end": last_judged}):
        counts.setdefault(etab.strip(), {})[d] = (visits, expected, coded)
    for e in region.active:
        mine = counts.get(e.finess, {})
        judged = [d for d in sorted(mine) if d >= first_judged]
        for d in judged:
            history = [mine[h][0] for k in range(1, region.watch_history_weeks + 1)
                       if (h := d - timedelta(weeks=k)) in mine]
            base = baseline(history)
            if is_abnormal(mine[d][0], base):
                f.abnormal.append(AbnormalDay(e.finess, e.name, d, WEEKDAYS_FR[d.weekday()], mine[d][0], base.mean,
                                              base.sd, base.threshold, base.used, base.dropped))
        since = first_judged - timedelta(days=DP_BASELINE_DAYS)
        base_days = [v for d, v in mine.items() if since <= d < first_judged]
        base_expected = sum(v[1] for v in base_days)
        if base_expected < DP_MIN_BASELINE:
            continue
        base_rate = sum(v[2] for v in base_days) / base_expected
        dropped = [{"day": d, "rate": mine[d][2] / mine[d][1], "expected": mine[d][1], "coded": mine[d][2]}
                   for d in judged if mine[d][1] and dp_drop(mine[d][2] / mine[d][1], mine[d][1], base_rate)]
        if dropped:
            f.dp_drops.append(DpDrop(e.finess, e.name, dropped, base_rate, base_expected))


# --- the alert history ----------------------------------------------------------------------------------------

def _row(cur, r) -> dict:
    return dict(zip([c.name for c in cur.description], r))


def record(conn, region: Region, f: Findings, now: datetime | None = None) -> list[dict]:
    """Store the findings in the alert history and return the notices to mail (see docs/watch.md).

    An alert's identity is (kind, establishment, key); `dp_drop` and `shadow_ready` match the establishment's open
    alert of that kind whatever the key. A new finding opens an alert (a rejected file: a closed one, it is an
    event) with the notice `new` — `reprise` for a transmission gap already 7 days old. An open gap reaching 7
    days gets the notice `reprise` once. An open alert no longer found is closed; a closed gap gets the notice
    `closed` (back to normal, with the entry days to ask in a reprise); other kinds close silently. A closed
    alert is never reopened. A run for a past date neither closes nor changes an alert seen by a later run.
    The times stored are the run's cut-off, so re-running a date changes nothing. Notices not yet mailed (a
    failed mail) are returned again until `acknowledge` marks them."""
    from psycopg.types.json import Jsonb

    if now is not None and cutoffs(region, now)[1] != f.cutoff:
        raise ValueError(f"findings of the cut-off {f.cutoff} recorded with now={now}")
    seen = f.cutoff
    issues = f.issues()
    active = {e.finess for e in region.active}
    recovered = {r.etab: r for r in f.recovered}
    status = {s.etab: s for s in f.establishments}
    with conn.transaction():
        conn.execute(store.query("watch_lock"), {"region": region.code})
        cur = conn.execute(store.query("watch_alert_load"), {
            "region": region.code, "kinds": [i["kind"] for i in issues], "etabs": [i["etab"] for i in issues],
            "keys": [i["key"] for i in issues]})
        alerts = [_row(cur, r) for r in cur.fetchall()]
        by_id = {(a["kind"], a["etab"], a["key"]): a for a in alerts}
        episodes = {(a["kind"], a["etab"]): a for a in alerts if a["state"] == "open" and a["kind"] in EPISODE_KINDS}
        matched: set[int] = set()
        for i in issues:
            a = by_id.get((i["kind"], i["etab"], i["key"]))
            if a is None and i["kind"] in EPISODE_KINDS:
                a = episodes.get((i["kind"], i["etab"]))
            if a is None:
                event = i["kind"] in EVENT_KINDS
                conn.execute(store.query("watch_alert_insert"), {
                    "region": region.code, "kind": i["kind"], "etab": i["etab"], "key": i["key"],
                    "state": "closed" if event else "open", "seen": seen, "closed_at": seen if event else None,
                    "pending_notice": "reprise" if i["reprise"] else "new", "details": Jsonb(i["details"])})
                continue
            matched.add(a["id"])
            if a["state"] != "open" or seen < a["last_seen"]:
                continue                          # closed: never reopened; seen later: a past run changes nothing
            pending = a["pending_notice"]
            if i["reprise"] and "reprise" not in (a["notified_state"], pending):
                pending = "reprise"
            conn.execute(store.query("watch_alert_update"), {
                "id": a["id"], "state": "open", "seen": seen, "closed_at": None, "pending_notice": pending,
                "details": Jsonb(i["details"])})
        for a in alerts:
            if a["state"] != "open" or a["id"] in matched or a["first_seen"] > seen or seen < a["last_seen"]:
                continue
            details, pending = dict(a["details"]), a["pending_notice"]
            if a["kind"] == "missing":
                if a["etab"] in active:
                    details.update(_back_to_normal(conn, a, recovered.get(a["etab"]), status.get(a["etab"]), f))
                    pending = "closed"
                else:                             # no longer watched (switched to shadow, removed): no notice
                    details["closed_because"] = "not_watched"
                    pending = None
            conn.execute(store.query("watch_alert_update"), {
                "id": a["id"], "state": "closed", "seen": seen, "closed_at": seen, "pending_notice": pending,
                "details": Jsonb(details)})
        cur = conn.execute(store.query("watch_alert_pending"), {"region": region.code})
        pending_rows = [_row(cur, r) for r in cur.fetchall()]
    return [_notice(region, a) for a in pending_rows]


def _back_to_normal(conn, alert: dict, rec: Recovered | None, st: EtabStatus | None, f: Findings) -> dict:
    """What a closed transmission gap tells: when it ended, how long it lasted, what to ask in a reprise."""
    out = {"back_at": st.last_accepted.isoformat() if st and st.last_accepted else None, "closed_on": f.day.isoformat()}
    if alert["key"] == "never":
        return out | {"first_file": True, "gap_days": None, "reprise": []}
    gap_start = date.fromisoformat(alert["key"])
    if rec is not None and rec.gap_start == gap_start:
        gap_days, per = rec.gap_days, rec.reprise
    else:   # the run of the recovery did not see it (a missed run): last days counted, periods from the data
        gap_days = alert["details"].get("days")
        per = reprise_periods(conn, alert["etab"], gap_start, f.day)
    return out | {"gap_days": gap_days, "reprise": _jsonable(per)}


def _notice(region: Region, a: dict) -> dict:
    est = region.establishment(a["etab"]) if a["etab"] else None
    return _jsonable({
        "id": a["id"], "kind": a["kind"], "etab": a["etab"], "key": a["key"], "notice": a["pending_notice"],
        "name": est.name if est else a["details"].get("name"), "contact": est.contact if est else None,
        "first_seen": a["first_seen"], "details": a["details"]})


def acknowledge(conn, notices: list[dict], at: datetime) -> int:
    """Mark notices as mailed (their pending notice becomes the notified state); returns how many."""
    if not notices:
        return 0
    with conn.transaction():
        cur = conn.execute(store.query("watch_alert_ack"), {
            "ids": [n["id"] for n in notices], "notices": [n["notice"] for n in notices], "at": at})
        return cur.rowcount


def open_alerts(conn, region: Region) -> list[dict]:
    """The open alerts of the region (what a dashboard shows)."""
    cur = conn.execute(store.query("watch_open_alerts"), {"region": region.code})
    return [_row(cur, r) for r in cur.fetchall()]


# --- mails ------------------------------------------------------------------------------------------------------

CONTACT_TEMPLATES = {   # (kind, notice) → the establishment's mail
    ("missing", "new"): "missing_transmission",
    ("missing", "reprise"): "missing_transmission",
    ("missing", "closed"): "back_to_normal",
    ("rejected", "new"): "file_rejected",
    ("shadow_ready", "new"): "shadow_ready",
}


def _sections(notices: list[dict]) -> dict[str, list[dict]]:
    s = {k: [] for k in ("declared", "missing", "reprise", "back", "rejected", "late", "quality", "abnormal",
                         "dp_drop", "ready")}
    for n in notices:
        item = {**n["details"], "etab": n["etab"], "name": n["name"], "notice": n["notice"]}
        if n["kind"] == "missing":
            never = n["key"] == "never" and n["notice"] == "new"
            s["declared" if never else {"new": "missing", "reprise": "reprise", "closed": "back"}[n["notice"]]] \
                .append(item)
        elif n["kind"] in ("rejected", "late", "quality"):
            s[n["kind"]].append(item)
        elif n["notice"] == "new":      # abnormal days, DP drops, shadow ready: told when new only
            s[{"abnormal_day": "abnormal", "dp_drop": "dp_drop", "shadow_ready": "ready"}[n["kind"]]].append(item)
    for v in s.values():
        v.sort(key=lambda x: (x.get("name") or "", x["etab"],
                              x.get("day") or x.get("received_at") or x.get("run_at") or ""))
    return s


def mails(region: Region, findings: Findings | dict, notices: list[dict]) -> list[dict]:
    """The mails to send: the ARS summary (when there are notices to tell, or every day with a daily digest)
    first, then one per establishment contact and template. Each: template, to, subject, text, html, notices."""
    from rpu import mail

    f = findings.to_dict() if isinstance(findings, Findings) else findings
    out = []
    sections = _sections(notices)
    told = sum(len(v) for v in sections.values())
    told_missing = {n["etab"] for n in notices if n["kind"] == "missing"}
    ongoing = [m for m in f["missing"] if m["etab"] not in told_missing]
    common = dict(region=region, f=f, weekdays=WEEKDAYS_FR, reprise_after=REPRISE_AFTER_DAYS)
    if told or region.watch_daily_digest:
        subject, text, html = mail.render("watch_ars", s=sections, told=told, ongoing=ongoing,
                                          digest=region.watch_daily_digest, **common)
        out.append({"template": "watch_ars", "to": list(region.ars_emails), "subject": subject, "text": text,
                    "html": html, "notices": notices})
    groups: dict[tuple[str, str], list[dict]] = {}
    for n in notices:
        template = CONTACT_TEMPLATES.get((n["kind"], n["notice"]))
        if template and n["contact"]:
            groups.setdefault((n["etab"], template), []).append(n)
    for (etab, template), group in sorted(groups.items()):
        items = [{**n["details"], "notice": n["notice"]} for n in group]
        subject, text, html = mail.render(template, etab=etab, name=group[0]["name"], items=items,
                                          item=items[-1], **common)
        out.append({"template": template, "to": [group[0]["contact"]], "subject": subject, "text": text,
                    "html": html, "notices": group})
    return out


def notify(conn, region: Region, findings: Findings | dict, notices: list[dict], *,
           send: Callable[..., dict | None] | None = None, at: datetime | None = None) -> list[dict]:
    """Queue the mails in the outbox and mark the notices told, in one transaction, then deliver every pending
    mail of the region (`send(conn_id, to, subject, text, html)` → refused addresses, by default rpu.mail.send
    through the region's SMTP connection; see rpu.outbox). A mail not delivered to every address raises
    MailNotDelivered and stays pending: the retry — or the next day's run — sends it to the addresses still
    owed (at least once, never lost; never twice to an address that accepted it). Returns what was delivered
    (template, to, subject)."""
    from rpu import outbox

    cutoff = findings.cutoff.isoformat() if isinstance(findings, Findings) else findings["cutoff"]
    with conn.transaction():
        for m in mails(region, findings, notices):
            if not m["to"]:
                log.warning("watch %s: no ARS address (alerts.ars_none: true): %r not mailed", region.code,
                            m["subject"])
                continue
            # a retried task queues the same mails again: one per cut-off, template, addresses and notices
            key = (f"watch:{cutoff}:{m['template']}:{','.join(sorted(m['to']))}:"
                   f"{','.join(str(n['id']) for n in sorted(m['notices'], key=lambda n: n['id']))}")
            outbox.queue(conn, region, m["template"], m["to"], m["subject"], m["text"], m["html"], key=key)
        acknowledge(conn, notices, at or datetime.now(region.tz))
    return outbox.flush(conn, region, send=send)


# --- text for logs and the command line ---------------------------------------------------------------------

def _d(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value) if "T" in value else date.fromisoformat(value)
    if isinstance(value, datetime):
        return f"{value:%d/%m/%Y %H:%M}"
    return f"{value:%d/%m/%Y}"


def describe(f: Findings) -> str:
    """Findings as a few lines of French (task log, `rpu watch`): counts, dates, FINESS, file names only."""
    lines = [f"Veille {f.region_name} ({f.region}) — période du {_d(f.previous_cutoff)} au {_d(f.cutoff)} "
             f"({f.timezone})"]
    if not f.anything:
        lines.append("Rien à signaler : chaque établissement actif a transmis, aucun fichier rejeté, aucun jour "
                     "anormal.")
    for m in f.missing:
        if m.days is None:
            lines.append(f"DÉCLARÉ   {m.etab} {m.name} : pas encore en production — déclaré depuis le "
                         f"{_d(m.declared_since)} ({m.declared_days} jour(s)), aucun fichier accepté reçu à ce jour")
        else:
            lines.append(f"ABSENCE   {m.etab} {m.name} : {m.days} jour(s) sans transmission, dernier fichier accepté "
                         f"le {_d(m.last_accepted)}" + (f" — REPRISE NÉCESSAIRE (données manquantes depuis le "
                                                       f"{_d(m.lost_since)})" if m.reprise_needed else ""))
    for r in f.recovered:
        ask = ", ".join(f"le {_d(a)}" if a == b else f"du {_d(a)} au {_d(b)}" for a, b in r.reprise) or \
            "aucune (la fenêtre glissante a suffi)"
        lines.append(f"RETOUR    {r.etab} {r.name} : transmission reprise le {_d(r.back_at)} après {r.gap_days} "
                     f"jour(s) ; reprise à demander : {ask}")
    for r in f.rejected:
        why = "; ".join(x["rule"] for x in r.reasons) or "?"
        lines.append(f"REJET     {r.etab or '?'} {r.name or ''} : {r.file_name} reçu le {_d(r.received_at)} ({why})")
    for x in f.late:
        lines.append(f"RETARD    {x.etab} {x.name or ''} : {x.file_name} reçu le {_d(x.received_at)}, après la coupure "
                     f"du {_d(x.due)} (données jusqu'au {_d(x.period_end)})")
    for q in f.quality:
        what = "; ".join(f"{x['name']} ({x['description']})" for x in q.failed) or "contrôle non effectué"
        lines.append(f"QUALITÉ   {q.etab or '?'} {q.name or ''} : {q.file_name} — {what}"
                     + (" — LOT RETENU (quarantaine)" if q.quarantined else ""))
    for a in f.abnormal:
        lines.append(f"ANORMAL   {a.etab} {a.name} : {_d(a.day)} ({a.weekday}) {a.visits} passages < seuil "
                     f"{a.threshold:.1f} (μ {a.mean:.1f}, σ {a.sd:.1f}, {a.history} {a.weekday}s)")
    for d in f.dp_drops:
        days = ", ".join(f"{_d(x['day'])} {x['rate']:.0%}" for x in d.days)
        lines.append(f"DP        {d.etab} {d.name} : taux de codage du DP {days} (habituel {d.baseline_rate:.0%})")
    for s in f.shadow_ready:
        lines.append(f"BASCULE   {s.etab} {s.name} : {s.consecutive_days} jours consécutifs de transmission correcte, "
                     "prêt à basculer")
    return "\n".join(lines)


# --- `rpu watch` --------------------------------------------------------------------------------------------------

def register(subparsers) -> None:
    """Add the `watch` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser(
        "watch", help="what the watch DAG finds at a cut-off (nothing recorded, nothing mailed)",
        description="Print what the <region>_watch DAG would find at the latest cut-off at or before --at "
                    "(default: now): missing transmissions, rejected files, abnormal days, DP coding drops, "
                    "shadow establishments ready to switch. Nothing is recorded and no mail is sent. "
                    "Exit 0 when nothing is wrong, 1 otherwise.")
    p.add_argument("--region", required=True, help="region code (config/regions/CODE.yaml)")
    p.add_argument("--db", required=True, metavar="URL", help="PostgreSQL URL of the regional database")
    p.add_argument("--at", metavar="'YYYY-MM-DD HH:MM'",
                   help="the moment to judge, local time of the region (default: now)")
    p.add_argument("--json", action="store_true", help="the findings as one JSON object")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    import sys

    from rpu.config import get_region

    region = get_region(args.region)
    if args.at:
        try:
            now = datetime.strptime(args.at.strip(), "%Y-%m-%d %H:%M").replace(tzinfo=region.tz)
        except ValueError:
            print(f"rpu watch: --at {args.at!r}: expected 'YYYY-MM-DD HH:MM' (local time of the region)",
                  file=sys.stderr)
            return 2
    else:
        now = datetime.now(region.tz)
    with store.connection(args.db) as conn:
        f = findings(conn, region, now)
    if args.json:
        print(json.dumps(f.to_dict(), ensure_ascii=False, indent=1))
    else:
        print(describe(f))
    return 1 if f.anything else 0
