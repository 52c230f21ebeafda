"""The watch's rules: what is wrong at a cut-off (`findings`), as plain data (docs/watch.md)."""
from __future__ import annotations

import logging
import math
import statistics
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta

from rpu import store, transition
from rpu.config import Region
from rpu.exports import periods
from rpu.problems import RULES
from rpu.quality import results as quality_results

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
    hour, minute = region.watch.cutoff.split(":")
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
    out = []
    for e in errors[:10]:
        rule = e.get("rule", "")
        out.append({"rule": rule, "label": RULES.get(rule, ("", rule))[1], "line": e.get("line"),
                    "visit": e.get("visit"), "message": e.get("message") if rule in SAFE_MESSAGE_RULES else None})
    return out


def findings(conn, region: Region, now: datetime) -> Findings:
    """What is wrong at the latest cut-off at or before `now` (timezone-aware); see the module's doc."""
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
    for q in quality_results.failed_since(conn, previous):    # gates run since then; files received in the period
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
    start = min(first_judged - timedelta(weeks=region.watch.history_weeks),
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
            history = [mine[h][0] for k in range(1, region.watch.history_weeks + 1)
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
