# Performance (issue 4): criterion benches, their baseline comparison, and the load
# harness. The Makefile includes mk/*.mk; PERF.md says what the figures mean.
.PHONY: bench bench-compare perf perf-clicks

bench: ## Criterion benches of the hot paths (< 3 min); the e2e redirect bench uses the perf services when they run
	scripts/perf/bench.sh

bench-compare: ## Compare the benches with the saved baseline `main`; fails on a regression > BENCH_THRESHOLD % (15)
	scripts/bench-compare.sh compare $${BENCH_BASELINE:-main}

perf: ## Load harness: perf services, seed, server vs ceiling and pgbench with wrk (perf/results.md), then perf-clicks
	scripts/perf.sh
	PERF_SKIP_BUILD=1 scripts/perf/clicks.sh

perf-clicks: ## Issue 11's click targets: PostgreSQL CPU per click (raw off/on), storage per click, analytics p99; writes perf/clicks.md
	scripts/perf/clicks.sh
