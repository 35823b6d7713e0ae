"""Pure figures for `make chaos` and `make soak`: no processes, no I/O beyond parsing.

Everything the report says is computed here from plain records, so the unit
tests (test_chaos.py) can pin down what each number means:

- a request is a `Req`: wall-clock start, duration, who sent it, what kind
  (redirect, write, read), method, route template, status and whether it
  counted as a success;
- a phase is a window [start, end) in which the fault acts, observed until
  `observe_end` (the next phase's start), so recovery is measured after the
  fault has been lifted too;
- percentiles are nearest-rank (the value a request actually took), never
  interpolated.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

WRITE_METHODS = {"POST", "PUT", "DELETE", "PATCH"}


@dataclass
class Req:
    t: float            # wall-clock start, seconds since the epoch
    dur: float          # seconds until the response (or the error)
    src: str            # goose-redirect, goose-mix, probe
    kind: str           # redirect, write, read
    method: str
    name: str           # route template
    status: int         # 0: no HTTP answer (connection error, timeout)
    ok: bool
    err: str = ""

    @property
    def end(self) -> float:
        return self.t + self.dur


def kind_of(method: str, name: str) -> str:
    """redirect (a click: GET or HEAD of a short code, known or not), write, or read."""
    tmpl = name.split(" ", 2)[1] if " " in name else name
    if method in ("GET", "HEAD") and tmpl in ("/{code}", "/urls/{code}/redirect"):
        return "redirect"
    if method in WRITE_METHODS:
        return "write"
    return "read"


class GooseLogParser:
    """goose's `--request-log` in JSON lines, fed in chunks; `offset` is the wall
    time of elapsed 0.

    goose logs a request when it completes, and logs it again with `update: true`
    when the scenario calls `set_failure` on it afterwards (a wrong body or
    Location): the update amends that request, so it counts as failed. A goose
    user is sequential (its set_failure comes before its next request), so the
    request an update belongs to is the latest one of its user: that is all the
    state kept between chunks.
    """

    def __init__(self, offset: float, src: str):
        self.offset, self.src = offset, src
        self.latest: dict = {}

    def feed(self, lines) -> list[Req]:
        out: list[Req] = []
        for line in lines:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                m = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by the end of the run
            raw = m.get("raw") or {}
            method = str(raw.get("method", "")).upper()
            # Our scenarios name requests "METHOD /template[ (note)]" already.
            name = m.get("name", "") or f"{method} {raw.get('url', '')}"
            key = (m.get("elapsed"), name, raw.get("url"))
            user = m.get("user")
            if m.get("update"):
                prev = self.latest.get(user)
                if prev is not None and prev[0] == key:
                    prev[1].ok = prev[1].ok and bool(m.get("success"))
                    prev[1].err = m.get("error", "") or prev[1].err
                continue
            dur = (m.get("response_time", 0) + m.get("response_time_fraction_us", 0) / 1000.0) / 1000.0
            r = Req(t=self.offset + m.get("elapsed", 0) / 1000.0, dur=dur, src=self.src,
                    kind=kind_of(method, name), method=method, name=name,
                    status=int(m.get("status_code") or 0), ok=bool(m.get("success")),
                    err=m.get("error", "") or "")
            self.latest[user] = (key, r)
            out.append(r)
        return out


def parse_goose_log(lines, offset: float, src: str) -> list[Req]:
    """A whole request log at once (see GooseLogParser)."""
    return GooseLogParser(offset, src).feed(lines)


def nearest_rank(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(1, math.ceil(pct / 100.0 * len(s)))
    return s[k - 1]


def status_label(r: Req) -> str:
    if r.ok:
        return "ok"
    if r.status == 0:
        return "no answer"
    return str(r.status)


@dataclass
class PhaseStats:
    requests: int = 0
    failed: int = 0
    failed_by_status: dict = field(default_factory=dict)
    failed_by_kind: dict = field(default_factory=dict)
    p99_ms: float = float("nan")
    max_ms: float = float("nan")
    recovery_s: float = 0.0
    failures: list = field(default_factory=list)


def phase_stats(reqs: list[Req], start: float, end: float, observe_end: float) -> PhaseStats:
    """Requests that started in [start, end) give the counts and latencies; failures
    up to `observe_end` give the time to full recovery: from `start` to the end of the
    last failed request, after which every request succeeded (0 when none failed)."""
    ps = PhaseStats()
    durs = []
    for r in reqs:
        if start <= r.t < end:
            ps.requests += 1
            durs.append(r.dur * 1000)
            if not r.ok:
                ps.failed += 1
                lab = status_label(r)
                ps.failed_by_status[lab] = ps.failed_by_status.get(lab, 0) + 1
                ps.failed_by_kind[r.kind] = ps.failed_by_kind.get(r.kind, 0) + 1
        if start <= r.t < observe_end and not r.ok:
            ps.failures.append(r)
    if durs:
        ps.p99_ms = nearest_rank(durs, 99)
        ps.max_ms = max(durs)
    if ps.failures:
        ps.recovery_s = max(r.end for r in ps.failures) - start
    return ps


def writes_only_503_while_unavailable(failures: list[Req], unavailable: list[tuple[float, float]],
                                      slack_s: float = 2.0) -> list[Req]:
    """The failed writes that break "writes fail only with 503 and only while the
    primary is unavailable (+2 s)": another status, or an answer outside every
    unavailable interval widened by `slack_s` at its end."""
    bad = []
    for r in failures:
        if r.kind != "write":
            continue
        inside = any(a <= r.end <= b + slack_s for a, b in unavailable)
        if r.status != 503 or not inside:
            bad.append(r)
    return bad


def failures_not_in_flight(failures: list[Req], killed_at: float, slack_s: float = 0.05) -> list[Req]:
    """For a SIGKILLed instance: the failures of requests that were not in flight
    when it died (they started after the kill, beyond `slack_s` of clock jitter)."""
    return [r for r in failures if r.t > killed_at + slack_s]


# === soak ===

def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, in value per hour."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    sxx = sum((t - mx) ** 2 for t, _ in points)
    if sxx == 0:
        return 0.0
    sxy = sum((t - mx) * (v - my) for t, v in points)
    return sxy / sxx * 3600.0


def slope_se_per_hour(points: list[tuple[float, float]]) -> float:
    """Standard error of the least-squares slope, per hour (0 with fewer than 3 points)."""
    n = len(points)
    if n < 3:
        return 0.0
    s = slope_per_hour(points) / 3600
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    sxx = sum((t - mx) ** 2 for t, _ in points)
    if sxx == 0:
        return 0.0
    res = sum((v - (my + s * (t - mx))) ** 2 for t, v in points)
    return (res / (n - 2) / sxx) ** 0.5 * 3600


def flat(points: list[tuple[float, float]], rel_per_day: float, abs_per_hour: float):
    """(flat?, slope /h, its standard error /h, bound /h). The bound: growth that,
    over 24 h, moves the series by `rel_per_day` of its mean, or `abs_per_hour`,
    whichever is larger (the floor for series near zero). Flat unless the slope is
    above the bound by more than 3 standard errors: a short run cannot tell a small
    slope from noise, and the report shows the error beside the slope."""
    if not points:
        return True, 0.0, 0.0, abs_per_hour
    s, se = slope_per_hour(points), slope_se_per_hour(points)
    mean = sum(v for _, v in points) / len(points)
    bound = max(abs_per_hour, rel_per_day * abs(mean) / 24)
    return abs(s) - 3 * se <= bound, s, se, bound


def fmt_ms(v: float) -> str:
    if v != v:  # NaN
        return "-"
    return f"{v:.0f}" if v >= 10 else f"{v:.1f}"


def fmt_counts(d: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(d.items(), key=lambda kv: -kv[1])) or "0"
