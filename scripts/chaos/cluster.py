"""The cluster in a box for `make chaos` and `make soak`, all on 127.0.0.1.

PostgreSQL primary + streaming standby (pg_basebackup -R), each behind its own
faultproxy (so fault 6 can slow or cut the database without touching it); Valkey
master + replica + three Sentinels; three server instances; HAProxy in front.
Every process started here is recorded and stopped by `Cluster.stop_all`, which
the caller runs in a `finally`, so a failed run leaves nothing behind.

The port band (none of it used by scripts/services.sh, whose profiles take
54329/54339/54349 and 63799-63824; every listening port below Linux's ephemeral
range, 32768-60999, where an outgoing connection's local port can take a
listener's port away: with a first choice of 54361-54372, PostgreSQL b once
found 54362 taken at start-up, right after a soak, most likely by such a socket):

    PostgreSQL nodes a, b       25461, 25462
    faultproxy a, b (+control)  25463, 25464 (25471, 25472)
    Valkey master, replica      63849, 63850
    Sentinels                   63851-63853
    HAProxy (+stats)            18080 (18089)
    instances (+metrics)        18081-18083 (19081-19083)
"""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("CHAOS_BIN_DIR", ROOT / "target" / "release"))

PG_PORTS = {"a": 25461, "b": 25462}
PROXY_PORTS = {"a": 25463, "b": 25464}
PROXY_CONTROL = {"a": 25471, "b": 25472}
VK_PORTS = {"m": 63849, "r": 63850}
SENTINEL_PORTS = [63851, 63852, 63853]
LB_PORT, LB_STATS_PORT = 18080, 18089
APP_PORTS = [18081, 18082, 18083]
METRICS_PORTS = [19081, 19082, 19083]
MASTER_NAME = "mymaster"
DB = "shortener"

# Production settings (k8s/app.env), except where a comment says otherwise.
INSTANCE_ENV = {
    "HOST": "127.0.0.1",
    "LOG_LEVEL": "info",
    # The access log costs CPU on a 2-core box shared with goose, HAProxy and two
    # PostgreSQL servers; goose's request log and HAProxy's log hold every request.
    "ACCESS_LOG": "false",
    "DATABASE_POOL_MAX": "45",
    "DATABASE_POOL_TIMEOUT_MS": "2000",
    "SHUTDOWN_TIMEOUT_SECONDS": "20",
    "READY_DB_GRACE_SECONDS": "30",
    "CACHE_TTL_SECONDS": "30",
    "VALKEY_SENTINEL_MASTER": MASTER_NAME,
}


class HarnessError(Exception):
    """The harness could not run (exit 2), as opposed to a missed target (exit 1)."""


def log(msg: str) -> None:
    print(f"chaos: {time.strftime('%H:%M:%S')} {msg}", flush=True)


def wait_for(pred, within_s: float, what: str, every: float = 0.2):
    deadline = time.time() + within_s
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise HarnessError(f"timed out after {within_s:.0f}s waiting for {what}")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (urllib.error.URLError, OSError):
        return 0, ""


# === Valkey: a minimal RESP client (redis-cli is optional on a fresh machine) ===

def resp(port: int, *args: str, timeout: float = 2.0):
    """One command; the reply as str / int / list / None. Raises OSError when down."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        out = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in map(str, args))
        s.sendall(out.encode())
        f = s.makefile("rb")

        def read():
            line = f.readline()
            if not line:
                raise OSError("connection closed")
            t, rest = line[:1], line[1:].rstrip(b"\r\n")
            if t == b"+":
                return rest.decode()
            if t == b"-":
                raise OSError(rest.decode())
            if t == b":":
                return int(rest)
            if t == b"$":
                n = int(rest)
                if n < 0:
                    return None
                data = f.read(n + 2)
                return data[:-2].decode(errors="replace")
            if t == b"*":
                n = int(rest)
                return None if n < 0 else [read() for _ in range(n)]
            raise OSError(f"unexpected reply {line!r}")
        return read()


def info(port: int, section: str) -> dict:
    text = resp(port, "INFO", section)
    return dict(l.split(":", 1) for l in text.splitlines() if ":" in l and not l.startswith("#"))


# === PostgreSQL ===

def pg_bin() -> Path:
    env = os.environ.get("CHAOS_PG_BIN")
    if env:
        return Path(env)
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True):
        if (d / "initdb").exists():
            return d
    raise HarnessError("no PostgreSQL under /usr/lib/postgresql/*/bin (scripts/services.sh install)")


class PgNode:
    """One PostgreSQL server. As root it runs as `postgres` (it refuses root), with
    its data under /tmp, which that user can always reach."""

    def __init__(self, name: str, root: Path, logs: Path):
        self.name, self.port = name, PG_PORTS[name]
        self.dir = root / f"pg-{name}"
        self.data = self.dir / "data"
        self.logf = logs / f"postgres-{name}.log"
        self.bin = pg_bin()
        self.user = "postgres" if os.geteuid() == 0 else None

    def _as_pg(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        if self.user:
            argv = ["runuser", "-u", self.user, "--", "env", "HOME=/tmp", *argv]
        return subprocess.run(argv, cwd="/", capture_output=True, text=True, **kw)

    def _check(self, argv: list[str], what: str, timeout: float = 120) -> str:
        r = self._as_pg(argv, timeout=timeout)
        if r.returncode != 0:
            raise HarnessError(f"{what} failed ({r.returncode}): {r.stdout[-600:]}{r.stderr[-600:]}")
        return r.stdout

    def _fresh_dir(self) -> None:
        if self.dir.exists():
            self._as_pg([str(self.bin / "pg_ctl"), "stop", "-D", str(self.data), "-m", "immediate", "-w"])
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        os.chmod(self.dir, 0o700)
        if self.user:
            shutil.chown(self.dir, self.user)
        self.logf.touch()
        if self.user:
            shutil.chown(self.logf, self.user)

    def _conf(self) -> str:
        # fsync off: the faults kill processes, never the machine, so the page
        # cache survives them; durability against power loss buys nothing here
        # and the disk is shared. synchronous_commit stays on: a commit is in the
        # WAL (the OS's copy) before the client hears of it.
        return (f"\n# --- scripts/chaos ---\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.dir}'\nmax_connections = 200\nshared_buffers = 128MB\n"
                "fsync = off\nfull_page_writes = off\nwal_level = replica\nmax_wal_senders = 5\n"
                "hot_standby = on\nwal_keep_size = 256MB\nlog_min_messages = warning\n"
                "log_line_prefix = '%m [%p] '\n")

    def init_primary(self) -> None:
        self._fresh_dir()
        self._check([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                     "--encoding=UTF8", "--locale=C"], f"initdb {self.name}")
        with (self.data / "postgresql.conf").open("a") as f:
            f.write(self._conf())

    def init_standby_of(self, primary: "PgNode") -> None:
        """A fresh streaming standby: pg_basebackup -R writes standby.signal and
        primary_conninfo (straight to the primary, not through its faultproxy)."""
        self._fresh_dir()
        self._check([str(self.bin / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
                     "-D", str(self.data), "-R", "-X", "stream", "-c", "fast"], f"pg_basebackup {self.name}")
        with (self.data / "postgresql.conf").open("a") as f:
            f.write(self._conf())

    def start(self) -> None:
        if port_open(self.port):
            raise HarnessError(f"port {self.port} is taken; cannot start PostgreSQL {self.name}")
        self._check([str(self.bin / "pg_ctl"), "start", "-D", str(self.data), "-l", str(self.logf), "-w",
                     "-t", "60"], f"pg_ctl start {self.name}")

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._as_pg([str(self.bin / "pg_ctl"), "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "30"])

    def restart(self) -> None:
        self._check([str(self.bin / "pg_ctl"), "restart", "-D", str(self.data), "-m", "fast", "-w", "-t", "60",
                     "-l", str(self.logf)], f"pg_ctl restart {self.name}")

    def promote(self) -> None:
        self._check([str(self.bin / "pg_ctl"), "promote", "-D", str(self.data), "-w", "-t", "60"],
                    f"pg_ctl promote {self.name}")

    def kill9(self) -> list[int]:
        """SIGKILL the postmaster and every child at once: the node dies as a
        machine would, without a shutdown checkpoint or goodbye to clients."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        victims = [pid] + children_of(pid)
        for p in victims:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_for(lambda: not any(alive(p) for p in victims), 10, f"PostgreSQL {self.name} to die")
        return victims

    def psql(self, sql: str, db: str = DB, timeout: float = 20) -> str:
        r = subprocess.run([str(self.bin / "psql"), "-X", "-q", "-tA", "-F", "\t", "-h", "127.0.0.1",
                            "-p", str(self.port), "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-c", sql],
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise HarnessError(f"psql on {self.name} failed: {r.stderr.strip()[:400]}")
        return r.stdout

    def writable(self) -> bool:
        try:
            return self.psql("SELECT NOT pg_is_in_recovery()", db="postgres", timeout=3).strip() == "t"
        except (HarnessError, subprocess.TimeoutExpired):
            return False

    def streaming_to(self, n: int = 1) -> bool:
        try:
            out = self.psql("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
                            db="postgres", timeout=3)
            return int(out.strip() or 0) >= n
        except (HarnessError, subprocess.TimeoutExpired, ValueError):
            return False


def children_of(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def alive(pid: int) -> bool:
    try:
        st = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return st[0] != "Z"
    except OSError:
        return False


# === Valkey group ===

class VkNode:
    def __init__(self, name: str, port: int, root: Path, vk_bin: str, sentinel: bool = False,
                 replica_of: int | None = None):
        self.name, self.port, self.bin, self.sentinel = name, port, vk_bin, sentinel
        self.dir = root / "valkey"
        self.conf = self.dir / f"{name}.conf"
        self.pidfile = self.dir / f"{name}.pid"
        self.logf = self.dir / f"{name}.log"
        lines = ["bind 127.0.0.1", f"port {port}", "daemonize yes", f"pidfile {self.pidfile}",
                 f"logfile {self.logf}", f"dir {self.dir}"]
        if sentinel:
            lines += [f"sentinel monitor {MASTER_NAME} 127.0.0.1 {VK_PORTS['m']} 2",
                      # services.sh's test group uses the same timings: a dead master
                      # is noticed within a second and failed over within a few.
                      f"sentinel down-after-milliseconds {MASTER_NAME} 1000",
                      f"sentinel failover-timeout {MASTER_NAME} 5000",
                      f"sentinel parallel-syncs {MASTER_NAME} 1"]
        else:
            lines += [f"dbfilename {name}.rdb", 'save ""', "appendonly no"]
            if replica_of:
                lines.append(f"replicaof 127.0.0.1 {replica_of}")
        self.dir.mkdir(parents=True, exist_ok=True)
        # A file, not flags: Sentinel rewrites its own config on every change.
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        argv = [self.bin, str(self.conf)] + (["--sentinel"] if self.sentinel else [])
        r = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise HarnessError(f"valkey {self.name} did not start: {r.stdout}{r.stderr}")
        wait_for(self.pong, 20, f"valkey {self.name} on {self.port}")

    def pong(self) -> bool:
        try:
            return resp(self.port, "PING", timeout=0.5) == "PONG"
        except OSError:
            return False

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def kill(self, sig=signal.SIGKILL) -> None:
        pid = self.pid()
        if pid and alive(pid):
            os.kill(pid, sig)
            wait_for(lambda: not alive(pid), 10, f"valkey {self.name} to die")

    def stop(self) -> None:
        pid = self.pid()
        if pid and alive(pid):
            os.kill(pid, signal.SIGTERM)
            try:
                wait_for(lambda: not alive(pid), 10, f"valkey {self.name} to stop")
            except HarnessError:
                os.kill(pid, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)


# === server instances ===

class Instance:
    """One server process. Each start is a new incarnation with counters from 0:
    `incarnations` keeps the last scraped counters of every one, so a restarted or
    killed instance's redirects still count."""

    def __init__(self, idx: int, env: dict, logs: Path, exe: Path):
        self.idx, self.name, self.exe = idx, f"s{idx + 1}", exe
        self.port, self.metrics_port = APP_PORTS[idx], METRICS_PORTS[idx]
        self.env = {**os.environ, **INSTANCE_ENV, **env, "PORT": str(self.port),
                    "METRICS_PORT": str(self.metrics_port)}
        self.logs = logs
        self.proc: subprocess.Popen | None = None
        self.incarnations: list[dict] = []

    def start(self) -> None:
        n = len(self.incarnations) + 1
        out = (self.logs / f"server-{self.name}-{n}.log").open("w")
        self.proc = subprocess.Popen([str(self.exe), "serve"], env=self.env, stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
                                     start_new_session=True)
        out.close()
        self.incarnations.append({"pid": self.proc.pid, "started": time.time(), "found": 0.0,
                                  "clicks_dropped": 0.0, "events_dropped": 0.0, "clicks_recorded": 0.0,
                                  "scraped": None,
                                  "ended": None, "how": None})

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ready(self) -> bool:
        return http_get(f"http://127.0.0.1:{self.port}/ready", 1.0)[0] == 200

    def scrape(self) -> bool:
        if not self.running():
            return False
        code, text = http_get(f"http://127.0.0.1:{self.metrics_port}/metrics", 1.0)
        if code != 200:
            return False
        cur = self.incarnations[-1]
        rec = 0.0
        for line in text.splitlines():
            if line.startswith("clicks_recorded_total{"):
                rec += float(line.rsplit(" ", 1)[1])
            if line.startswith('redirects_total{result="found"}'):
                cur["found"] = float(line.rsplit(" ", 1)[1])
            elif line.startswith("clicks_dropped_total"):
                cur["clicks_dropped"] = float(line.rsplit(" ", 1)[1])
            elif line.startswith("events_dropped_total"):
                cur["events_dropped"] = float(line.rsplit(" ", 1)[1])
        cur["clicks_recorded"] = rec
        cur["scraped"] = time.time()
        return True

    def totals(self) -> dict:
        keys = ("found", "clicks_dropped", "events_dropped", "clicks_recorded")
        return {k: sum(i[k] for i in self.incarnations) for k in keys}

    def terminate(self, budget_s: float) -> tuple[int | None, float]:
        """SIGTERM and wait for the exit, scraping the counters until the end;
        (exit code, seconds it took)."""
        t0 = time.time()
        self.proc.send_signal(signal.SIGTERM)
        while self.proc.poll() is None and time.time() - t0 < budget_s:
            self.scrape()
            time.sleep(0.2)
        if self.proc.poll() is None:
            log(f"{self.name} did not exit within {budget_s:.0f}s of SIGTERM: killing it")
            self.proc.kill()
            self.proc.wait(5)
        self.incarnations[-1].update(ended=time.time(), how="SIGTERM")
        return self.proc.returncode, time.time() - t0

    def kill9(self) -> float:
        # The caller scrapes just before: the counters then miss only what was
        # served in the milliseconds between, and the click check's residual is
        # what the kill lost from the queue.
        t = time.time()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)
        self.incarnations[-1].update(ended=t, how="SIGKILL")
        return t

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))


# === HAProxy ===

HAPROXY_CFG = """\
# Generated by scripts/chaos/cluster.py. As close to Traefik in front of the
# Kubernetes Service as HAProxy allows:
# - health checks GET /ready every 1 s, fall 2 rise 2: an instance whose /ready
#   turns 503 (shutdown, or PostgreSQL gone past READY_DB_GRACE_SECONDS) gets no
#   new requests within ~2 s, and the requests it already has run to their end
#   (draining; no on-marked-down shutdown-sessions);
# - retries: a request that never reached an instance (connection refused or
#   reset before sending) is retried on another one whatever its method, since
#   nothing ran; a GET or HEAD that got no answer (empty response, timeout) is
#   retried too, as it is idempotent; a POST, PUT or DELETE is not;
# - a 503 from an instance is passed through, not retried (Traefik does not retry
#   on a status either).
global
    # fds = 2 x maxconn + a few: under the usual 20000 hard limit.
    maxconn 4000
    stats socket {sock} mode 600 level admin
    log stdout format raw local0 info

defaults
    mode http
    log global
    option httplog
    timeout connect 1s
    timeout client 30s
    timeout server 15s
    timeout http-request 10s
    timeout queue 5s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout

frontend fe
    bind 127.0.0.1:{lb_port}
    default_backend app

listen stats
    bind 127.0.0.1:{stats_port}
    stats enable
    stats uri /

backend app
    balance roundrobin
    option httpchk
    http-check send meth GET uri /ready
    http-check expect status 200
    # METH_GET is GET and HEAD: everything else is retried only on conn-failure.
    http-request disable-l7-retry if !METH_GET
    default-server check inter 1s fall 2 rise 2
{servers}
"""


class HAProxy:
    def __init__(self, root: Path, logs: Path):
        self.sock = root / "haproxy.sock"
        self.cfg = root / "haproxy.cfg"
        self.logf = logs / "haproxy.log"
        servers = "\n".join(f"    server s{i + 1} 127.0.0.1:{p}" for i, p in enumerate(APP_PORTS))
        self.cfg.write_text(HAPROXY_CFG.format(sock=self.sock, lb_port=LB_PORT, stats_port=LB_STATS_PORT,
                                               servers=servers))
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        r = subprocess.run(["haproxy", "-c", "-q", "-f", str(self.cfg)], capture_output=True, text=True)
        if r.returncode != 0:
            raise HarnessError(f"haproxy -c rejected {self.cfg}: {r.stdout}{r.stderr}")
        out = self.logf.open("w")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(self.cfg)], stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        wait_for(lambda: port_open(LB_PORT), 10, "HAProxy to listen")

    def cmd(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(str(self.sock))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while True:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
            return b"".join(chunks).decode()

    def states(self) -> dict[str, str]:
        """Server name -> HAProxy status (UP, DOWN, MAINT, DRAIN, UP 1/2, ...)."""
        try:
            text = self.cmd("show stat")
        except OSError:
            return {}
        lines = text.splitlines()
        if not lines:
            return {}
        hdr = lines[0].lstrip("# ").split(",")
        i_px, i_sv, i_st = hdr.index("pxname"), hdr.index("svname"), hdr.index("status")
        out = {}
        for l in lines[1:]:
            f = l.split(",")
            if len(f) > i_st and f[i_px] == "app" and f[i_sv] not in ("BACKEND", "FRONTEND"):
                out[f[i_sv]] = f[i_st]
        return out

    def set_state(self, server: str, state: str) -> None:
        self.cmd(f"set server app/{server} state {state}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# === faultproxy ===

class FaultProxy:
    def __init__(self, name: str, logs: Path):
        self.name = name
        self.port, self.control, self.upstream = PROXY_PORTS[name], PROXY_CONTROL[name], PG_PORTS[name]
        self.logf = logs / f"faultproxy-{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        out = self.logf.open("w")
        self.proc = subprocess.Popen([str(BIN / "faultproxy"), "--listen", f"127.0.0.1:{self.port}",
                                      "--upstream", f"127.0.0.1:{self.upstream}",
                                      "--control", f"127.0.0.1:{self.control}"],
                                     stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        out.close()
        wait_for(lambda: port_open(self.control) and port_open(self.port), 10, f"faultproxy {self.name}")

    def mode(self, mode: str) -> None:
        req = urllib.request.Request(f"http://127.0.0.1:{self.control}/mode", data=mode.encode(), method="PUT")
        with urllib.request.urlopen(req, timeout=5) as r:
            if r.status >= 300:
                raise HarnessError(f"faultproxy {self.name} refused mode {mode!r}: {r.status}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# === the whole box ===

def pg_root() -> Path:
    # PostgreSQL's user must traverse every parent of its data folder, which a
    # checkout under /root or a home folder does not allow: /tmp always does.
    if os.geteuid() == 0:
        h = hashlib.sha1(str(ROOT).encode()).hexdigest()[:10]
        return Path(f"/tmp/urlshort-chaos-{h}")
    return ROOT / ".local" / "chaos" / "pg"


class Cluster:
    def __init__(self, work: Path, vk_bin: str):
        self.work, self.logs = work, work / "logs"
        # Last run's logs would mix with this run's (server-s1-2.log of a run
        # that got further).
        if self.logs.exists():
            shutil.rmtree(self.logs)
        self.logs.mkdir(parents=True)
        self.pgroot = pg_root()
        self.pgroot.mkdir(parents=True, exist_ok=True)
        os.chmod(self.pgroot, 0o755)
        self.pg = {n: PgNode(n, self.pgroot, self.logs) for n in ("a", "b")}
        self.primary, self.standby = self.pg["a"], self.pg["b"]
        self.proxies = {n: FaultProxy(n, self.logs) for n in ("a", "b")}
        self.vk_bin = vk_bin
        self.vk: dict[str, VkNode] = {}
        self.sentinels: list[VkNode] = []
        self.instances: list[Instance] = []
        self.lb = HAProxy(work, self.logs)
        self.database_url = (f"postgres://postgres@127.0.0.1:{PROXY_PORTS['a']},127.0.0.1:{PROXY_PORTS['b']}/"
                             f"{DB}?target_session_attrs=read-write")
        self.sentinel_list = ",".join(f"127.0.0.1:{p}" for p in SENTINEL_PORTS)

    def check_ports(self) -> None:
        ports = [*PG_PORTS.values(), *PROXY_PORTS.values(), *PROXY_CONTROL.values(), *VK_PORTS.values(),
                 *SENTINEL_PORTS, LB_PORT, LB_STATS_PORT, *APP_PORTS, *METRICS_PORTS]
        taken = [p for p in ports if port_open(p)]
        if taken:
            raise HarnessError(f"ports {taken} are taken (a previous run still up? see `ss -ltnp`)")

    def start_postgres(self, seed_users: int, seed_urls: int) -> None:
        a, b = self.primary, self.standby
        a.init_primary()
        a.start()
        a.psql(f"CREATE DATABASE {DB}", db="postgres")
        direct = f"postgres://postgres@127.0.0.1:{a.port}/{DB}"
        for sub in (["migrate"], ["seed", "--users", str(seed_users), "--urls", str(seed_urls)]):
            r = subprocess.run([str(BIN / "url-shortener"), *sub], env={**os.environ, "DATABASE_URL": direct},
                               capture_output=True, text=True, cwd=ROOT)
            (self.logs / f"{sub[0]}.log").write_text(r.stdout + r.stderr)
            if r.returncode != 0:
                raise HarnessError(f"url-shortener {sub[0]} failed: {(r.stdout + r.stderr)[-800:]}")
        b.init_standby_of(a)
        b.start()
        wait_for(lambda: a.streaming_to(1), 60, "the standby to stream from the primary")
        for p in self.proxies.values():
            p.start()

    def rebuild_standby(self, node: PgNode) -> None:
        """Turns a dead former primary into a fresh standby of the current primary."""
        node.stop("immediate")
        node.init_standby_of(self.primary)
        node.start()
        self.standby = node
        wait_for(lambda: self.primary.streaming_to(1), 60, f"{node.name} to stream from {self.primary.name}")

    def start_valkey(self) -> None:
        vdir = self.work / "valkey"
        if vdir.exists():
            shutil.rmtree(vdir)
        self.vk = {"m": VkNode("valkey-m", VK_PORTS["m"], self.work, self.vk_bin),
                   "r": VkNode("valkey-r", VK_PORTS["r"], self.work, self.vk_bin, replica_of=VK_PORTS["m"])}
        for n in self.vk.values():
            n.start()
        self.sentinels = [VkNode(f"sentinel-{p}", p, self.work, self.vk_bin, sentinel=True) for p in SENTINEL_PORTS]
        for s in self.sentinels:
            s.start()
        wait_for(self.valkey_settled, 60, "the Sentinel group to settle (replica in sync, sentinels know each other)")

    def valkey_master_port(self) -> int | None:
        for s in self.sentinels:
            try:
                host_port = resp(s.port, "SENTINEL", "get-master-addr-by-name", MASTER_NAME, timeout=1)
                if host_port:
                    return int(host_port[1])
            except (OSError, ValueError):
                continue
        return None

    def valkey_settled(self) -> bool:
        try:
            mport = self.valkey_master_port()
            if mport is None:
                return False
            other = VK_PORTS["r"] if mport == VK_PORTS["m"] else VK_PORTS["m"]
            if info(mport, "replication").get("role") != "master":
                return False
            if info(mport, "replication").get("connected_slaves") != "1":
                return False
            if info(other, "replication").get("master_link_status") != "up":
                return False
            for s in self.sentinels:
                m = resp(s.port, "SENTINEL", "master", MASTER_NAME, timeout=1)
                d = dict(zip(m[::2], m[1::2]))
                if d.get("num-other-sentinels") != "2" or d.get("num-slaves") != "1" or "s_down" in d.get("flags", ""):
                    return False
            return True
        except OSError:
            return False

    def valkey_node_on(self, port: int) -> VkNode:
        return next(n for n in self.vk.values() if n.port == port)

    def start_instances(self) -> None:
        env = {"DATABASE_URL": self.database_url, "VALKEY_SENTINELS": self.sentinel_list}
        # A copy under another name: on this shared box something stops every
        # process called url-shortener now and then (three SIGTERMs to all three
        # instances at once in one morning), which would pass for a fault here.
        exe = self.work / "bin" / "shortener-chaos"
        exe.parent.mkdir(exist_ok=True)
        shutil.copy2(BIN / "url-shortener", exe)
        self.instances = [Instance(i, env, self.logs, exe) for i in range(len(APP_PORTS))]
        for inst in self.instances:
            inst.start()
        for inst in self.instances:
            wait_for(lambda: inst.ready() or (not inst.running() and _died(inst)), 60, f"{inst.name} /ready")
        self.lb.start()
        wait_for(self.lb_all_up, 20, "HAProxy to see every instance UP")

    def lb_all_up(self) -> bool:
        st = self.lb.states()
        return len(st) == len(self.instances) and all(v == "UP" for v in st.values())

    def healthy(self) -> tuple[bool, str]:
        """Everything back as it was before a fault; the reason when not."""
        for inst in self.instances:
            if not inst.running():
                return False, f"{inst.name} not running"
        if not self.lb_all_up():
            return False, f"HAProxy: {self.lb.states()}"
        if not self.primary.writable():
            return False, f"PostgreSQL {self.primary.name} not writable"
        if not self.primary.streaming_to(1):
            return False, "no streaming standby"
        if not self.valkey_settled():
            return False, "Valkey group not settled"
        return True, ""

    def stop_all(self) -> None:
        """Everything, in reverse order of dependence; each step on its own so one
        failure does not leave the rest running."""
        steps = [("haproxy", self.lb.stop)]
        for inst in self.instances:
            steps.append((inst.name, lambda i=inst: i.terminate(25) if i.running() else None))
        steps += [(f"faultproxy {p.name}", p.stop) for p in self.proxies.values()]
        steps += [(s.name, s.stop) for s in self.sentinels]
        steps += [(n.name, n.stop) for n in self.vk.values()]
        steps += [(f"postgres {n.name}", lambda n=n: n.stop("fast")) for n in self.pg.values()]
        for name, fn in steps:
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - keep stopping the rest
                log(f"stopping {name}: {e}")


def _died(inst: Instance) -> bool:
    raise HarnessError(f"{inst.name} exited ({inst.proc.returncode}) before it was ready; "
                       f"see {inst.logs}/server-{inst.name}-{len(inst.incarnations)}.log")
