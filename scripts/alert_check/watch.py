"""Watching the alert chain: what Prometheus, Alertmanager and the webhook sink say,
once a second, turned into a timeline of events and then checked.

Sources, all polled (nothing is pushed to us):
- Prometheus /api/v1/alerts: each alert's state (pending, firing) and activeAt,
  the evaluation at which its condition first held;
- Prometheus /api/v1/query on each alerting rule's own expression: when the
  condition held, measured independently of the alert's bookkeeping;
- Alertmanager /api/v2/alerts: which alerts it holds, active or suppressed
  (inhibitedBy), and which receivers they route to;
- the webhook sink's JSONL file: what was delivered, where, and when
  (`received_at_ms`, the sink's own clock; same machine).
Times are wall-clock seconds since the epoch; the report prints them relative
to the start of the run.
"""
from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path


def http_json(url: str, timeout: float = 3.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


def parse_rfc3339(s: str) -> float:
    """Prometheus' activeAt (nanoseconds, `Z`) as epoch seconds."""
    m = re.match(r"^(.*?T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", s)
    if not m:
        raise ValueError(f"not an RFC 3339 time: {s!r}")
    frac = (m.group(2) or ".0")[:7]
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(m.group(1) + frac + tz).timestamp()


@dataclass
class Rule:
    name: str
    for_s: float
    severity: str
    query: str
    labels: dict


def load_rules(prom: str) -> tuple[dict[str, Rule], float]:
    """Alerting rules as Prometheus loaded them, and the evaluation interval (s)."""
    data = http_json(f"{prom}/api/v1/rules?type=alert")["data"]["groups"]
    rules, interval = {}, 0.0
    for g in data:
        interval = max(interval, float(g.get("interval", 0)))
        for r in g["rules"]:
            rules[r["name"]] = Rule(r["name"], float(r.get("duration", 0)),
                                    r.get("labels", {}).get("severity", ""), r["query"], r.get("labels", {}))
    return rules, interval


@dataclass
class Event:
    t: float
    kind: str  # mark, cond, prom, am, sink
    name: str
    detail: str


@dataclass
class Delivery:
    t: float
    path: str
    status: str  # FIRING or RESOLVED
    alert: str


@dataclass
class Episode:
    """One pending -> (firing) -> inactive life of an alert in Prometheus."""
    active_at: float
    pending_seen: float
    firing_seen: float | None = None
    ended_seen: float | None = None


def parse_delivery(line: dict) -> list[Delivery]:
    """A sink record as (status, alertname) pairs: Discord embeds or webhook JSON."""
    t = line["received_at_ms"] / 1000.0
    path = line.get("path", "")
    body = line.get("body")
    out = []
    if isinstance(body, dict) and "alerts" in body:  # webhook_configs
        for a in body["alerts"]:
            out.append(Delivery(t, path, a.get("status", "").upper(), a.get("labels", {}).get("alertname", "?")))
    elif isinstance(body, dict) and body.get("embeds"):  # discord_configs
        for e in body["embeds"]:
            # Alertmanager's default title: "[FIRING:1] HighLatency url-shortener (...)":
            # status, then the group labels' values sorted by name (alertname first).
            m = re.match(r"^\[(FIRING|RESOLVED)(?::\d+)?\]\s+(\S+)", e.get("title", ""))
            if m:
                out.append(Delivery(t, path, m.group(1), m.group(2)))
            else:
                out.append(Delivery(t, path, "UNKNOWN", e.get("title", "?")[:60]))
    else:
        out.append(Delivery(t, path, "UNKNOWN", str(body)[:60]))
    return out


class Watcher(threading.Thread):
    """Polls every `period` seconds until stopped; keeps every state change."""

    def __init__(self, prom: str, am: str, rules: dict[str, Rule], sink_file: Path | None,
                 period: float = 1.0, echo=None):
        super().__init__(daemon=True)
        self.prom, self.am, self.rules, self.sink_file, self.period = prom, am, rules, sink_file, period
        self.echo = echo
        self.lock = threading.Lock()
        self.events: list[Event] = []
        self.deliveries: list[Delivery] = []
        self.episodes: dict[str, list[Episode]] = {}
        self.prom_state: dict[str, str] = {}
        self.cond: dict[str, bool] = {}
        self.am_state: dict[str, str] = {}
        self.am_receivers: dict[str, set[str]] = {}
        self.am_seen: list[tuple[float, dict[str, str]]] = []  # (t, name -> state) per poll
        self.prom_seen: list[tuple[float, dict[str, str]]] = []
        self.errors = 0
        self._stop_evt = threading.Event()
        self._sink_pos = 0

    # --- recording ---
    def add(self, t: float, kind: str, name: str, detail: str) -> None:
        with self.lock:
            self.events.append(Event(t, kind, name, detail))
        if self.echo:
            self.echo(Event(t, kind, name, detail))

    def mark(self, what: str, detail: str = "") -> float:
        t = time.time()
        self.add(t, "mark", what, detail)
        return t

    def stop(self) -> None:
        self._stop_evt.set()

    def run(self) -> None:
        while not self._stop_evt.is_set():
            start = time.time()
            try:
                self.poll_once()
            except Exception as e:  # a slow or restarting component: note it, keep polling
                self.errors += 1
                if self.errors <= 5 or self.errors % 30 == 0:
                    self.add(time.time(), "note", "watcher", f"poll failed: {e}")
            self._stop_evt.wait(max(0.05, self.period - (time.time() - start)))
        self.poll_sink()

    def poll_once(self) -> None:
        now = time.time()
        # Prometheus alerts: the highest state per alert name.
        alerts = http_json(f"{self.prom}/api/v1/alerts")["data"]["alerts"]
        cur: dict[str, tuple[str, float]] = {}
        for a in alerts:
            name = a["labels"].get("alertname", "?")
            st, at = a["state"], parse_rfc3339(a["activeAt"])
            prev = cur.get(name)
            if prev is None or (st == "firing" and prev[0] != "firing") or (st == prev[0] and at < prev[1]):
                cur[name] = (st, at)
        with self.lock:
            self.prom_seen.append((now, {n: s for n, (s, _) in cur.items()}))
        for name in set(cur) | set(self.prom_state):
            old = self.prom_state.get(name, "inactive")
            new, at = cur.get(name, ("inactive", 0.0))
            if new == old:
                continue
            eps = self.episodes.setdefault(name, [])
            if old == "inactive":
                eps.append(Episode(active_at=at, pending_seen=now))
                self.add(at, "prom", name, f"pending (activeAt; condition first held at this evaluation)")
            if new == "firing":
                eps[-1].firing_seen = now
                self.add(now, "prom", name, "firing")
            if new == "inactive":
                eps[-1].ended_seen = now
                self.add(now, "prom", name, "resolved" if old == "firing" else "cleared while pending")
            self.prom_state[name] = new
        # Each rule's condition, queried directly.
        for name, rule in self.rules.items():
            q = urllib.parse.urlencode({"query": rule.query})
            res = http_json(f"{self.prom}/api/v1/query?{q}")["data"]["result"]
            holds = bool(res)
            if holds != self.cond.get(name, False):
                self.cond[name] = holds
                self.add(now, "cond", name, "condition true" if holds else "condition false")
        # Alertmanager's view.
        am_alerts = http_json(f"{self.am}/api/v2/alerts")
        am_cur: dict[str, str] = {}
        for a in am_alerts:
            name = a["labels"].get("alertname", "?")
            st = a["status"]["state"]
            if st == "suppressed" and a["status"].get("inhibitedBy"):
                st = "suppressed (inhibited)"
            if am_cur.get(name) not in ("active",):
                am_cur[name] = st
            self.am_receivers.setdefault(name, set()).update(r["name"] for r in a.get("receivers", []))
        with self.lock:
            self.am_seen.append((now, dict(am_cur)))
        for name in set(am_cur) | set(self.am_state):
            old, new = self.am_state.get(name, "absent"), am_cur.get(name, "absent")
            if old != new:
                recv = ",".join(sorted(self.am_receivers.get(name, ()))) or "-"
                self.add(now, "am", name, f"{new}" + (f" (routes to {recv})" if new != "absent" else ""))
                self.am_state[name] = new
        self.poll_sink()

    def poll_sink(self) -> None:
        if not self.sink_file or not self.sink_file.exists():
            return
        with self.sink_file.open() as f:
            f.seek(self._sink_pos)
            chunk = f.read()
        # Only whole lines; the sink flushes line by line.
        if "\n" not in chunk:
            return
        whole, _ = chunk.rsplit("\n", 1)
        self._sink_pos += len(whole.encode()) + 1
        for raw in whole.splitlines():
            if not raw.strip():
                continue
            for d in parse_delivery(json.loads(raw)):
                with self.lock:
                    self.deliveries.append(d)
                self.add(d.t, "sink", d.alert, f"delivered {d.status} to {d.path}")

    # --- questions the checks ask ---
    def episode_firing_after(self, name: str, after: float) -> Episode | None:
        """The first episode of `name` seen firing at or after `after`."""
        for ep in self.episodes.get(name, []):
            if ep.firing_seen is not None and ep.firing_seen >= after:
                return ep
        return None

    def fired_between(self, t0: float, t1: float) -> set[str]:
        return {n for t, st in self.prom_seen if t0 <= t < t1 for n, s in st.items() if s == "firing"}

    def firing_at(self, name: str, t: float) -> bool:
        """Prometheus' last observation at or before t."""
        last = None
        for tt, st in self.prom_seen:
            if tt > t:
                break
            last = st
        return bool(last and last.get(name) == "firing")

    def delivered(self, alert: str, status: str, path: str | None = None, after: float = 0.0) -> list[Delivery]:
        return [d for d in self.deliveries
                if d.alert == alert and d.status == status and d.t >= after and (path is None or d.path == path)]


# === the report ===

def fmt_t(t: float, t0: float) -> str:
    clock = datetime.fromtimestamp(t).strftime("%H:%M:%S.%f")[:-3]
    return f"t+{t - t0:7.1f}s  {clock}"


def render(w: Watcher, t0: float, receivers: dict[str, str], quiet_kinds=("cond",),
           quiet_names=()) -> list[str]:
    """The timeline, one line per event, sorted by time."""
    lines = []
    for e in sorted(w.events, key=lambda e: e.t):
        if e.kind in quiet_kinds and e.name in quiet_names:
            continue
        detail = e.detail
        if e.kind == "sink":
            for path, recv in receivers.items():
                detail = detail.replace(f"to {path}", f"to {path} ({recv})")
        tag = {"mark": "==", "cond": "expr", "prom": "prom", "am": "am", "sink": "sink", "note": "note"}[e.kind]
        name = "" if e.kind == "mark" else e.name
        what = f"{e.name}: {detail}" if e.kind == "mark" and detail else (e.name if e.kind == "mark" else detail)
        lines.append(f"{fmt_t(e.t, t0)}  {tag:<4}  {name:<22} {what}")
    return lines
