# The alert check (issue 6): proves the alert rules and Alertmanager routing of
# monitoring/ end to end on 127.0.0.1, time-scaled; takes minutes, so it is not
# part of `make test`. ARGS=--real-durations runs it unscaled (about 45 min, estimated);
# ARGS='--prometheus URL --alertmanager URL --host URL' watches a cluster instead.
# See loadtest/README.md#alert-check.
.PHONY: alert-check
alert-check: ## Do the alerts fire, reach the right receiver and resolve? (minutes)
	scripts/alert-check.sh $(ARGS)
