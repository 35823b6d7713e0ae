#!/usr/bin/env python3
"""`make alert-check`: proves the alert chain end to end, and prints its timeline.

    run.py local   [--factor N] ...   everything on 127.0.0.1 (scripts/alert-check.sh
                                      has started PostgreSQL/Valkey, migrated and seeded)
    run.py cluster --prometheus URL --alertmanager URL --host URL ...
                                      goose against a cluster; watch its Prometheus and
                                      Alertmanager; faults are the operator's to inject

Local mode starts, and always stops again: webhook_sink, faultproxy (between the
server and PostgreSQL), the release server, Alertmanager and Prometheus with
configs derived from monitoring/ (scale.py), then drives goose through four
phases (healthy, latency, errors, recovery) while watch.py records the chain.
The timeline and every check go to stdout and .local/alert-check/timeline.txt;
the exit status is 1 when a check failed, naming it, 2 when the harness itself
could not run.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scale  # noqa: E402
import watch  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / ".local" / "alert-check"
# ALERT_CHECK_BIN_DIR: another build of the four binaries (for work on the harness).
BIN = Path(os.environ.get("ALERT_CHECK_BIN_DIR", ROOT / "target" / "release"))

# Observation slack on top of each rule's own timing: Prometheus is polled once a
# second, and a notification crosses two HTTP hops before the sink stamps it.
SLACK_S = 2.0
# The longest `for:` and the longest range window in monitoring/ (5 m each): a phase
# that must stay quiet lasts longer than both together, and a phase waiting for an
# alert gives up after both plus a margin (real seconds, divided by the factor).
QUIET_REAL_S = 900
DEADLINE_REAL_S = 900
# What a slow or busy machine adds to every deadline, unscaled.
DEADLINE_FIXED_S = 90

# Loaded in the phases; overridable from the environment.
MIX_USERS = int(os.environ.get("ALERT_CHECK_MIX_USERS", "40"))
MIX_RPS = int(os.environ.get("ALERT_CHECK_MIX_RPS", "300"))
COLD_USERS = int(os.environ.get("ALERT_CHECK_COLD_USERS", "8"))
COLD_RPS = int(os.environ.get("ALERT_CHECK_COLD_RPS", "100"))
DELAY_MS = int(os.environ.get("ALERT_CHECK_DELAY_MS", "2500"))

WARNING_PATH, CRITICAL_PATH = "/warning", "/critical"


class HarnessError(Exception):
    """The harness could not run (exit 2), as opposed to a failed check (exit 1)."""


def log(msg: str) -> None:
    print(f"alert-check: {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return 200 <= r.status < 300
    except (urllib.error.URLError, OSError):
        return False


def wait_for(pred, within_s: float, what: str, every: float = 0.25):
    deadline = time.time() + within_s
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise HarnessError(f"timed out after {within_s:.0f}s waiting for {what}")


# === processes ===

class Stack:
    """Every process this run started, stopped in reverse order whatever happens."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], env: dict | None = None) -> tuple[subprocess.Popen, Path]:
        logf = self.logs / f"{name}.log"
        out = logf.open("w")
        # Own session: a Ctrl-C at the terminal reaches us, and we stop the
        # children in order instead of all at once.
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env={**os.environ, **(env or {})}, cwd=ROOT, start_new_session=True)
        out.close()
        self.procs.append((name, p))
        log(f"started {name} (pid {p.pid}), log {logf.relative_to(ROOT)}")
        return p, logf

    def stop(self, name: str, sig=signal.SIGTERM, within_s: float = 15) -> int | None:
        for n, p in self.procs:
            if n == name:
                return self._stop(n, p, sig, within_s)
        return None

    def _stop(self, name, p: subprocess.Popen, sig, within_s) -> int | None:
        if p.poll() is None:
            try:
                p.send_signal(sig)
                p.wait(timeout=within_s)
            except subprocess.TimeoutExpired:
                log(f"{name} (pid {p.pid}) did not stop within {within_s:.0f}s: killing it")
                p.kill()
                p.wait(timeout=5)
            except ProcessLookupError:
                pass
        return p.returncode

    def stop_all(self) -> None:
        for name, p in reversed(self.procs):
            self._stop(name, p, signal.SIGTERM, 15)


def first_line(logf: Path, pattern: str, p: subprocess.Popen, within_s: float = 20) -> re.Match:
    """Waits for a line of the process' output matching `pattern`."""
    rx = re.compile(pattern)

    def look():
        if p.poll() is not None:
            raise HarnessError(f"{logf.stem} exited ({p.returncode}): {logf.read_text()[-800:]}")
        for line in logf.read_text().splitlines():
            m = rx.search(line)
            if m:
                return m
        return None
    return wait_for(look, within_s, f"{logf.stem} to print its address")


# === derived configuration ===

def check_cmd(argv: list[str], what: str) -> str:
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise HarnessError(f"{what} failed:\n{r.stdout}{r.stderr}")
    return r.stdout


def derive(factor: float, sink: str, work: Path, changes: scale.Scaled) -> dict:
    """Scaled rules, Alertmanager and Prometheus configs in `work`, all checked."""
    rules_src = ROOT / "monitoring" / "rules"
    srcs = sorted(str(p) for p in rules_src.glob("*.yml"))
    # The real files first: a broken rule must be reported as such, not as ours.
    check_cmd(["promtool", "check", "rules", *srcs], "promtool check rules on monitoring/rules (the real files)")
    rules_out = work / "rules"
    scaled = scale.scale_rule_files(rules_src, rules_out, factor, changes)
    check_cmd(["promtool", "check", "rules", *map(str, scaled)], "promtool check rules on the scaled copies")

    am_src = (ROOT / "monitoring" / "alertmanager.yml").read_text()
    files = scale.webhook_files(am_src)
    # Receivers are told apart by the path the sink records: the default
    # receiver takes warnings, discord-critical the critical ones.
    urls = {f: f"{sink}{CRITICAL_PATH if 'critical' in f else WARNING_PATH}" for f in files}
    secrets = work / "secrets"
    secrets.mkdir(exist_ok=True)
    am_cfg = work / "alertmanager.yml"
    am_cfg.write_text(scale.alertmanager_config(am_src, factor, urls, secrets, scale.Scaled(factor)))
    r = subprocess.run(["amtool", "check-config", str(am_cfg)], capture_output=True, text=True)
    url_mode = "webhook_url_file (files in .local/alert-check/secrets/)"
    if r.returncode != 0 and "webhook_url_file" in r.stdout + r.stderr:
        # Alertmanager 0.25 (Debian 12) has discord_configs but not its
        # webhook_url_file (0.26+): same receivers, the URL inline.
        am_cfg.write_text(scale.alertmanager_config(am_src, factor, urls, None, scale.Scaled(factor)))
        url_mode = "webhook_url inline (this Alertmanager's discord_configs lacks webhook_url_file)"
    check_cmd(["amtool", "check-config", str(am_cfg)], "amtool check-config on the generated alertmanager.yml")
    # Log the Alertmanager timings once, from the final file.
    scale.alertmanager_config(am_src, factor, urls, None, changes)
    timings = scale.am_timings(am_cfg.read_text())
    scrape_ms, eval_ms = scale.base_intervals((ROOT / "monitoring" / "prometheus.yml").read_text())
    return {"rules": rules_out, "am_cfg": am_cfg, "timings": timings, "url_mode": url_mode,
            "urls": urls, "base_scrape_ms": scrape_ms, "base_eval_ms": eval_ms}


def metric_names(query: str) -> set[str]:
    """The series names a PromQL expression reads (recorded names included)."""
    q = re.sub(r'"(?:[^"\\]|\\.)*"', "", query)
    q = re.sub(r"\{[^}]*\}", "", q)
    q = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", q)
    q = re.sub(r"\[[^\]]*\]", "", q)
    words = {m.group(1) for m in re.finditer(r"(?<![\w:.])([a-zA-Z_:][\w:]*)", q)
             if not q[m.end():].lstrip().startswith("(")}
    return words - {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "inf", "nan"}


def unfireable(prom: str, rules: dict) -> dict[str, list[str]]:
    """Alerting rules reading a series that does not exist here at all."""
    out = {}
    for name, r in rules.items():
        missing = []
        for m in sorted(metric_names(r.query)):
            q = urllib.parse.urlencode({"query": f"count({{__name__=\"{m}\"}})"})
            if not watch.http_json(f"{prom}/api/v1/query?{q}")["data"]["result"]:
                missing.append(m)
        if missing:
            out[name] = missing
    return out


# === the server and goose ===

def server_count(base: str, route: str) -> int:
    """Requests the server has answered on `route` (any status), from its /metrics."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=3) as r:
        text = r.read().decode()
    n = 0
    for line in text.splitlines():
        if line.startswith("http_server_request_duration_seconds_count{") and f'http_route="{route}"' in line:
            n += int(float(line.rsplit(" ", 1)[1]))
    return n


def goose_summary(logf: Path) -> str:
    lines = [l for l in logf.read_text().splitlines() if l.startswith("loadtest: ") and "requests in" in l]
    return lines[-1][len("loadtest: "):] if lines else "(no summary line)"


def set_mode(control: str, mode: str) -> None:
    req = urllib.request.Request(f"{control}/mode", data=mode.encode(), method="PUT")
    with urllib.request.urlopen(req, timeout=5) as r:
        if r.status >= 300:
            raise HarnessError(f"faultproxy refused mode {mode!r}: {r.status}")


def am_notifications(am: str) -> tuple[float, float]:
    """(sent, failed) notification attempts over all integrations, from Alertmanager's /metrics."""
    with urllib.request.urlopen(f"{am}/metrics", timeout=3) as r:
        text = r.read().decode()
    sent = failed = 0.0
    for line in text.splitlines():
        if line.startswith("alertmanager_notifications_total{"):
            sent += float(line.rsplit(" ", 1)[1])
        elif line.startswith("alertmanager_notifications_failed_total{"):
            failed += float(line.rsplit(" ", 1)[1])
    return sent, failed


def check_notifications(c: "Checks", before: tuple[float, float], after: tuple[float, float]) -> None:
    sent, failed = after[0] - before[0], after[1] - before[1]
    c.add(failed == 0, "Alertmanager's notifications all succeeded",
          f"{sent:g} sent, {failed:g} failed (alertmanager_notifications_total / _failed_total)")


# === checks ===

class Checks:
    def __init__(self):
        self.items: list[tuple[bool, str, str]] = []

    def add(self, ok: bool, name: str, detail: str = "") -> bool:
        self.items.append((ok, name, detail))
        return ok

    def lines(self) -> list[str]:
        return [f"  {'PASS' if ok else 'FAIL'}  {name}" + (f": {detail}" if detail else "") for ok, name, detail in self.items]

    @property
    def failed(self) -> list[str]:
        return [name for ok, name, _ in self.items if not ok]


def check_fires(c: Checks, w: watch.Watcher, rules: dict, name: str, fault_t: float, fault: str,
                path: str | None, wrong_path: str | None, eval_s: float, gw_s: float):
    """Fired after its fault and its `for:`; delivered to `path` within group_wait + one evaluation."""
    r = rules[name]
    ep = w.episode_firing_after(name, fault_t)
    if not c.add(ep is not None, f"{name} fires during {fault}"):
        return None
    c.add(ep.active_at >= fault_t - eval_s,
          f"{name} pending only after {fault} began",
          f"activeAt {ep.active_at - fault_t:+.1f}s from the fault")
    c.add(ep.firing_seen >= ep.active_at + r.for_s,
          f"{name} firing no earlier than for: {r.for_s:g}s after its condition held",
          f"firing seen {ep.firing_seen - ep.active_at:.1f}s after activeAt")
    c.add(ep.firing_seen >= fault_t + r.for_s,
          f"{name} firing no earlier than for: {r.for_s:g}s after {fault} began",
          f"firing seen {ep.firing_seen - fault_t:.1f}s after the fault")
    if path is None:
        return ep
    ds = w.delivered(name, "FIRING", path, after=fault_t)
    if c.add(bool(ds), f"{name} delivered FIRING to {path}"):
        d = ds[0]
        bound = gw_s + eval_s + SLACK_S
        c.add(d.t - ep.firing_seen <= bound,
              f"{name} delivered within group_wait {gw_s:g}s + evaluation {eval_s:g}s + slack {SLACK_S:g}s of firing",
              f"{d.t - ep.firing_seen:+.1f}s after firing was seen")
        c.add(d.t >= ep.active_at + r.for_s, f"{name} not delivered before its for: had passed",
              f"delivered {d.t - ep.active_at:.1f}s after activeAt")
    if wrong_path:
        wrong = w.delivered(name, "FIRING", wrong_path) + w.delivered(name, "RESOLVED", wrong_path)
        c.add(not wrong, f"{name} never delivered to {wrong_path}", f"{len(wrong)} deliveries there" if wrong else "")
    return ep


def check_all(w: watch.Watcher, rules: dict, marks: dict, eval_s: float, timings: dict,
              cannot: dict) -> Checks:
    c = Checks()
    gw_s, gi_s = timings["group_wait"] / 1000, timings["group_interval"] / 1000
    quiet_end = marks["delay"]
    fired = w.fired_between(0, quiet_end)
    c.add(not fired, "phase 1 (healthy): no alert fired", ", ".join(sorted(fired)) or
          "pending seen: " + (", ".join(sorted({n for t, s in w.prom_seen if t < quiet_end for n in s})) or "none"))
    early = [d for d in w.deliveries if d.t < quiet_end]
    c.add(not early, "phase 1 (healthy): nothing reached the sink",
          ", ".join(f"{d.alert} {d.status} {d.path}" for d in early))
    p2 = w.fired_between(marks["delay"], marks["refuse"]) - {"HighLatency"}
    c.add(not p2, "phase 2 (latency): only HighLatency fired", ", ".join(sorted(p2)))
    allowed = {"HighLatency", "HighErrorRate", "HighErrorRateCritical"}
    p3 = w.fired_between(marks["refuse"], marks["end"]) - allowed
    c.add(not p3, "phases 3 and recovery: only HighLatency and the error-rate alerts fired", ", ".join(sorted(p3)))

    check_fires(c, w, rules, "HighLatency", marks["delay"], f"delay {DELAY_MS} ms", WARNING_PATH, CRITICAL_PATH,
                eval_s, gw_s)
    crit = check_fires(c, w, rules, "HighErrorRateCritical", marks["refuse"], "refuse", CRITICAL_PATH, WARNING_PATH,
                       eval_s, gw_s)
    warn = check_fires(c, w, rules, "HighErrorRate", marks["refuse"], "refuse", None, CRITICAL_PATH, eval_s, gw_s)

    # Inhibition (monitoring/alertmanager.yml): severity=critical with a family
    # silences severity=warning of the same family and job.
    if warn is not None and crit is not None:
        suppressed = [t for t, st in w.am_seen if st.get("HighErrorRate") == "suppressed (inhibited)"]
        c.add(bool(suppressed), "Alertmanager marks HighErrorRate inhibited while HighErrorRateCritical fires",
              f"seen inhibited in {len(suppressed)} polls" if suppressed else "never seen inhibited")
        last_crit_firing = max((t for t, st in w.prom_seen if st.get("HighErrorRateCritical") == "firing"), default=0)
        during = [d for d in w.delivered("HighErrorRate", "FIRING", WARNING_PATH, after=marks["refuse"])
                  if d.t <= last_crit_firing]
        c.add(not during, "HighErrorRate not delivered while HighErrorRateCritical fires",
              f"{len(during)} deliveries" if during else "")
        after = w.delivered("HighErrorRate", "FIRING", WARNING_PATH, after=last_crit_firing)
        if after:
            c.add(True, "HighErrorRate delivered once the critical twin had resolved (inhibition lifted, as configured)",
                  f"{after[0].t - last_crit_firing:+.1f}s after the critical was last seen firing")

    # Recovery: everything that fired resolves, and each firing delivery gets
    # its resolved one (send_resolved: true) at the group's next flush.
    still = {n for n, s in w.prom_state.items() if s != "inactive"}
    c.add(not still, "recovery: every alert resolved in Prometheus", ", ".join(sorted(still)))
    for (alert, path) in sorted({(d.alert, d.path) for d in w.deliveries if d.status == "FIRING"}):
        first_fire = min(d.t for d in w.delivered(alert, "FIRING", path))
        res = w.delivered(alert, "RESOLVED", path, after=first_fire)
        if not c.add(bool(res), f"{alert}: RESOLVED delivered to {path}"):
            continue
        eps = [e for e in w.episodes.get(alert, []) if e.ended_seen and e.firing_seen]
        if eps:
            ended = eps[-1].ended_seen
            bound = gi_s + eval_s + SLACK_S
            c.add(res[0].t - ended <= bound,
                  f"{alert}: resolved delivered within group_interval {gi_s:g}s + evaluation {eval_s:g}s + slack {SLACK_S:g}s",
                  f"{res[0].t - ended:+.1f}s after Prometheus resolved it")
    for name, missing in sorted(cannot.items()):
        c.add(True, f"{name} cannot fire here (not checked)", f"no series for {', '.join(missing)}")
    return c


# === local mode ===

def local(args) -> int:
    factor = 1.0 if args.real_durations else float(args.factor)
    if factor < 1:
        raise HarnessError("--factor must be at least 1")
    work = WORK
    for sub in ("rules", "secrets", "prometheus-data", "alertmanager-data", "logs"):
        shutil.rmtree(work / sub, ignore_errors=True)
        (work / sub).mkdir(parents=True)
    for f in ("sink.jsonl", "timeline.txt"):
        (work / f).unlink(missing_ok=True)
    for tool in ("promtool", "amtool", "prometheus", "prometheus-alertmanager"):
        if not shutil.which(tool):
            raise HarnessError(f"{tool} not found: scripts/alert-check.sh installs Debian's prometheus and prometheus-alertmanager")
    for b in ("url-shortener", "loadtest", "webhook_sink", "faultproxy"):
        if not (BIN / b).exists():
            raise HarnessError(f"{BIN / b} missing: cargo build --release -p url-shortener -p loadtest")

    t0 = time.time()
    stack = Stack(work / "logs")
    w = None
    try:
        # The sink first: the Alertmanager config needs its address.
        p, lf = stack.start("webhook_sink", [str(BIN / "webhook_sink"), "--listen", "127.0.0.1:0",
                                             "--out", str(work / "sink.jsonl")])
        sink = "http://" + first_line(lf, r"listening on (\S+),", p).group(1)
        changes = scale.Scaled(factor)
        d = derive(factor, sink, work, changes)

        p, lf = stack.start("faultproxy", [str(BIN / "faultproxy"), "--listen", "127.0.0.1:0",
                                           "--upstream", args.db_upstream, "--control", "127.0.0.1:0"])
        m = first_line(lf, r"listening on (\S+), forwarding to \S+, control on (\S+),", p)
        proxy_addr, control = m.group(1), "http://" + m.group(2)

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server_env = {
            "DATABASE_URL": f"postgres://postgres@{proxy_addr}/{args.db_name}",
            "REDIS_URL": args.redis_url,
            "HOST": "127.0.0.1", "PORT": str(port),
            # A dead database must be a fast 503, not a queue.
            "DATABASE_POOL_TIMEOUT_MS": "300",
            # A connection opened through the delaying proxy takes a few delayed
            # round trips: let it be slow (a latency fault) rather than fail (an
            # error fault). A refused connect fails at once whatever this says.
            "DATABASE_CONNECT_TIMEOUT_MS": "30000",
            # /ready must not flap while the database is away: this check is
            # about the alerts, not about Kubernetes taking the pod out.
            "READY_DB_GRACE_SECONDS": "86400",
            # `cold` reads must reach PostgreSQL (and so the fault).
            "CACHE_ENABLED": "false", "NEAR_CACHE_CAPACITY": "0",
            "ACCESS_LOG": "false",
            # Stopping it at the end should not wait out the production drain.
            "SHUTDOWN_TIMEOUT_SECONDS": "5",
        }
        p, lf = stack.start("server", [str(BIN / "url-shortener"), "serve"], server_env)
        def server_ready(p=p, lf=lf):
            if p.poll() is not None:
                raise HarnessError(f"server exited ({p.returncode}): {lf.read_text()[-800:]}")
            return http_ok(f"{base}/ready")
        wait_for(server_ready, 60, "the server's /ready")

        am_port = free_port()
        am = f"http://127.0.0.1:{am_port}"
        stack.start("alertmanager", ["prometheus-alertmanager", f"--config.file={d['am_cfg']}",
                                     f"--storage.path={work / 'alertmanager-data'}",
                                     f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=",
                                     "--log.level=info"])
        wait_for(lambda: http_ok(f"{am}/-/ready"), 30, "Alertmanager /-/ready")

        prom_port = free_port()
        prom = f"http://127.0.0.1:{prom_port}"
        base_iv = max(d["base_scrape_ms"], d["base_eval_ms"])
        prom_cfg = work / "prometheus.yml"

        def write_prom_cfg(rules_glob):
            cfg, iv = scale.prometheus_config(factor=factor, target=f"127.0.0.1:{port}", rules_glob=rules_glob,
                                              alertmanager=f"127.0.0.1:{am_port}", base_interval_ms=base_iv)
            prom_cfg.write_text(cfg)
            check_cmd(["promtool", "check", "config", str(prom_cfg)], "promtool check config")
            return iv
        # Rules only once the server has been scraped: Prometheus hands a new
        # target to its scraper up to 5 s after start (the discovery manager's
        # update tick), and until then absent(up) holds, longer than
        # ServiceDown's scaled for: (1m / 15 = 4 s). Unscaled it would not matter.
        interval_ms = write_prom_cfg(None)
        resend = scale.format_ms(scale.scale_ms(60_000, factor, 1000))
        prom_p, _ = stack.start("prometheus", ["prometheus", f"--config.file={prom_cfg}",
                                               f"--storage.tsdb.path={work / 'prometheus-data'}",
                                               f"--web.listen-address=127.0.0.1:{prom_port}",
                                               f"--rules.alert.resend-delay={resend}", "--log.level=warn"])
        wait_for(lambda: http_ok(f"{prom}/-/ready"), 60, "Prometheus /-/ready")
        wait_for(lambda: watch.http_json(f"{prom}/api/v1/query?query=up")["data"]["result"], 30,
                 "Prometheus' first scrape of the server")
        write_prom_cfg(str(d["rules"] / "*.yml"))
        prom_p.send_signal(signal.SIGHUP)
        wait_for(lambda: watch.load_rules(prom)[0], 30, "Prometheus to load the scaled rules")
        rules, eval_s = watch.load_rules(prom)
        # The loaded rules are the scaled ones: every for: is the real one / factor.
        want = sorted(scale.parse_ms(c.after) for c in changes.changes if c.what == "for")
        got = sorted(round(r.for_s * 1000) for r in rules.values() if r.for_s > 0)
        if want != got:
            raise HarnessError(f"Prometheus loaded for: durations {got} ms, expected the scaled {want} ms")

        w = watch.Watcher(prom, am, rules, work / "sink.jsonl", period=1.0,
                          echo=lambda e: log(f"{e.kind:<4} {e.name:<22} {e.detail}") if e.kind != "cond" else None)
        marks = {"start": t0}
        header = describe(factor, changes, d, interval_ms, resend, sink, proxy_addr, base, prom, am)
        for line in header:
            log(line)
        w.start()
        notes_before = am_notifications(am)

        loadtest = str(BIN / "loadtest")
        # Phase 1: healthy traffic for longer than any for: plus any window.
        quiet_s = max(QUIET_REAL_S / factor, 30)
        deadline = DEADLINE_REAL_S / factor + DEADLINE_FIXED_S
        marks["healthy"] = w.mark("phase 1 healthy", f"goose mix, {MIX_USERS} users, at most {MIX_RPS} req/s, {quiet_s:.0f}s")
        p, mix_log = stack.start("goose-mix", [loadtest, "-H", base, "--scenarios", "mix", "-u", str(MIX_USERS),
                                               "-r", str(max(1, MIX_USERS // 2)), "-t", f"{int(quiet_s)}s",
                                               "--throttle-requests", str(MIX_RPS), "--quiet"])
        wait_for(lambda: p.poll() is not None, quiet_s + 120, "goose mix to finish")
        mix_rc = p.returncode
        w.mark("phase 1 over", f"goose mix exited {mix_rc}: {goose_summary(mix_log)}")
        if mix_rc not in (0, 1):
            raise HarnessError(f"goose mix failed ({mix_rc}); see {mix_log}")
        cannot = unfireable(prom, rules)

        # Phase 2: cold reads, then the database slows down.
        before = server_count(base, "/users/{id}")
        p, cold_log = stack.start("goose-cold", [loadtest, "-H", base, "--scenarios", "cold", "-u", str(COLD_USERS),
                                                 "-r", str(COLD_USERS), "-t", f"{int(4 * deadline)}s",
                                                 "--throttle-requests", str(COLD_RPS)])
        wait_for(lambda: p.poll() is None and server_count(base, "/users/{id}") >= before + 20, 120,
                 "goose cold to send requests")
        set_mode(control, f"delay {DELAY_MS}")
        marks["delay"] = w.mark("phase 2 latency", f"fault: faultproxy delay {DELAY_MS} ms (goose cold, {COLD_USERS} users)")
        wait_for(lambda: w.delivered("HighLatency", "FIRING", after=marks["delay"]), deadline,
                 "HighLatency to be delivered", every=0.5)

        # Phase 3: the database refuses connections.
        set_mode(control, "refuse")
        marks["refuse"] = w.mark("phase 3 errors", "fault: faultproxy refuse")
        wait_for(lambda: w.delivered("HighErrorRateCritical", "FIRING", after=marks["refuse"]) and
                 w.episode_firing_after("HighErrorRate", marks["refuse"]), deadline,
                 "HighErrorRateCritical delivered and HighErrorRate firing", every=0.5)
        # Give an un-inhibited warning time to be delivered, so its absence means something.
        fired = w.episode_firing_after("HighErrorRate", marks["refuse"]).firing_seen
        hold = d["timings"]["group_wait"] / 1000 + eval_s + SLACK_S
        wait_for(lambda: time.time() >= fired + hold, hold + 5, "the inhibition window")

        # Recovery.
        set_mode(control, "pass")
        marks["pass"] = w.mark("recovery", "faultproxy pass")

        def recovered():
            if any(s != "inactive" for s in w.prom_state.values()):
                return False
            fired_paths = {(x.alert, x.path) for x in w.deliveries if x.status == "FIRING"}
            return all(w.delivered(a, "RESOLVED", pth, after=min(x.t for x in w.delivered(a, "FIRING", pth)))
                       for a, pth in fired_paths)
        try:
            wait_for(recovered, deadline + d["timings"]["group_interval"] / 1000, "every alert to resolve", every=0.5)
        except HarnessError as e:
            w.mark("recovery incomplete", str(e))
        cold_rc = stack.stop("goose-cold", signal.SIGINT, 30)
        marks["end"] = w.mark("goose cold stopped", f"exit {cold_rc}: {goose_summary(cold_log)}")
        time.sleep(1.5)  # one last poll of everything
        w.stop()
        w.join(timeout=10)

        checks = check_all(w, rules, marks, eval_s, d["timings"], cannot)
        check_notifications(checks, notes_before, am_notifications(am))
        receivers = {WARNING_PATH: "discord-default, warning", CRITICAL_PATH: "discord-critical"}
        out = header + ["", "timeline (expr = the rule's expression queried each second; "
                        "prom = Prometheus alert state; am = Alertmanager; sink = delivered):"]
        out += ["  " + l for l in watch.render(w, t0, receivers)]
        out += ["", "checks:"] + checks.lines()
        out += ["", f"run time {time.time() - t0:.0f}s (from the first component started; the build and "
                     "database seeding come before)"]
        out += ["", "RESULT: " + ("PASS" if not checks.failed else f"FAIL ({len(checks.failed)}): " + "; ".join(checks.failed))]
        text = "\n".join(out) + "\n"
        (work / "timeline.txt").write_text(text)
        print(text, flush=True)
        return 1 if checks.failed else 0
    finally:
        if w is not None:
            w.stop()
        stack.stop_all()
        # Leave the proxy and the database as we found them: nothing to undo,
        # the proxy is gone with its process.


def describe(factor, changes, d, interval_ms, resend, sink, proxy, base, prom, am) -> list[str]:
    t = d["timings"]
    lines = [f"alert-check: every duration divided by {factor:g}",
             f"  rules: " + ", ".join(sorted({f'{c.what} {c.before}->{c.after}' for c in changes.changes
                                                 if c.file != 'alertmanager.yml'})),
             f"  prometheus: scrape and evaluation interval {scale.format_ms(d['base_eval_ms'])}->{scale.format_ms(interval_ms)}, "
             f"alert resend delay 1m->{resend}",
             f"  alertmanager: group_wait {scale.format_ms(t['group_wait'])}, group_interval {scale.format_ms(t['group_interval'])}, "
             f"repeat_interval {scale.format_ms(t['repeat_interval'])}; Discord URLs via {d['url_mode']}",
             f"  receivers: discord-default -> {sink}{WARNING_PATH}, discord-critical -> {sink}{CRITICAL_PATH}",
             f"  server {base} (database through faultproxy {proxy}), prometheus {prom}, alertmanager {am}",
             f"  slack on delivery bounds: {SLACK_S:g}s (1 s polling of Prometheus, two HTTP hops)"]
    return lines


# === cluster mode ===

def cluster(args) -> int:
    prom, am = args.prometheus.rstrip("/"), args.alertmanager.rstrip("/")
    rules, eval_s = watch.load_rules(prom)
    status = watch.http_json(f"{am}/api/v2/status")
    timings = scale.am_timings(status.get("config", {}).get("original", ""))
    expect = [n for n in args.expect.split(",") if n]
    unknown = [n for n in expect if n not in rules]
    if unknown:
        raise HarnessError(f"{prom} has no alerting rule named {', '.join(unknown)}")
    t0 = time.time()
    w = watch.Watcher(prom, am, rules, None, period=1.0,
                      echo=lambda e: print(f"{watch.fmt_t(e.t, t0)}  {e.kind:<4} {e.name:<22} {e.detail}", flush=True))
    logs = WORK / "cluster-logs"
    logs.mkdir(parents=True, exist_ok=True)
    stack = Stack(logs)
    duration = scale.parse_ms(args.duration) / 1000
    goose_args = args.goose or ["--scenarios", "cold", "-u", "20", "-r", "5"]
    notes_before = am_notifications(am)
    try:
        w.start()
        w.mark("watching", f"{prom} and {am}; evaluation {eval_s:g}s, group_wait {timings['group_wait'] / 1000:g}s; "
                           f"inject the faults now (docs: loadtest/README.md)")
        p = None
        if args.host:
            p, lf = stack.start("goose-cluster", [str(BIN / "loadtest"), "-H", args.host, *goose_args,
                                                  "-t", f"{int(duration)}s"])
        end = t0 + duration

        def done():
            if time.time() >= end or (p is not None and p.poll() is not None):
                return True
            if args.until_resolved and expect and all(
                    any(e.firing_seen and e.ended_seen for e in w.episodes.get(n, [])) for n in expect):
                return True
            return False
        try:
            while not done():
                time.sleep(1)
        except KeyboardInterrupt:
            w.mark("interrupted")
        w.mark("done")
    finally:
        w.stop()
        stack.stop_all()
    w.join(timeout=10)
    c = Checks()
    for name, eps in sorted(w.episodes.items()):
        r = rules.get(name)
        for ep in eps:
            if ep.firing_seen and r:
                c.add(ep.firing_seen >= ep.active_at + r.for_s,
                      f"{name} firing no earlier than for: {r.for_s:g}s after its condition held",
                      f"{ep.firing_seen - ep.active_at:.1f}s")
    for name in expect:
        c.add(any(e.firing_seen for e in w.episodes.get(name, [])), f"{name} fired")
    for name, recv in sorted(w.am_receivers.items()):
        sev = rules[name].severity if name in rules else ""
        want = "discord-critical" if sev == "critical" else "discord-default"
        c.add(want in recv, f"{name} ({sev}) routed to {want}", ",".join(sorted(recv)))
    both = [t for t, st in w.am_seen if st.get("HighErrorRateCritical") == "active" and "HighErrorRate" in st]
    if both:
        bad = [t for t, st in w.am_seen if st.get("HighErrorRateCritical") == "active"
               and st.get("HighErrorRate") == "active"]
        c.add(not bad, "HighErrorRate inhibited while HighErrorRateCritical is active in Alertmanager",
              f"{len(bad)} of {len(both)} polls un-inhibited" if bad else "")
    check_notifications(c, notes_before, am_notifications(am))
    out = ["", "timeline:"] + ["  " + l for l in watch.render(w, t0, {})] + ["", "checks:"] + c.lines()
    out += ["", "Deliveries themselves cannot be seen from here: the Discord channels show them; "
                "Alertmanager's notification counters (checked above) say whether each attempt succeeded."]
    out += ["RESULT: " + ("PASS" if not c.failed else "FAIL: " + "; ".join(c.failed))]
    text = "\n".join(out) + "\n"
    (WORK / "cluster-timeline.txt").write_text(text)
    print(text)
    return 1 if c.failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(prog="alert-check", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    lo = sub.add_parser("local")
    lo.add_argument("--factor", type=float, default=float(os.environ.get("ALERT_CHECK_FACTOR", "15")))
    lo.add_argument("--real-durations", action="store_true")
    lo.add_argument("--db-upstream", default="127.0.0.1:54349")
    lo.add_argument("--db-name", default="alertcheck")
    lo.add_argument("--redis-url", default="redis://127.0.0.1:63819/")
    cl = sub.add_parser("cluster")
    cl.add_argument("--prometheus", required=True)
    cl.add_argument("--alertmanager", required=True)
    cl.add_argument("--host", help="goose target (omit to only watch)")
    cl.add_argument("--duration", default="30m", help="how long to drive and watch (Prometheus duration)")
    cl.add_argument("--expect", default="HighLatency,HighErrorRate,HighErrorRateCritical",
                    help="alerts that must fire (comma-separated; empty for none)")
    cl.add_argument("--until-resolved", action="store_true",
                    help="stop as soon as every expected alert has fired and resolved")
    cl.add_argument("goose", nargs=argparse.REMAINDER, help="after --: goose's own options")
    args = ap.parse_args()
    if args.mode == "cluster" and args.goose and args.goose[0] == "--":
        args.goose = args.goose[1:]

    def term(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, term)
    try:
        return local(args) if args.mode == "local" else cluster(args)
    except HarnessError as e:
        log(f"error: {e}")
        return 2
    except (urllib.error.URLError, OSError) as e:
        log(f"error: {e} (is every URL right and reachable?)")
        return 2
    except KeyboardInterrupt:
        log("interrupted; everything started has been stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
