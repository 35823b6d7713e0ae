#!/usr/bin/env python3
"""Helpers of scripts/perf.sh: turn pgbench output into the same JSON as the wrk
scripts' PERFJSON line, take medians over runs, and print the results table.

  report.py pgbench STDOUT LOGPREFIX         -> one JSON line (stdout)
  report.py table ROWS MEASURE_DIR NOTES     -> the markdown table and notes (stdout)
  report.py cpu SERVER.jsonl CEILING.jsonl HZ SRV SRV_USER PG VALKEY CEIL CEIL_USER EVENTS
                                             -> one notes line: CPU per request (stdout)

ROWS has one row per line: scenario<TAB>label<TAB>baseline-label (or -)<TAB>baseline-name.
Each label is MEASURE_DIR/<label>.jsonl, one JSON object per run.
"""
import glob
import json
import os
import re
import statistics
import sys


def pgbench(stdout_path, log_prefix):
    text = open(stdout_path).read()
    tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", text)
    done = re.search(r"number of transactions actually processed: (\d+)", text)
    failed = re.search(r"number of failed transactions: (\d+)", text)
    dur = re.search(r"duration: (\d+) s", text)
    lat = []
    for path in glob.glob(log_prefix + "*"):
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    lat.append(int(parts[2]))
        os.remove(path)
    lat.sort()

    def pct(p):
        if not lat:
            return 0
        return lat[min(len(lat) - 1, int(len(lat) * p / 100))]

    out = {
        "requests": int(done.group(1)) if done else 0,
        "seconds": float(dur.group(1)) if dur else 0,
        "rps": float(tps.group(1)) if tps else 0.0,
        "p50_us": pct(50),
        "p95_us": pct(95),
        "p99_us": pct(99),
        "max_us": lat[-1] if lat else 0,
        "errors": int(failed.group(1)) if failed else (0 if tps else 1),
    }
    print(json.dumps(out))


def load(measure_dir, label):
    path = os.path.join(measure_dir, label + ".jsonl")
    if not os.path.exists(path):
        return []
    return [json.loads(l) for l in open(path) if l.strip()]


def median(runs, key):
    vals = [r.get(key, 0) for r in runs]
    return statistics.median(vals) if vals else None


def ms(us):
    return "-" if us is None else f"{us / 1000:.2f} ms"


def table(rows_path, measure_dir, notes_path):
    lines = [
        "| scenario | req/s | p50 | p99 | errors | baseline | baseline req/s | ratio |",
        "|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for row in open(rows_path):
        row = row.rstrip("\n")
        if not row:
            continue
        scenario, label, base_label, base_name = (row.split("\t") + ["-", "-"])[:4]
        runs = load(measure_dir, label)
        if not runs:
            lines.append(f"| {scenario} | not run | | | | {base_name} | | |")
            continue
        rps = median(runs, "rps")
        errors = sum(r.get("errors", 0) for r in runs)
        base_rps, ratio = "", ""
        if base_label != "-":
            base = load(measure_dir, base_label)
            if base:
                b = median(base, "rps")
                base_rps = f"{b:,.0f}"
                ratio = f"{rps / b:.2f}" if b else ""
        lines.append(
            f"| {scenario} | {rps:,.0f} | {ms(median(runs, 'p50_us'))} | {ms(median(runs, 'p99_us'))} "
            f"| {errors} | {base_name if base_label != '-' else '-'} | {base_rps} | {ratio} |"
        )
    print("\n".join(lines))
    if os.path.exists(notes_path):
        print()
        print(open(notes_path).read().rstrip())


def detail(measure_dir):
    """Every label's runs and medians (p95 too), for the appendix of results.md."""
    print("| measurement | runs (req/s) | median req/s | p50 | p95 | p99 | errors |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for path in sorted(glob.glob(os.path.join(measure_dir, "*.jsonl"))):
        label = os.path.basename(path)[:-6]
        runs = load(measure_dir, label)
        if not runs:
            continue
        each = ", ".join(f"{r['rps']:,.0f}" for r in runs)
        print(
            f"| {label} | {each} | {median(runs, 'rps'):,.0f} | {ms(median(runs, 'p50_us'))} "
            f"| {ms(median(runs, 'p95_us'))} | {ms(median(runs, 'p99_us'))} | {sum(r.get('errors', 0) for r in runs)} |"
        )


def cpu(server_jsonl, ceiling_jsonl, hz, srv, srv_user, pg, valkey, ceil, ceil_user, clicks):
    """CPU ticks summed over the measured runs -> cores busy and microseconds per request."""
    def totals(path):
        runs = [json.loads(l) for l in open(path) if l.strip()]
        return sum(r["requests"] for r in runs), sum(r["seconds"] for r in runs)

    hz = float(hz)
    n_srv, t_srv = totals(server_jsonl)
    n_ceil, t_ceil = totals(ceiling_jsonl)
    srv, srv_user, pg, valkey = (int(x) / hz for x in (srv, srv_user, pg, valkey))
    ceil, ceil_user = int(ceil) / hz, int(ceil_user) / hz
    us = lambda secs, n: secs * 1e6 / n if n else 0
    clicks = int(clicks)
    print(
        f"- CPU during the cached-redirect runs (/proc, user + system): server "
        f"{srv / t_srv:.2f} cores, {us(srv, n_srv):.1f} µs per request ({us(srv_user, n_srv):.1f} in user space); "
        f"PostgreSQL {pg / t_srv:.2f} cores, {us(pg, clicks):.1f} µs per click recorded; "
        f"Valkey {valkey / t_srv:.2f} cores. Ceiling: {ceil / t_ceil:.2f} cores, "
        f"{us(ceil, n_ceil):.1f} µs per request ({us(ceil_user, n_ceil):.1f} in user space)."
    )


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "pgbench":
        pgbench(sys.argv[2], sys.argv[3])
    elif cmd == "table":
        table(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "cpu":
        cpu(*sys.argv[2:13])
    elif cmd == "detail":
        detail(sys.argv[2])
    elif cmd == "median":
        runs = load(sys.argv[2], sys.argv[3])
        print(median(runs, sys.argv[4]) or 0)
    else:
        sys.exit(f"unknown command {cmd}")
