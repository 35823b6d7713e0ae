#!/usr/bin/env bash
# Criterion baseline comparison for CI (self-contained: needs cargo and python3).
#
#   scripts/bench-compare.sh save [NAME]       run the benches, save them as baseline NAME (main)
#   scripts/bench-compare.sh compare [NAME]    run them against NAME; exit 1 on a regression
#
# A regression: a bench whose mean time grew by more than BENCH_THRESHOLD percent
# (default 15) with criterion's 95 % confidence interval of the change entirely
# above zero (so noise alone does not fail a build). Benches with no baseline
# (new ones, or e2e/redirect_cached without services) are reported and skipped.
# BENCH_FILTER narrows the run (a criterion filter, e.g. "router|json").
#
# A CI job runs `save main` on the main branch (keeping target/criterion as a
# cache) and `compare main` on a change. Results live in
# ${CARGO_TARGET_DIR:-target}/criterion/<group>/<bench>/{NAME,change}/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CARGO=${CARGO:-cargo}
THRESHOLD=${BENCH_THRESHOLD:-15}
cmd=${1:-}
name=${2:-main}
crit="${CARGO_TARGET_DIR:-target}/criterion"
filter=()
[[ -n "${BENCH_FILTER:-}" ]] && filter=("${BENCH_FILTER}")

case "$cmd" in
    save)
        "$CARGO" bench -p benches --benches -- --save-baseline "$name" "${filter[@]}"
        echo "bench-compare: saved baseline '$name' under $crit" >&2
        ;;
    compare)
        compgen -G "$crit/*/*/$name" >/dev/null || compgen -G "$crit/*/$name" >/dev/null || {
            echo "bench-compare: no baseline '$name' under $crit; run: $0 save $name" >&2
            exit 2
        }
        # Stale change estimates from an earlier comparison must not count.
        find "$crit" -type d -name change -prune -exec rm -rf {} + 2>/dev/null || true
        "$CARGO" bench -p benches --benches -- --baseline-lenient "$name" "${filter[@]}"
        python3 - "$crit" "$THRESHOLD" <<'PY'
import json, os, sys
root, threshold = sys.argv[1], float(sys.argv[2]) / 100
rows, failed = [], []
for dirpath, dirnames, filenames in os.walk(root):
    if os.path.basename(dirpath) == "change" and "estimates.json" in filenames:
        bench = os.path.relpath(os.path.dirname(dirpath), root)
        mean = json.load(open(os.path.join(dirpath, "estimates.json")))["mean"]
        pe, lo = mean["point_estimate"], mean["confidence_interval"]["lower_bound"]
        bad = pe > threshold and lo > 0
        rows.append((bench, pe, lo, mean["confidence_interval"]["upper_bound"], bad))
        if bad:
            failed.append(bench)
print(f"\n{'bench':44} {'change':>8}  95% CI")
for bench, pe, lo, hi, bad in sorted(rows):
    print(f"{bench:44} {pe * 100:+7.1f}%  [{lo * 100:+.1f}%, {hi * 100:+.1f}%]{'  REGRESSION' if bad else ''}")
if not rows:
    print("no comparisons were made (no bench matched the baseline)")
    sys.exit(2)
if failed:
    print(f"\nbench-compare: {len(failed)} bench(es) slower by more than {threshold * 100:.0f} %: {', '.join(failed)}")
    sys.exit(1)
print(f"\nbench-compare: no regression beyond {threshold * 100:.0f} %")
PY
        ;;
    *)
        sed -n '4,5p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
