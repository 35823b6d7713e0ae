# The fresh-machine check (issue 10): `make test` in a clean clone of HEAD, with
# what earlier runs installed on this machine (Valkey, Redis, Prometheus and
# Alertmanager packages, the lint tools, .tools/, .local/) hidden in a private
# mount namespace, so the README's promise is tested, not assumed. Needs root;
# 10-20 minutes. The header of scripts/fresh-check.sh says what is hidden and kept.
.PHONY: fresh-check
fresh-check: ## make test as on a fresh machine: clean clone, installed tools hidden (root, 10-20 min)
	scripts/fresh-check.sh
