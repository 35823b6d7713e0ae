# Reliability (issue 15): a cluster in a box on 127.0.0.1 (PostgreSQL primary +
# standby, Valkey + Sentinels, three instances behind HAProxy) under goose load.
# `make chaos` injects six faults one at a time (~9 min when the build is up to date)
# and writes docs/reliability.md; `make soak` holds 70 % of the measured peak for
# SOAK_MINUTES (30). Not part of `make test`. See docs/reliability.md.
.PHONY: chaos soak

chaos: ## Faults 1-6 against the cluster in a box; the report goes to docs/reliability.md (~9 min)
	scripts/chaos.sh chaos

soak: ## SOAK_MINUTES (30) at 70 % of the measured peak: resources flat, zero errors, zero drops
	scripts/chaos.sh soak
