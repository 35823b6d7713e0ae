#!/usr/bin/env python3
"""Checks the rendered manifests, and the files next to them, for the
decisions that schemas cannot see. Usage:
    check-k8s.py RENDERED_APP.yaml
Each check is a function below; together they cover:
- every pod template meets the restricted Pod Security profile;
- the Deployment never drops below its replicas during a rollout;
- terminationGracePeriodSeconds >= preStop sleep + SHUTDOWN_TIMEOUT_SECONDS
  (the server's whole budget from SIGTERM to exit) + a margin of 5 s;
- (replicas + maxSurge) x DATABASE_POOL_MAX fits PostgreSQL's max_connections
  less superuser_reserved_connections (3) and the operator's own (10);
- the Service does not expose the metrics port;
- the PostgreSQL instances may reach each other on 8000 (primary isolation);
- Valkey: the chart version pinned in k8s/versions.env and the image tags
  equal to the ones that chart release was built with; no persistence (no
  AOF, no RDB), maxmemory within the limit, an eviction policy; no keys that
  do nothing in Sentinel mode;
- Alloy drops the `filename` label that loki.source.file adds.
Exits 1 on any failure."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RESERVED = 3 + 10
GRACE_MARGIN_S = 5

errors: list[str] = []
notes: list[str] = []


def fail(msg: str) -> None:
    errors.append(msg)


# === helpers ================================================================

def selects(selector: dict, labels: dict) -> bool:
    """A label selector (matchLabels only, as used here) against pod labels."""
    if set(selector) - {"matchLabels"}:
        return False  # matchExpressions are not used in this repository
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


# === checks =================================================================

def pod_security(docs: list[dict]) -> None:
    for d in docs:
        spec = d.get("spec", {}).get("template", {}).get("spec")
        if not spec:
            continue
        where = f"{d['kind']} {d['metadata']['name']}"
        psc = spec.get("securityContext", {})
        if not psc.get("runAsNonRoot") or psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            fail(f"{where}: pod needs runAsNonRoot and RuntimeDefault seccomp")
        if spec.get("automountServiceAccountToken") is not False:
            fail(f"{where}: service-account token is mounted")
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            sc = c.get("securityContext", {})
            if sc.get("allowPrivilegeEscalation") is not False or not sc.get("readOnlyRootFilesystem") \
                    or sc.get("capabilities", {}).get("drop") != ["ALL"]:
                fail(f"{where}/{c['name']}: needs no privilege escalation, read-only root, drop ALL")
            if not c.get("resources", {}).get("limits"):
                fail(f"{where}/{c['name']}: no resource limits")


def rollout_and_shutdown(by: dict, env: dict) -> None:
    dep = by[("Deployment", "url-shortener")]
    strategy = dep["spec"]["strategy"]
    ru = strategy.get("rollingUpdate", {})
    if strategy["type"] != "RollingUpdate" or ru.get("maxUnavailable") != 0:
        fail("Deployment: must be RollingUpdate with maxUnavailable 0")
    pod = dep["spec"]["template"]["spec"]
    app = next(c for c in pod["containers"] if c["name"] == "url-shortener")
    sleep = app["lifecycle"]["preStop"]["sleep"]["seconds"]
    # The server's one budget from SIGTERM to exit: drain + event flush + pool close.
    budget = int(env.get("SHUTDOWN_TIMEOUT_SECONDS", 20))
    grace = pod["terminationGracePeriodSeconds"]
    if grace < sleep + budget + GRACE_MARGIN_S:
        fail(f"terminationGracePeriodSeconds {grace} < preStop {sleep} + SHUTDOWN_TIMEOUT_SECONDS {budget}"
             f" + margin {GRACE_MARGIN_S}")
    notes.append(f"grace {grace} s >= preStop {sleep} + shutdown budget {budget} + {GRACE_MARGIN_S}")


def pool_sizing(by: dict, env: dict) -> None:
    dep = by[("Deployment", "url-shortener")]
    ru = dep["spec"]["strategy"].get("rollingUpdate", {})
    pg = by[("Cluster", "url-shortener-db")]
    max_conn = int(pg["spec"]["postgresql"]["parameters"]["max_connections"])
    pods = dep["spec"]["replicas"] + int(ru.get("maxSurge", 0))
    pool = int(env["DATABASE_POOL_MAX"])
    if pods * pool > max_conn - RESERVED:
        fail(f"{pods} pods x DATABASE_POOL_MAX {pool} = {pods * pool} > max_connections {max_conn} - {RESERVED}")
    notes.append(f"{pods} pods x {pool} connections = {pods * pool} of {max_conn - RESERVED} usable")


def service_hides_metrics(by: dict, env: dict) -> None:
    svc = by[("Service", "url-shortener")]
    metrics_port = env.get("METRICS_PORT")
    for p in svc["spec"]["ports"]:
        if p.get("targetPort") in ("metrics", metrics_port, int(metrics_port or 0)):
            fail("Service exposes the metrics port")


def postgres_peers_reach_instance_manager(docs: list[dict]) -> None:
    """CloudNativePG 1.27+: a primary that cannot reach the API server asks its
    peers' instance manager (port 8000, /failsafe) before it shuts down."""
    instance = {"cnpg.io/cluster": "url-shortener-db", "cnpg.io/podRole": "instance"}
    policies = [d for d in docs if d["kind"] == "NetworkPolicy" and selects(d["spec"]["podSelector"], instance)]
    for port in (5432, 8000):
        ok = False
        for np in policies:
            for rule in np["spec"].get("ingress", []):
                peers = [f for f in rule.get("from", []) if "namespaceSelector" not in f and "podSelector" in f
                         and selects(f["podSelector"], instance)]
                ports = {p.get("port") for p in rule.get("ports", [])}
                if peers and port in ports:
                    ok = True
        if not ok:
            fail(f"NetworkPolicy: PostgreSQL instances cannot reach each other on {port}"
                 + (" (CloudNativePG's primary isolation check, /failsafe)" if port == 8000 else ""))


def read_env(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            k, _, v = line.partition("=")
            env[k] = v
    return env


def to_bytes(quantity: str) -> float:
    """Kubernetes (Mi, Gi) and PostgreSQL/Valkey (MB, GB, mb) sizes, in bytes."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]i?|[kmgt]b|[KMGT]B)?", str(quantity).strip())
    if not m:
        raise ValueError(f"not a size: {quantity!r}")
    n, unit = float(m.group(1)), (m.group(2) or "")
    powers = {"k": 1, "m": 2, "g": 3, "t": 4}
    if not unit:
        return n
    # PostgreSQL's MB/GB and Valkey's mb/gb are binary units, as Mi/Gi.
    return n * 1024 ** powers[unit[0].lower()]


def valkey_values(versions: dict) -> None:
    where = "k8s/valkey-values.yaml"
    values = yaml.safe_load((ROOT / where).read_text())
    if values.get("sentinel", {}).get("enabled") and "primary" in values:
        fail(f"{where}: `primary` has no effect in Sentinel mode (the chart runs only replica.*)")
    chart = versions.get("VALKEY_CHART_VERSION", "")
    if not re.fullmatch(r"\d+\.\d+\.\d+", chart):
        fail(f"k8s/versions.env: VALKEY_CHART_VERSION must pin an exact chart version, is {chart!r}")
    tag = versions.get("VALKEY_IMAGE_TAG")
    for key, image in (("image", values.get("image", {})), ("sentinel.image", values.get("sentinel", {}).get("image", {}))):
        if image.get("tag") != tag:
            fail(f"{where}: {key}.tag {image.get('tag')!r} is not VALKEY_IMAGE_TAG {tag!r} (k8s/versions.env)")
    # A pure cache: nothing on disk, bounded memory, an eviction policy.
    conf = {}
    for line in values.get("commonConfiguration", "").splitlines():
        if line.strip() and not line.strip().startswith("#"):
            k, _, v = line.strip().partition(" ")
            conf[k] = v.strip()
    if conf.get("appendonly") != "no":
        fail(f"{where}: commonConfiguration must say `appendonly no` (the chart's default writes an AOF)")
    if conf.get("save") != '""':
        fail(f"{where}: commonConfiguration must say `save \"\"` (no RDB snapshots)")
    for key in ("replica", "sentinel"):
        if values.get(key, {}).get("persistence", {}).get("enabled") is not False:
            fail(f"{where}: {key}.persistence.enabled must be false")
    if "maxmemory" not in conf:
        fail(f"{where}: commonConfiguration sets no maxmemory")
    else:
        limit = to_bytes(values["replica"]["resources"]["limits"]["memory"])
        if to_bytes(conf["maxmemory"]) > limit / 2:
            fail(f"{where}: maxmemory {conf['maxmemory']} is over half the container's memory limit")
    if not re.fullmatch(r"(allkeys|volatile)-(lru|lfu|random|ttl)", conf.get("maxmemory-policy", "")):
        fail(f"{where}: commonConfiguration needs an evicting maxmemory-policy, has {conf.get('maxmemory-policy')!r}")


def alloy_labels() -> None:
    text = (ROOT / "monitoring/alloy/config.alloy").read_text()
    code = re.sub(r"//[^\n]*", "", text)
    if "loki.source.file" in code and not re.search(r'stage\.label_drop\s*\{[^}]*"filename"', code):
        fail("monitoring/alloy/config.alloy: loki.source.file adds a `filename` label; drop it (stage.label_drop)")


def main() -> int:
    docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("url-shortener-config"))
    env = cm["data"]

    pod_security(docs)
    rollout_and_shutdown(by, env)
    pool_sizing(by, env)
    service_hides_metrics(by, env)
    postgres_peers_reach_instance_manager(docs)
    versions = read_env(ROOT / "k8s/versions.env")
    valkey_values(versions)
    alloy_labels()

    for e in errors:
        print(f"FAIL {e}")
    print(f"k8s policy: {len(docs)} objects; " + "; ".join(notes))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
