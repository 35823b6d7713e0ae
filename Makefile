# Entry points. Local services live in .local/PROFILE (scripts/services.sh);
# the heavy lifting is in scripts/, so each target is one readable command.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
export CARGO

# Other helpers add targets in mk/*.mk (e.g. lint-deploy in mk/deploy.mk).
-include mk/*.mk
# `make test` runs lint-deploy when some mk/*.mk defines it.
HAVE_LINT_DEPLOY := $(shell grep -ls '^lint-deploy[[:space:]]*:' mk/*.mk 2>/dev/null)
export HAVE_LINT_DEPLOY

.DEFAULT_GOAL := help
.PHONY: help run stop test lint fmt build clean-local services-status

help:
	@echo "make run          dev services, build, migrate, seed, serve on PORT (default 5000)"
	@echo "make stop         stop the dev, test and perf services"
	@echo "make test         lint + all tests against throwaway services (what CI runs)"
	@echo "make lint         cargo fmt --check and clippy -D warnings"
	@echo "make fmt          cargo fmt"
	@echo "make build        release build"
	@echo "make clean-local  stop services and delete .local/"
	@echo "services: scripts/services.sh start|stop|status|env PROFILE (dev, test, perf)"

run:
	scripts/run.sh

stop:
	for p in dev test perf; do scripts/services.sh stop $$p; done

test:
	scripts/test.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

build:
	$(CARGO) build --release -p url-shortener

services-status:
	for p in dev test perf; do scripts/services.sh status $$p || true; done

clean-local:
	for p in dev test perf; do scripts/services.sh wipe $$p; done
	rm -rf .local
