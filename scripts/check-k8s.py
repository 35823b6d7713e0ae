#!/usr/bin/env python3
"""Checks the rendered application manifests for the decisions that schemas
cannot see. Usage: check-k8s.py RENDERED_APP.yaml
- every pod template meets the restricted Pod Security profile;
- the Deployment never drops below its replicas during a rollout;
- terminationGracePeriodSeconds > preStop sleep + SHUTDOWN_TIMEOUT_SECONDS;
- (replicas + maxSurge) x DATABASE_POOL_MAX fits PostgreSQL's max_connections
  less superuser_reserved_connections (3) and the operator's own (10);
- the Service does not expose the metrics port.
Exits 1 on any failure."""
from __future__ import annotations

import sys

import yaml

RESERVED = 3 + 10


def main() -> int:
    docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    errors = []
    for d in docs:
        spec = d.get("spec", {}).get("template", {}).get("spec")
        if not spec:
            continue
        where = f"{d['kind']} {d['metadata']['name']}"
        psc = spec.get("securityContext", {})
        if not psc.get("runAsNonRoot") or psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            errors.append(f"{where}: pod needs runAsNonRoot and RuntimeDefault seccomp")
        if spec.get("automountServiceAccountToken") is not False:
            errors.append(f"{where}: service-account token is mounted")
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            sc = c.get("securityContext", {})
            if sc.get("allowPrivilegeEscalation") is not False or not sc.get("readOnlyRootFilesystem") \
                    or sc.get("capabilities", {}).get("drop") != ["ALL"]:
                errors.append(f"{where}/{c['name']}: needs no privilege escalation, read-only root, drop ALL")
            if not c.get("resources", {}).get("limits"):
                errors.append(f"{where}/{c['name']}: no resource limits")

    dep = by[("Deployment", "url-shortener")]
    ru = dep["spec"]["strategy"].get("rollingUpdate", {})
    if dep["spec"]["strategy"]["type"] != "RollingUpdate" or ru.get("maxUnavailable") != 0:
        errors.append("Deployment: must be RollingUpdate with maxUnavailable 0")
    pod = dep["spec"]["template"]["spec"]
    app = next(c for c in pod["containers"] if c["name"] == "url-shortener")
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("url-shortener-config"))
    env = cm["data"]
    sleep = app["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = int(env.get("SHUTDOWN_TIMEOUT_SECONDS", 20))
    if pod["terminationGracePeriodSeconds"] <= sleep + drain:
        errors.append(f"terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} <= preStop {sleep} + drain {drain}")
    pg = by[("Cluster", "url-shortener-db")]
    max_conn = int(pg["spec"]["postgresql"]["parameters"]["max_connections"])
    pods = dep["spec"]["replicas"] + int(ru.get("maxSurge", 0))
    pool = int(env["DATABASE_POOL_MAX"])
    if pods * pool > max_conn - RESERVED:
        errors.append(f"{pods} pods x DATABASE_POOL_MAX {pool} = {pods * pool} > max_connections {max_conn} - {RESERVED}")
    svc = by[("Service", "url-shortener")]
    metrics_port = env.get("METRICS_PORT")
    for p in svc["spec"]["ports"]:
        if p.get("targetPort") in ("metrics", metrics_port, int(metrics_port or 0)):
            errors.append("Service exposes the metrics port")

    for e in errors:
        print(f"FAIL {e}")
    print(f"k8s policy: {len(docs)} objects; {pods} pods x {pool} connections = {pods * pool} of {max_conn - RESERVED} usable")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
