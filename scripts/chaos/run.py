#!/usr/bin/env python3
"""`make chaos` and `make soak`: the cluster in a box (cluster.py) under load.

    run.py chaos   faults 1-6 one at a time, recovery in between; the table goes to
                   stdout, .local/chaos/report.md and docs/reliability.md
    run.py soak    no faults: a short ramp finds the peak, then SOAK_MINUTES at 70 %
                   of it, sampling resources every 10 s; .local/soak/report.md

scripts/chaos.sh installs what is missing and builds first. Exit status: 0 every
target met, 1 a target missed (the report says which), 2 the harness could not run.
Everything started is stopped on every path out (finally, SIGTERM, the overall
deadline CHAOS_MAX_SECONDS / the soak's own).
"""
from __future__ import annotations

import json
import os
import platform
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import analysis as an  # noqa: E402
from cluster import (BIN, LB_PORT, ROOT, Cluster, HarnessError, PgNode, info,  # noqa: E402
                     log, wait_for)


def env_int(name: str, default: int) -> int:
    v = os.environ.get(name, "")
    try:
        return int(v) if v else default
    except ValueError:
        raise HarnessError(f"{name}={v!r}: not an integer") from None


PHASE_S = env_int("CHAOS_PHASE_SECONDS", 60)          # each fault's window (fault 6: slow and down, each)
BASELINE_S = env_int("CHAOS_BASELINE_SECONDS", 30)    # no fault, for comparison
SETTLE_S = env_int("CHAOS_SETTLE_SECONDS", 10)        # healthy again -> next fault
PROMOTE_AFTER_S = env_int("CHAOS_PROMOTE_AFTER_SECONDS", 5)   # an operator's (or CNPG's) detection time
RESTART_AFTER_S = env_int("CHAOS_RESTART_AFTER_SECONDS", 10)  # kubelet restarting a killed container
PRESTOP_S = env_int("CHAOS_PRESTOP_SECONDS", 5)       # k8s/deployment.yaml's preStop sleep
DELAY_MS = env_int("CHAOS_DB_DELAY_MS", 2000)
RECOVERY_MAX_S = env_int("CHAOS_RECOVERY_MAX_SECONDS", 120)
MAX_S = env_int("CHAOS_MAX_SECONDS", 1500)            # the whole run, build excluded
REDIRECT_USERS = env_int("CHAOS_REDIRECT_USERS", 16)
REDIRECT_RPS = env_int("CHAOS_REDIRECT_RPS", 400)
MIX_USERS = env_int("CHAOS_MIX_USERS", 4)
MIX_RPS = env_int("CHAOS_MIX_RPS", 40)
PROBE_THREADS = env_int("CHAOS_PROBE_THREADS", 2)
PROBE_RPS = env_int("CHAOS_PROBE_RPS", 4)             # per thread
SEED_USERS = env_int("CHAOS_SEED_USERS", 1000)
SEED_URLS = env_int("CHAOS_SEED_URLS", 20000)
SHUTDOWN_BUDGET_S = 20 + 10                           # SHUTDOWN_TIMEOUT_SECONDS + margin
LB = f"http://127.0.0.1:{LB_PORT}"


# === load: goose and the writer probe ===

class Goose:
    """One loadtest process for the whole run, with its request log."""

    def __init__(self, name: str, work: Path, args: list[str], stream: bool = False):
        self.name = name
        # stream: parse the lines as they come (into `pending`) instead of the
        # whole log at the end, for runs whose logs are too big to hold (soak).
        self.parser = an.GooseLogParser(0.0, name) if stream else None
        self.pending: list[an.Req] = []
        self.reqlog = work / f"{name}-requests.jsonl"
        self.logf = work / "logs" / f"{name}.log"
        self.args = args
        self.proc: subprocess.Popen | None = None
        # Wall time of goose's elapsed 0, estimated from below: each request is
        # logged when it ends, so start <= now - (elapsed + response time) for every
        # line seen; the smallest such bound seen is the estimate (within the
        # logger's buffering, some milliseconds).
        self.offset = float("inf")
        self._pos = 0

    def start(self) -> None:
        self.reqlog.unlink(missing_ok=True)
        out = self.logf.open("w")
        argv = [str(BIN / "loadtest"), "-H", LB, *self.args, "-t", "3h", "--request-log", str(self.reqlog),
                "--request-format", "json", "--no-reset-metrics", "--quiet"]
        self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=ROOT, start_new_session=True)
        out.close()
        log(f"started goose {self.name} (pid {self.proc.pid}): {' '.join(self.args)}")

    def calibrate(self) -> int:
        """Reads the lines written since the last call; returns how many."""
        if not self.reqlog.exists():
            return 0
        now = time.time()
        with self.reqlog.open("rb") as f:
            f.seek(self._pos)
            data = f.read()
        cut = data.rfind(b"\n")
        if cut < 0:
            return 0
        self._pos += cut + 1
        n = 0
        lines = data[:cut].splitlines()
        for line in lines[-200:]:
            try:
                m = json.loads(line)
            except ValueError:
                continue
            n += 1
            end = (m.get("elapsed", 0) + m.get("response_time", 0)) / 1000.0
            self.offset = min(self.offset, now - end)
        if self.parser is not None:
            self.parser.offset = self.offset
            self.pending.extend(self.parser.feed(l.decode(errors="replace") for l in lines))
        return len(lines)

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        return self.proc.returncode

    def requests(self) -> list[an.Req]:
        if not self.reqlog.exists() or self.offset == float("inf"):
            return []
        with self.reqlog.open() as f:
            return an.parse_goose_log(f, self.offset, self.name)

    def summary(self) -> str:
        lines = [l for l in self.logf.read_text(errors="replace").splitlines() if "requests in" in l]
        return lines[-1].replace("loadtest: ", "") if lines else "(no summary line)"


@dataclass
class ProbeWrite:
    t: float
    dur: float
    op: str            # create, update
    status: int
    url_id: int | None
    title: str
    err: str = ""


class Probe:
    """Writes through the balancer and records every attempt: POST /urls with a
    unique title, then PUT a new unique title on one of its own URLs. Acknowledged
    (201, 200) writes must be in PostgreSQL; any attempt, acknowledged or not, must
    be whole or absent (a url with its `created` event, an `updated` event for
    exactly the titles that were applied)."""

    def __init__(self, threads: int, rps: float):
        self.threads, self.period = threads, 1.0 / max(rps, 0.1)
        self.records: list[ProbeWrite] = []
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.user_id: int | None = None
        self.workers: list[threading.Thread] = []

    def call(self, method: str, path: str, body: dict, timeout: float = 20) -> tuple[int, dict, str]:
        req = urllib.request.Request(LB + path, data=json.dumps(body).encode(), method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"{}"), ""
        except urllib.error.HTTPError as e:
            return e.code, {}, e.read()[:200].decode(errors="replace")
        except (urllib.error.URLError, OSError, ValueError) as e:
            return 0, {}, str(e)[:200]

    def start(self) -> None:
        tag = f"{int(time.time())}-{random.randrange(1 << 30):x}"
        code, body, err = self.call("POST", "/users", {"username": f"chaos-probe-{tag}",
                                                       "email": f"chaos-probe-{tag}@example.com"})
        if code != 201:
            raise HarnessError(f"the writer probe could not create its user: {code} {err}")
        self.user_id = int(body["id"])
        for i in range(self.threads):
            t = threading.Thread(target=self._loop, args=(i, tag), daemon=True, name=f"probe-{i}")
            t.start()
            self.workers.append(t)

    def _loop(self, i: int, tag: str) -> None:
        mine: list[int] = []
        n = 0
        nxt = time.time()
        while not self.stop_ev.is_set():
            n += 1
            if not mine or n % 2 == 1:
                title = f"probe {tag} {i}-{n} created"
                t0 = time.time()
                code, body, err = self.call("POST", "/urls", {"user_id": self.user_id, "title": title,
                                                              "original_url": f"https://example.com/chaos/{tag}/{i}/{n}"})
                uid = body.get("id") if code == 201 else None
                if uid:
                    mine.append(int(uid))
                rec = ProbeWrite(t0, time.time() - t0, "create", code, uid, title, err)
            else:
                uid = random.choice(mine)
                title = f"probe {tag} {i}-{n} updated"
                t0 = time.time()
                code, _, err = self.call("PUT", f"/urls/{uid}", {"title": title})
                rec = ProbeWrite(t0, time.time() - t0, "update", code, uid, title, err)
            with self.lock:
                self.records.append(rec)
            nxt += self.period
            self.stop_ev.wait(max(0.0, nxt - time.time()))
            nxt = max(nxt, time.time() - 1)  # after a long stall, don't burst to catch up

    def stop(self) -> None:
        self.stop_ev.set()
        for t in self.workers:
            t.join(30)

    def snapshot(self) -> list[ProbeWrite]:
        with self.lock:
            return list(self.records)

    def requests(self) -> list[an.Req]:
        return [an.Req(t=r.t, dur=r.dur, src="probe", kind="write", method="POST" if r.op == "create" else "PUT",
                       name="POST /urls (probe)" if r.op == "create" else "PUT /urls/{id} (probe)",
                       status=r.status, ok=r.status in (200, 201), err=r.err) for r in self.snapshot()]


def data_check(pg: PgNode, probe: Probe) -> tuple[bool, str]:
    """Every acknowledged probe write is in PostgreSQL, and nothing is half-applied."""
    recs = probe.snapshot()
    u = probe.user_id
    # One statement, so one snapshot: a write committing between two queries
    # would otherwise look half-applied.
    urls: dict[int, str] = {}
    created: dict[int, int] = {}
    updated: dict[int, list[str]] = {}
    for line in pg.psql(
            f"SELECT 'url', id, 0::bigint AS eid, title FROM urls WHERE user_id = {u} "
            f"UNION ALL SELECT event_type, url_id, id, coalesce(details->>'new_value', '') FROM events "
            f"WHERE user_id = {u} AND event_type IN ('created', 'updated') ORDER BY 1, 3").splitlines():
        if not line:
            continue
        what, url_id, _eid, val = line.split("\t", 3)
        if what == "url":
            urls[int(url_id)] = val
        elif what == "created":
            created[int(url_id)] = created.get(int(url_id), 0) + 1
        else:
            updated.setdefault(int(url_id), []).append(val)
    problems = []
    acked_creates = [r for r in recs if r.op == "create" and r.status == 201]
    acked_updates = [r for r in recs if r.op == "update" and r.status == 200]
    for r in acked_creates:
        if r.url_id not in urls:
            problems.append(f"acknowledged create of url {r.url_id} ({r.title!r}) missing")
    for r in acked_updates:
        if r.title not in updated.get(r.url_id, []):
            problems.append(f"acknowledged update of url {r.url_id} to {r.title!r} has no updated event")
    for uid, title in urls.items():
        if created.get(uid, 0) != 1:
            problems.append(f"url {uid} has {created.get(uid, 0)} created events")
        applied = updated.get(uid, [])
        # The url's title is the last applied update's (or its first title).
        if applied and title != applied[-1]:
            problems.append(f"url {uid}: title {title!r} but the last updated event says {applied[-1]!r}")
    for uid in created:
        if uid not in urls:
            problems.append(f"created event for url {uid}, which does not exist")
    unacked = sum(1 for r in recs if r.status not in (200, 201))
    applied_unacked = sum(1 for r in recs if r.op == "create" and r.status != 201 and r.title in urls.values())
    detail = (f"{len(acked_creates)} creates + {len(acked_updates)} updates acknowledged, all present; "
              f"{unacked} unacknowledged ({applied_unacked} creates of them applied anyway, whole)")
    if problems:
        return False, f"{len(problems)} problems: " + "; ".join(problems[:5])
    return True, detail


# === sampling ===

class Sampler(threading.Thread):
    """Once a second: each instance's counters (so a killed one's are at most 1 s
    old), goose's clock offset, HAProxy's view; a line per change of that view."""

    def __init__(self, cl: Cluster, gooses: list[Goose], timeline: list):
        super().__init__(daemon=True, name="sampler")
        self.cl, self.gooses, self.timeline = cl, gooses, timeline
        self.stop_ev = threading.Event()
        self.lb_last: dict = {}

    def run(self) -> None:
        while not self.stop_ev.wait(1.0):
            for inst in self.cl.instances:
                try:
                    inst.scrape()
                except Exception:  # noqa: BLE001 - a sample missed is not a failure
                    pass
            for g in self.gooses:
                g.calibrate()
            st = self.cl.lb.states()
            if st and st != self.lb_last:
                self.timeline.append((time.time(), "haproxy", " ".join(f"{k}={v}" for k, v in sorted(st.items()))))
                self.lb_last = st


def click_sample(cl: Cluster) -> dict:
    """Served (as fresh as a scrape now makes it), dropped and recorded clicks."""
    tot = {"found": 0.0, "clicks_dropped": 0.0, "events_dropped": 0.0, "clicks_recorded": 0.0}
    for inst in cl.instances:
        inst.scrape()
        for k, v in inst.totals().items():
            tot[k] += v
    try:
        tot["recorded"] = float(cl.primary.psql("SELECT coalesce(sum(clicks), 0) FROM click_link_hourly").strip())
    except HarnessError:
        tot["recorded"] = float("nan")
    tot["t"] = time.time()
    return tot


# === the faults ===

@dataclass
class Phase:
    key: str
    title: str
    start: float = 0.0
    end: float = 0.0
    observe_end: float = 0.0
    unavailable: list = field(default_factory=list)   # primary unavailable intervals
    killed_at: float | None = None
    notes: list = field(default_factory=list)
    clicks_before: dict = field(default_factory=dict)
    clicks_after: dict = field(default_factory=dict)
    data_ok: bool = True
    data_detail: str = ""
    recovered_in: float | None = None


class Chaos:
    def __init__(self, cl: Cluster, timeline: list):
        self.cl, self.timeline = cl, timeline

    def mark(self, what: str) -> float:
        t = time.time()
        self.timeline.append((t, "fault", what))
        log(what)
        return t

    def sleep_until(self, t: float) -> None:
        while time.time() < t:
            time.sleep(min(0.5, max(0.0, t - time.time())))

    def baseline(self, ph: Phase) -> None:
        ph.start = self.mark("baseline: no fault")
        self.sleep_until(ph.start + BASELINE_S)

    def valkey_master(self, ph: Phase) -> None:
        mport = self.cl.valkey_master_port()
        node = self.cl.valkey_node_on(mport)
        ph.start = self.mark(f"fault 1: SIGKILL Valkey master {node.name} (:{mport})")
        node.kill()
        try:
            wait_for(lambda: self.cl.valkey_master_port() not in (None, mport), PHASE_S, "Sentinel failover")
            self.mark(f"Sentinel promoted :{self.cl.valkey_master_port()}")
        except HarnessError as e:
            ph.notes.append(str(e))
        self.sleep_until(ph.start + PHASE_S)
        ph.end = self.mark(f"restarting {node.name}; Sentinel makes it a replica")
        node.start()

    def pg_primary(self, ph: Phase) -> None:
        old, new = self.cl.primary, self.cl.standby
        ph.start = self.mark(f"fault 2: SIGKILL PostgreSQL primary {old.name} (postmaster and children)")
        old.kill9()
        self.sleep_until(ph.start + PROMOTE_AFTER_S)
        self.mark(f"pg_ctl promote {new.name}")
        new.promote()
        wait_for(new.writable, 30, f"{new.name} to accept writes")
        t_up = self.mark(f"{new.name} accepts writes")
        ph.unavailable.append((ph.start, t_up))
        self.cl.primary, self.cl.standby = new, old
        self.sleep_until(ph.start + PHASE_S)
        ph.end = self.mark(f"rebuilding {old.name} as a standby of {new.name} (pg_basebackup)")
        self.cl.rebuild_standby(old)
        self.mark(f"{old.name} streams from {new.name}")

    def pg_restart(self, ph: Phase) -> None:
        p = self.cl.primary
        ph.start = self.mark(f"fault 3: pg_ctl restart -m fast of the primary {p.name}")
        p.restart()
        wait_for(p.writable, 30, f"{p.name} to accept writes")
        ph.unavailable.append((ph.start, self.mark(f"{p.name} accepts writes again")))
        self.sleep_until(ph.start + PHASE_S)
        ph.end = time.time()

    def rolling(self, ph: Phase) -> None:
        ph.start = self.mark("fault 4: rolling restart (drain, preStop, SIGTERM, wait, start, ready)")
        for inst in self.cl.instances:
            if PRESTOP_S > 0:
                # The endpoint leaves the Service while preStop sleeps (Kubernetes
                # does both at once when a pod is deleted): drain = no new requests.
                self.cl.lb.set_state(inst.name, "drain")
                self.mark(f"{inst.name}: HAProxy drain (endpoint removed), preStop {PRESTOP_S}s")
                time.sleep(PRESTOP_S)
            self.mark(f"{inst.name}: SIGTERM")
            rc, took = inst.terminate(SHUTDOWN_BUDGET_S)
            self.mark(f"{inst.name}: exited {rc} after {took:.1f}s; starting it again")
            if rc != 0:
                ph.notes.append(f"{inst.name} exited {rc} on SIGTERM")
            inst.start()
            wait_for(inst.ready, 60, f"{inst.name} /ready")
            self.cl.lb.set_state(inst.name, "ready")
            wait_for(lambda: self.cl.lb.states().get(inst.name) == "UP", 20, f"HAProxy to see {inst.name} UP")
            self.mark(f"{inst.name}: ready and UP")
        ph.end = time.time()

    def kill_instance(self, ph: Phase) -> None:
        inst = self.cl.instances[1]
        # The counters as close to the kill as a scrape gets, so the residual
        # of the click check is the clicks lost in its queue, not scrape lag.
        inst.scrape()
        ph.start = self.mark(f"fault 5: SIGKILL {inst.name}")
        ph.killed_at = inst.kill9()
        self.sleep_until(ph.start + RESTART_AFTER_S)
        self.mark(f"{inst.name}: restarted (as the kubelet would)")
        inst.start()
        wait_for(inst.ready, 60, f"{inst.name} /ready")
        self.mark(f"{inst.name}: ready")
        self.sleep_until(ph.start + PHASE_S)
        ph.end = time.time()

    def pg_slow_then_down(self, ph: Phase) -> None:
        ph.start = self.mark(f"fault 6: faultproxy delay {DELAY_MS} ms in front of both PostgreSQL nodes")
        for p in self.cl.proxies.values():
            p.mode(f"delay {DELAY_MS}")
        self.sleep_until(ph.start + PHASE_S)
        t_down = self.mark("fault 6: faultproxy refuse (PostgreSQL unreachable)")
        for p in self.cl.proxies.values():
            p.mode("refuse")
        self.sleep_until(t_down + PHASE_S)
        for p in self.cl.proxies.values():
            p.mode("pass")
        ph.end = self.mark("fault 6 over: faultproxy pass")
        ph.unavailable.append((t_down, ph.end))


PHASES = [
    ("0", "baseline (no fault)", "baseline"),
    ("1", "Valkey master SIGKILL (Sentinel failover)", "valkey_master"),
    ("2", "PostgreSQL primary SIGKILL, standby promoted", "pg_primary"),
    ("3", "PostgreSQL restarted in place", "pg_restart"),
    ("4", "rolling restart of the 3 instances", "rolling"),
    ("5", "one instance SIGKILL", "kill_instance"),
    ("6", f"PostgreSQL slow ({DELAY_MS} ms) then unreachable", "pg_slow_then_down"),
]


# === the chaos run ===

def machine() -> str:
    mem = subprocess.run(["free", "-g"], capture_output=True, text=True).stdout.strip()
    total = next((l.split()[1] for l in mem.splitlines() if l.startswith("Mem:")), "?")
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), "?")
    return (f"{os.cpu_count()} cores ({cpu}), {total} GiB RAM (free -g), Linux {platform.release()}, "
            f"shared with other builds")


def chaos() -> int:
    work = ROOT / ".local" / "chaos"
    work.mkdir(parents=True, exist_ok=True)
    t_run = time.time()
    timeline: list = []
    cl = Cluster(work, os.environ["CHAOS_VALKEY_BIN"])
    gooses = [Goose("goose-redirect", work, ["--scenarios", "redirect", "-u", str(REDIRECT_USERS), "-r",
                                              str(REDIRECT_USERS), "--throttle-requests", str(REDIRECT_RPS),
                                              "--discover-limit", str(SEED_URLS)]),
              Goose("goose-mix", work, ["--scenarios", "mix", "-u", str(MIX_USERS), "-r", str(MIX_USERS),
                                        "--throttle-requests", str(MIX_RPS), "--discover-limit", "5000"])]
    probe = Probe(PROBE_THREADS, PROBE_RPS)
    sampler = Sampler(cl, gooses, timeline)
    phases = [Phase(k, t) for k, t, _ in PHASES]
    final_clicks: dict = {}
    start_clicks: dict = {}
    final_data = None
    harness_error = ""
    harness_notes: list[str] = []
    try:
        cl.check_ports()
        log(f"PostgreSQL a (primary) + b (standby) under {cl.pgroot}; seeding {SEED_USERS} users, {SEED_URLS} urls")
        cl.start_postgres(SEED_USERS, SEED_URLS)
        log("Valkey master + replica + 3 Sentinels")
        cl.start_valkey()
        log("3 instances and HAProxy")
        cl.start_instances()
        # The whole run's click reconciliation starts here, before any load: a
        # sample taken under load would count the clicks then queued as missing.
        start_clicks = click_sample(cl)
        for g in gooses:
            g.start()
        wait_for(lambda: all(g.calibrate() or g.offset < float("inf") for g in gooses), 120,
                 "goose to send its first requests")
        probe.start()
        sampler.start()
        time.sleep(5)  # warm caches and pools before the baseline window
        runner = Chaos(cl, timeline)
        try:
            run_phases(cl, runner, phases, probe, harness_notes, t_run)
        except HarnessError as e:
            # Keep what was measured: the report says where the run broke off.
            harness_error = str(e)
            harness_notes.append(f"run broken off: {e}")
            log(f"error: {e}; writing the report of what ran")
        log("stopping the load; a quiet moment for the last click flush")
        probe.stop()
        for g in gooses:
            rc = g.stop()
            log(f"{g.name} exited {rc}: {g.summary()}")
        time.sleep(3)
        for inst in cl.instances:
            inst.scrape()
        final_clicks = click_sample(cl)
        try:
            final_data = data_check(cl.primary, probe)
        except HarnessError as e:
            final_data = (False, f"could not run: {e}")
        sampler.stop_ev.set()
    finally:
        # Teardown has its own timeouts: the deadline must not cut it short.
        signal.alarm(0)
        sampler.stop_ev.set()
        probe.stop()
        for g in gooses:
            g.stop()
        log("stopping the cluster")
        cl.stop_all()

    reqs = [r for g in gooses for r in g.requests()] + probe.requests()
    text, missed = report(phases, reqs, cl, start_clicks, final_clicks, final_data, timeline, harness_notes,
                          time.time() - t_run, t_run)
    (work / "report.md").write_text(text)
    print(text, flush=True)
    write_docs(text)
    if harness_error:
        return 2
    return 1 if missed else 0


def run_phases(cl: Cluster, runner: "Chaos", phases: list, probe: Probe, harness_notes: list, t_run: float) -> None:
    for ph, (_, _, fn) in zip(phases, PHASES):
        ph.clicks_before = click_sample(cl)
        try:
            getattr(runner, fn)(ph)
        finally:
            if ph.start and not ph.end:
                ph.end = time.time()
        # Recovery: back to the shape the run began with, then a settle.
        t0 = time.time()
        while True:
            ok, why = cl.healthy()
            if ok:
                ph.recovered_in = time.time() - ph.start
                break
            gone = [i for i in cl.instances if not i.running()]
            if gone:
                # The harness restarts what it stops before this point: an instance
                # down here was stopped from outside (twice on this shared box, all
                # three at once by a SIGTERM), and what follows would measure that.
                raise HarnessError(", ".join(f"{i.name} exited ({i.proc.returncode}) without the harness "
                                             f"stopping it" for i in gone) + "; see its log")
            if time.time() - t0 > RECOVERY_MAX_S:
                ph.notes.append(f"not healthy {RECOVERY_MAX_S}s after the fault: {why}")
                harness_notes.append(f"fault {ph.key}: cluster not healthy again: {why}")
                break
            time.sleep(0.5)
        time.sleep(SETTLE_S)
        ph.observe_end = time.time()
        ph.clicks_after = click_sample(cl)
        try:
            ph.data_ok, ph.data_detail = data_check(cl.primary, probe)
        except HarnessError as e:
            ph.data_ok, ph.data_detail = False, f"could not run: {e}"
        log(f"phase {ph.key} done; data check: {'ok' if ph.data_ok else 'FAILED'}: {ph.data_detail}")
        if time.time() - t_run > MAX_S - 120:
            raise HarnessError(f"close to CHAOS_MAX_SECONDS ({MAX_S}s); stopping before the next fault")


def clicks_row(before: dict, after: dict) -> dict:
    d = {k: after.get(k, 0) - before.get(k, 0) for k in ("found", "clicks_dropped", "recorded", "clicks_recorded")}
    d["residual"] = d["found"] - d["clicks_dropped"] - d["recorded"]
    return d


def report(phases, reqs, cl, start_clicks, final_clicks, final_data, timeline, harness_notes, took, t_run):
    rows, checks, details = [], [], []
    for ph in phases:
        if not ph.start:
            rows.append(f"| {ph.key} | {ph.title} | not run | | | | | | | | |")
            checks.append((False, f"fault {ph.key}: ran", "not run: the run broke off before it"))
            continue
        ps = an.phase_stats(reqs, ph.start, ph.end, ph.observe_end or ph.end)
        red_failed = ps.failed_by_kind.get("redirect", 0)
        obs_red = [r for r in ps.failures if r.kind == "redirect"]
        c = clicks_row(ph.clicks_before, ph.clicks_after)
        rows.append(f"| {ph.key} | {ph.title} | {ph.end - ph.start:.0f} | {ps.requests} | {ps.failed} "
                    f"({an.fmt_counts(ps.failed_by_status) if ps.failed else '-'}) | {red_failed} | "
                    f"{an.fmt_ms(ps.max_ms)} | {an.fmt_ms(ps.p99_ms)} | "
                    f"{ps.recovery_s:.1f} | {'ok' if ph.data_ok else 'FAIL'} | "
                    f"{c['found']:.0f} / {c['recorded']:.0f} / {c['clicks_dropped']:.0f} / {c['residual']:+.0f} |")
        name = f"fault {ph.key}" if ph.key != "0" else "baseline"
        checks.append((not obs_red, f"{name}: zero failed redirects",
                       f"{len(obs_red)} failed" if obs_red else ""))
        if ph.key in ("0", "1", "4"):
            checks.append((not ps.failures, f"{name}: zero failed requests of any kind",
                           f"{len(ps.failures)} failed" if ps.failures else ""))
        if ph.key in ("2", "3", "6"):
            bad = an.writes_only_503_while_unavailable(ps.failures, ph.unavailable)
            iv = ", ".join(f"+{a - ph.start:.1f}s..+{b - ph.start:.1f}s" for a, b in ph.unavailable)
            checks.append((not bad, f"{name}: writes fail only with 503 while the primary is unavailable (+2 s)",
                           f"unavailable {iv}; {len(bad)} writes failed otherwise" if bad else f"unavailable {iv}"))
            reads = [r for r in ps.failures if r.kind == "read"]
            if reads:
                details.append(f"fault {ph.key}: {len(reads)} non-redirect reads failed too (no target set for "
                               f"reads in #15; listed below)")
        if ph.key == "5" and ph.killed_at:
            bad = an.failures_not_in_flight(ps.failures, ph.killed_at)
            checks.append((not bad, f"{name}: only requests in flight on the killed instance fail",
                           f"{len(bad)} failures of requests started after the kill" if bad else
                           f"{len(ps.failures)} failed, all in flight at the kill"))
        checks.append((ph.data_ok, f"{name}: data check (acknowledged writes present, none half-applied)",
                       ph.data_detail))
        if ph.notes:
            details.append(f"{name} notes: " + "; ".join(ph.notes))
        if ps.failures:
            details.append(failure_digest(name, ph, ps.failures))
    # The exact click reconciliation, in a quiet moment after the load stopped.
    if final_clicks and start_clicks:
        c = clicks_row(start_clicks, final_clicks)
        killed = [(inst.name, i) for inst in cl.instances for i in inst.incarnations if i["how"] == "SIGKILL"]
        lost_note = ("; SIGKILLed: " + ", ".join(
            f"{n} had served {i['found']:.0f} (scraped {1000 * (i['ended'] - i['scraped']):.0f} ms before the kill)"
            for n, i in killed)) if killed else ""
        # A SIGKILL loses what the instance had queued: at most one flush interval
        # (1 s) of its clicks, and 2 s of them is the bound. Below zero there is
        # only the few ms between the last scrape and the kill (0.1 s of slack).
        hi = lo = 0.0
        for n, i in killed:
            rate = i["found"] / max(1.0, (i["ended"] or 0) - i["started"])
            hi += rate * 2.0
            lo -= rate * 0.1
        ok = lo <= c["residual"] <= hi
        checks.append((ok, "whole run: clicks recorded = redirects served - clicks dropped (quiet start and end, exact)",
                       f"served {c['found']:.0f}, dropped {c['clicks_dropped']:.0f}, recorded {c['recorded']:.0f}, "
                       f"residual {c['residual']:+.0f} (allowed {lo:.0f}..{hi:.0f} for the SIGKILL){lost_note}; "
                       f"the instances' own clicks_recorded_total says {c['clicks_recorded']:.0f} "
                       f"({c['recorded'] - c['clicks_recorded']:+.0f} against PostgreSQL: a flush counted as dropped "
                       f"whose transaction had committed shows as +)"))
    if final_data:
        checks.append((final_data[0], "whole run: data check at the end", final_data[1]))
    for n in harness_notes:
        checks.append((False, "harness: cluster healthy again after each fault", n))
    missed = [n for ok, n, _ in checks if not ok]
    out = [f"## Run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(t_run))}", "",
           f"- command: `make chaos` (CHAOS_PHASE_SECONDS={PHASE_S}, CHAOS_PRESTOP_SECONDS={PRESTOP_S}, "
           f"CHAOS_PROMOTE_AFTER_SECONDS={PROMOTE_AFTER_S}, CHAOS_RESTART_AFTER_SECONDS={RESTART_AFTER_S})",
           f"- machine: {machine()}",
           f"- server: {git_rev()}",
           f"- load: goose `redirect` {REDIRECT_USERS} users at most {REDIRECT_RPS} req/s + goose `mix` "
           f"{MIX_USERS} users at most {MIX_RPS} req/s + writer probe {PROBE_THREADS} x {PROBE_RPS} writes/s, "
           f"all through HAProxy; {SEED_USERS} users / {SEED_URLS} urls seeded",
           f"- run time {took / 60:.1f} min (cluster up to cluster down, build excluded)", "",
           "| # | fault | window s | requests | failed (by status) | failed redirects | max ms | p99 ms | "
           "recovery s | data | clicks served / recorded / dropped / residual |",
           "|---|---|---|---|---|---|---|---|---|---|---|", *rows, "",
           "Targets:", "", *[f"- {'PASS' if ok else 'FAIL'} {n}" + (f": {d}" if d else "") for ok, n, d in checks],
           "", f"RESULT: {'PASS' if not missed else f'FAIL ({len(missed)} targets missed)'}", ""]
    if details:
        out += ["Failures in detail (times from the fault's start; `no answer` = connection error or timeout):",
                "", "```", *details, "```", ""]
    out += ["Timeline:", "", "```"]
    t0 = phases[0].start or t_run
    out += [f"{t - t0:8.1f}s  {kind:<7} {what}" for t, kind, what in sorted(timeline)]
    out += ["```", ""]
    return "\n".join(out), missed


def failure_digest(name: str, ph: Phase, failures: list) -> str:
    groups: dict = {}
    for r in failures:
        key = (r.src, r.name, an.status_label(r), (r.err or "")[:90])
        g = groups.setdefault(key, [0, r.t, r.t])
        g[0] += 1
        g[1], g[2] = min(g[1], r.t), max(g[2], r.end)
    lines = [f"{name} ({ph.title}): {len(failures)} failed"]
    for (src, rname, st, err), (n, a, b) in sorted(groups.items(), key=lambda kv: kv[1][1]):
        lines.append(f"  {n:5d} x {st:<9} {rname:<34} {src:<14} +{a - ph.start:6.1f}s..+{b - ph.start:6.1f}s  {err}")
    return "\n".join(lines)


def git_rev() -> str:
    r = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "server", "migrations"],
                           capture_output=True, text=True).stdout.strip()
    return r.stdout.strip()[:100] + (" (+ uncommitted server changes)" if dirty else "")


BEGIN, END = "<!-- chaos:latest:begin -->", "<!-- chaos:latest:end -->"


def write_docs(text: str) -> None:
    """Replaces the latest-run block of docs/reliability.md; the rest is prose."""
    p = ROOT / "docs" / "reliability.md"
    if not p.exists():
        return
    doc = p.read_text()
    if BEGIN in doc and END in doc:
        a, b = doc.index(BEGIN) + len(BEGIN), doc.index(END)
        p.write_text(doc[:a] + "\n" + text.strip().replace("## Run of", "### Run of") + "\n" + doc[b:])


# === soak ===

SOAK_MIN = env_int("SOAK_MINUTES", 30)
SOAK_RAMP_S = env_int("SOAK_RAMP_SECONDS", 40)
SOAK_SAMPLE_S = env_int("SOAK_SAMPLE_SECONDS", 10)
SOAK_SHARE = env_int("SOAK_PERCENT", 70)


def soak() -> int:
    work = ROOT / ".local" / "soak"
    work.mkdir(parents=True, exist_ok=True)
    t_run = time.time()
    cl = Cluster(work, os.environ["CHAOS_VALKEY_BIN"])
    probe = Probe(1, 2)
    samples: list[dict] = []
    peak = {}
    totals = {"requests": 0}
    errors: dict[str, int] = {}
    try:
        cl.check_ports()
        cl.start_postgres(SEED_USERS, SEED_URLS)
        cl.start_valkey()
        cl.start_instances()
        # The peak: both loads unthrottled for a short ramp; each goose's own rate.
        ramp = [Goose("ramp-redirect", work, ["--scenarios", "redirect", "-u", "48", "-r", "12",
                                              "--discover-limit", str(SEED_URLS)], stream=True),
                Goose("ramp-mix", work, ["--scenarios", "mix", "-u", "6", "-r", "6", "--discover-limit", "5000"],
                      stream=True)]
        for g in ramp:
            g.start()
        wait_for(lambda: all(g.calibrate() or g.offset < float("inf") for g in ramp), 120, "goose to start")
        t_ramp = time.time()
        while time.time() < t_ramp + SOAK_RAMP_S:
            time.sleep(1)
            for g in ramp:
                g.calibrate()
        for g in ramp:
            g.stop()
            g.calibrate()
            rs = g.pending
            # The last half of the ramp, when every user is running.
            lo = t_ramp + SOAK_RAMP_S / 2
            n = sum(1 for r in rs if lo <= r.t < t_ramp + SOAK_RAMP_S)
            peak[g.name] = n / (SOAK_RAMP_S / 2)
        rates = {k: max(1, int(v * SOAK_SHARE / 100)) for k, v in peak.items()}
        log(f"peak {peak}; soaking at {SOAK_SHARE}%: {rates} req/s for {SOAK_MIN} min")
        # As many users as the ramp had, so the throttle, not the users, sets the rate.
        gooses = [Goose("soak-redirect", work, ["--scenarios", "redirect", "-u", "48", "-r", "48",
                                                "--throttle-requests", str(rates["ramp-redirect"]),
                                                "--discover-limit", str(SEED_URLS)], stream=True),
                  Goose("soak-mix", work, ["--scenarios", "mix", "-u", "6", "-r", "6", "--throttle-requests",
                                           str(rates["ramp-mix"]), "--discover-limit", "5000"], stream=True)]
        for g in gooses:
            g.start()
        wait_for(lambda: all(g.calibrate() or g.offset < float("inf") for g in gooses), 120, "goose to start")
        probe.start()
        before = {i.name: dict(i.totals()) for i in cl.instances if i.scrape()}
        for g in gooses:
            g.calibrate()
            g.pending.clear()  # start-up and discovery: not the soak
        t0 = time.time()
        end = t0 + SOAK_MIN * 60
        while time.time() < end:
            time.sleep(max(0.0, t0 + (len(samples) + 1) * SOAK_SAMPLE_S - time.time()))
            s = {"t": time.time() - t0}
            # Latency per interval: the requests logged since the last sample.
            durs = []
            for g in gooses:
                g.calibrate()
                for r in g.pending:
                    totals["requests"] += 1
                    durs.append(r.dur * 1000)
                    if not r.ok:
                        lab = f"{r.name} {an.status_label(r)}"
                        errors[lab] = errors.get(lab, 0) + 1
                g.pending.clear()
            s["req/s"] = len(durs) / SOAK_SAMPLE_S
            s["p99_ms"] = an.nearest_rank(durs, 99) if durs else float("nan")
            for inst in cl.instances:
                if not inst.running():
                    # Nothing in a soak stops an instance: this came from outside
                    # (a crash, the OOM killer, someone's pkill); its log says which.
                    raise HarnessError(f"{inst.name} exited ({inst.proc.returncode}) during the soak without "
                                       f"being stopped; see {inst.logs}/server-{inst.name}-1.log")
                inst.scrape()
                s[f"rss_mb {inst.name}"] = inst.rss_kb() / 1024
                s[f"fds {inst.name}"] = inst.fds()
            s["pg connections"] = int(cl.primary.psql(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = 'shortener'").strip())
            mport = cl.valkey_master_port()
            s["valkey used_memory_mb"] = int(info(mport, "memory")["used_memory"]) / 1048576
            samples.append(s)
            log(" ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in s.items()))
        probe.stop()
        for g in gooses:
            g.stop()
        after = {i.name: dict(i.totals()) for i in cl.instances if i.scrape()}
    finally:
        signal.alarm(0)
        probe.stop()
        for g in locals().get("gooses", []) + locals().get("ramp", []):
            g.stop()
        cl.stop_all()
    for r in probe.requests():
        totals["requests"] += 1
        if not r.ok:
            lab = f"{r.name} {an.status_label(r)}"
            errors[lab] = errors.get(lab, 0) + 1
    text, failed = soak_report(samples, totals["requests"], errors, peak, rates, before, after, t_run)
    (work / "report.md").write_text(text)
    print(text, flush=True)
    return 1 if failed else 0


# What "flat" means, per series: (relative growth allowed over 24 h, absolute floor
# per hour). A leak that doubles RSS or Valkey memory within days is what a soak
# is for; fds and connections are counts, where any steady growth is a leak
# (1 an hour of tolerance absorbs one connection opened late in a short run).
TOLERANCE = {"rss_mb": (0.25, 2.0), "fds": (0.0, 1.0), "pg connections": (0.0, 1.0),
             "valkey used_memory_mb": (0.25, 1.0), "p99_ms": (0.5, 5.0)}


def soak_report(samples, n_requests, errors, peak, rates, before, after, t_run):
    # The first fifth is warm-up: pools open, caches and the near cache fill.
    warm = max(1, len(samples) // 5)
    used = samples[warm:]
    lines, failed = [], []
    keys = [k for k in samples[0] if k not in ("t", "req/s")] if samples else []
    for k in keys:
        pts = [(s["t"], s[k]) for s in used if s[k] == s[k]]
        base = k.split(" s")[0] if k.startswith(("rss_mb", "fds")) else k
        rel, floor = TOLERANCE[base]
        ok, slope, se, bound = an.flat(pts, rel, floor)
        mean = sum(v for _, v in pts) / len(pts) if pts else 0
        lines.append(f"| {k} | {samples[0][k]:.1f} | {samples[-1][k]:.1f} | {mean:.1f} | {slope:+.2f} ± {se:.2f} | "
                     f"{bound:.2f} | {'PASS' if ok else 'FAIL'} |")
        if not ok:
            failed.append(f"{k} not flat")
    n_errors = sum(errors.values())
    drops = {k: sum(after[n][k] - before.get(n, {}).get(k, 0) for n in after) for k in ("clicks_dropped", "events_dropped")}
    if n_errors:
        failed.append(f"{n_errors} errors")
    if any(drops.values()):
        failed.append(f"drops {drops}")
    out = [f"## Soak of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(t_run))}", "",
           f"- command: `SOAK_MINUTES={SOAK_MIN} make soak`; machine: {machine()}; server: {git_rev()}",
           f"- peak (unthrottled ramp, last half of {SOAK_RAMP_S}s): " +
           ", ".join(f"{k} {v:.0f} req/s" for k, v in peak.items()) +
           f"; soak at {SOAK_SHARE}%: " + ", ".join(f"{k} {v} req/s" for k, v in rates.items()) +
           " + writer probe 2 writes/s",
           f"- {n_requests} requests ({sum(x['req/s'] for x in samples) / max(1, len(samples)):.0f} req/s of goose "
           f"on average), {n_errors} errors" + (f" ({an.fmt_counts(errors)})" if n_errors else "") +
           f"; clicks dropped {drops['clicks_dropped']:.0f}, events dropped {drops['events_dropped']:.0f}",
           f"- {len(samples)} samples every {SOAK_SAMPLE_S}s; slopes by least squares over the last "
           f"{len(used)} (the first {warm} are warm-up), per hour, ± one standard error", "",
           "| series | first | last | mean | slope /h | bound /h | flat |", "|---|---|---|---|---|---|---|",
           *lines, "", f"RESULT: {'PASS' if not failed else 'FAIL: ' + '; '.join(failed)}", ""]
    return "\n".join(out), failed


def main() -> int:
    mode = sys.argv[1] if len(sys.argv) > 1 else "chaos"

    def term(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, term)

    def deadline(_signum, _frame):
        raise HarnessError("the overall deadline passed (CHAOS_MAX_SECONDS, or SOAK_MINUTES + 10 min)")
    signal.signal(signal.SIGALRM, deadline)
    # The whole run is bounded whatever hangs: build excluded, teardown included.
    signal.alarm(MAX_S if mode == "chaos" else SOAK_MIN * 60 + 600)
    try:
        return chaos() if mode == "chaos" else soak()
    except (HarnessError, OSError) as e:
        log(f"error: {e}")
        return 2
    except KeyboardInterrupt:
        log("interrupted; everything started has been stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
