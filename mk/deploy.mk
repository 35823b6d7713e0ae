# Deployment and monitoring checks (issue 5). The Makefile includes mk/*.mk,
# and `make test` runs `lint-deploy` when this target exists.
.PHONY: lint-deploy
lint-deploy: ## Check k8s/, monitoring/, the Dockerfile, compose files and workflows with the real tools
	bash scripts/lint-deploy.sh
