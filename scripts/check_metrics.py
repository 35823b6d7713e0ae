#!/usr/bin/env python3
"""Ties the monitoring layers to the server's real output.

    check_metrics.py [--promtool PROMTOOL] [--parse-only] [METRICS_FILE]

1. Every PromQL expression in the dashboard (and in the rules) parses: they
   are written, with Grafana's variables substituted, into a temporary rules
   file as recording rules and `promtool check rules` reads it (promtool has
   no standalone expression parser).
2. Every metric name the rules and the dashboard use appears in METRICS_FILE,
   a /metrics page captured from a running server (the server's tests write
   target/metrics-sample.txt). Histogram suffixes (_bucket, _sum, _count) are
   stripped; recording-rule names must be recorded by a rule; names that come
   from elsewhere (Prometheus itself, cAdvisor) are listed in EXTERNAL.
3. The dashboard's data sources are the provisioned ones.

Exits 1 on any failure, naming each.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = sorted((ROOT / "monitoring/rules").glob("*.yml"))
DASHBOARDS = sorted((ROOT / "monitoring/grafana/dashboards").glob("*.json"))
DATASOURCES = ROOT / "monitoring/grafana/provisioning/datasources/datasources.yml"

# Metrics that the server does not export, and who does.
EXTERNAL = {
    "up": "Prometheus (scrape health)",
    "ALERTS": "Prometheus (alert state)",
    "container_cpu_usage_seconds_total": "kubelet cAdvisor",
    "container_spec_cpu_quota": "kubelet cAdvisor",
    "container_spec_cpu_period": "kubelet cAdvisor",
    "container_memory_working_set_bytes": "kubelet cAdvisor",
    "container_spec_memory_limit_bytes": "kubelet cAdvisor",
    # CloudNativePG's instance exporter (job cnpg, :9187) and the Barman Cloud
    # plugin's metrics it serves: names from the operator's default-monitoring
    # queries and docs/src/monitoring.md, the plugin's docs/observability.md.
    "cnpg_collector_up": "CloudNativePG exporter",
    "cnpg_collector_pg_wal": "CloudNativePG exporter",
    "cnpg_collector_pg_wal_archive_status": "CloudNativePG exporter",
    "cnpg_pg_replication_lag": "CloudNativePG exporter (pg_replication query)",
    "cnpg_pg_replication_slots_pg_wal_lsn_diff": "CloudNativePG exporter (pg_replication_slots query)",
    "cnpg_pg_database_size_bytes": "CloudNativePG exporter (pg_database query)",
    "cnpg_pg_stat_archiver_seconds_since_last_archival": "CloudNativePG exporter (pg_stat_archiver query)",
    "barman_cloud_cloudnative_pg_io_last_available_backup_timestamp": "Barman Cloud plugin, via the CloudNativePG exporter",
}

KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
    "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end",
}
SUFFIXES = ("_bucket", "_sum", "_count")


def grafana_to_promql(expr: str) -> str:
    """Substitutes Grafana's variables so the expression is plain PromQL."""
    expr = re.sub(r"\$__(rate_interval|interval|range)\b", "1m", expr)
    expr = re.sub(r"\$\{(\w+)(:\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", ".*", expr)
    return expr


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (a lexer's worth of PromQL)."""
    s = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # ranges and subqueries
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\()?", s):
        name, call = m.group(1), m.group(2)
        if call or name.lower() in KEYWORDS or re.fullmatch(r"\d+[smhdwy]", name):
            continue
        names.add(name)
    return names


def dashboard_queries(path: Path):
    """(panel title, datasource type, expression) of every target and variable."""
    dash = json.loads(path.read_text())
    def ds_type(obj, default="prometheus"):
        ds = obj.get("datasource")
        return ds.get("type", default) if isinstance(ds, dict) else default
    def panels(items):
        for p in items:
            yield p
            yield from panels(p.get("panels", []))
    for p in panels(dash.get("panels", [])):
        for t in p.get("targets", []):
            if t.get("expr"):
                yield p.get("title", "?"), ds_type(t, ds_type(p)), t["expr"], p, t
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = re.fullmatch(r"label_values\((.*),\s*\w+\)", q or "")
        if m:
            yield f"variable {v['name']}", "prometheus", m.group(1), v, v


def rule_exprs():
    recorded = set()
    exprs = []
    for f in RULES:
        for g in yaml.safe_load(f.read_text())["groups"]:
            for r in g["rules"]:
                if "record" in r:
                    recorded.add(r["record"])
                exprs.append((f"{f.name}: {r.get('record') or r.get('alert')}", r["expr"]))
    return recorded, exprs


def parse_check(promtool: str, exprs: list[tuple[str, str]]) -> list[str]:
    rules = [{"record": f"check:expr_{i}", "expr": e} for i, (_, e) in enumerate(exprs)]
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "dashboard-exprs.yml"
        f.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
        out = subprocess.run([promtool, "check", "rules", str(f)], capture_output=True, text=True)
    if out.returncode == 0:
        return []
    errors = []
    text = out.stdout + out.stderr
    for i, (where, e) in enumerate(exprs):
        # promtool names the failing rule by its index in the group.
        if re.search(rf"\b{i}:|check:expr_{i}\b", text):
            errors.append(f"does not parse: {where}: {e}")
    return errors or [f"promtool check rules failed:\n{text}"]


def sample_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        if line.startswith("# TYPE ") or line.startswith("# HELP "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("metrics_file", nargs="?", type=Path)
    ap.add_argument("--promtool", default="promtool")
    ap.add_argument("--parse-only", action="store_true", help="skip the /metrics cross-check")
    args = ap.parse_args()
    if not args.parse_only and not args.metrics_file:
        ap.error("METRICS_FILE is required unless --parse-only")

    errors: list[str] = []
    recorded, rexprs = rule_exprs()
    used: dict[str, str] = {}
    for where, e in rexprs:
        for n in metric_names(e):
            used.setdefault(n, where)

    provisioned = {d["uid"]: d["type"] for d in yaml.safe_load(DATASOURCES.read_text())["datasources"]}
    prom_exprs = []
    for dash in DASHBOARDS:
        for title, kind, expr, panel, target in dashboard_queries(dash):
            for obj in (panel, target):
                ds = obj.get("datasource")
                if isinstance(ds, dict) and provisioned.get(ds.get("uid")) != ds.get("type"):
                    errors.append(f"{dash.name}: {title}: data source {ds} is not provisioned")
            if kind != "prometheus":
                continue  # LogQL: no parser on this machine (docs/deployment.md)
            promql = grafana_to_promql(expr)
            prom_exprs.append((f"{dash.name}: {title}", promql))
            for n in metric_names(promql):
                used.setdefault(n, f"{dash.name}: {title}")

    errors += parse_check(args.promtool, prom_exprs)
    print(f"PromQL: {len(prom_exprs)} dashboard expressions parsed with promtool")

    for n, where in sorted(used.items()):
        if ":" in n and n not in recorded:
            errors.append(f"{where}: {n} looks like a recording rule but no rule records it")

    if not args.parse_only:
        have = sample_names(args.metrics_file)
        checked = 0
        for n, where in sorted(used.items()):
            if ":" in n or n in EXTERNAL:
                continue
            checked += 1
            base = next((n[: -len(s)] for s in SUFFIXES if n.endswith(s)), n)
            if n not in have and base not in have:
                errors.append(f"{where}: metric {n} is not in {args.metrics_file}")
        print(f"metrics: {checked} server metric names found in {args.metrics_file}; "
              f"{sum(n in EXTERNAL for n in used)} external ({', '.join(sorted(n for n in used if n in EXTERNAL))})")

    for e in errors:
        print(f"FAIL {e}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
