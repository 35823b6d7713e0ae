#!/usr/bin/env bash
# Proves monitoring/alertmanager.yml's inhibition against a real Alertmanager
# on 127.0.0.1 (amtool has no offline inhibition test): a critical alert
# silences its warning twin, and ServiceDown (no `family`) silences nothing.
# Usage: scripts/check-alertmanager-inhibition.sh ALERTMANAGER_BIN AMTOOL_BIN [DATA_ROOT]
# DATA_ROOT: the directory Alertmanager runs in; lint-deploy.sh passes the
# unpacked Debian package, whose relocated binary reads its default templates
# from DATA_ROOT/usr/share/prometheus/alertmanager (see relocate_alertmanager).
set -euo pipefail

am_bin=$1 amtool=$2 data_root=${3:-.}
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
pid=
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

# Webhook files point at a closed loopback port: notifications fail, quietly.
for f in discord-default-webhook-url discord-critical-webhook-url; do
  echo "http://127.0.0.1:9/webhook" > "$tmp/$f"
done
echo "http://127.0.0.1:9/heartbeat" > "$tmp/heartbeat-url"
sed -e "s#/etc/alertmanager/secrets/#$tmp/#" -e "s#/etc/alertmanager/heartbeat/#$tmp/#" \
  "$root/monitoring/alertmanager.yml" > "$tmp/alertmanager.yml"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
(cd "$data_root" && exec "$am_bin" --config.file="$tmp/alertmanager.yml" --storage.path="$tmp/data" \
  --web.listen-address="127.0.0.1:$port" --cluster.listen-address= \
  --log.level=warn) >"$tmp/am.log" 2>&1 &
pid=$!

for _ in $(seq 50); do
  python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "$url/-/ready" 2>/dev/null && break
  sleep 0.2
done
python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "$url/-/ready" 2>/dev/null || { cat "$tmp/am.log"; echo "alertmanager did not start" >&2; exit 1; }

add() { "$amtool" alert add --alertmanager.url="$url" "$@" >/dev/null; }
add alertname=HighErrorRateCritical severity=critical family=error-rate job=url-shortener service=url-shortener
add alertname=HighErrorRate severity=warning family=error-rate job=url-shortener service=url-shortener
add alertname=ServiceDown severity=critical job=url-shortener service=url-shortener
add alertname=HighLatency severity=warning job=url-shortener service=url-shortener
add alertname=Watchdog severity=none

# The inhibitor learns of alerts asynchronously: poll until the expected
# inhibition shows (up to 15 s), then judge every alert once.
python3 - "$url/api/v2/alerts" <<'PY'
import json, sys, time, urllib.request
expect = {"HighErrorRate": True, "HighErrorRateCritical": False, "ServiceDown": False, "HighLatency": False,
          "Watchdog": False}
deadline = time.monotonic() + 15
while True:
    alerts = {a["labels"]["alertname"]: a["status"] for a in json.load(urllib.request.urlopen(sys.argv[1], timeout=5))}
    got = {name: bool(alerts.get(name, {}).get("inhibitedBy")) for name in expect}
    if (got == expect and len(alerts) == len(expect)) or time.monotonic() > deadline:
        break
    time.sleep(0.2)
time.sleep(0.5)  # and nothing else becomes inhibited a moment later
alerts = {a["labels"]["alertname"]: a["status"] for a in json.load(urllib.request.urlopen(sys.argv[1], timeout=5))}
bad = 0
for name, inhibited in expect.items():
    if name not in alerts:
        print(f"  BAD {name}: not received"); bad += 1; continue
    g = bool(alerts[name].get("inhibitedBy"))
    ok = g == inhibited
    bad += not ok
    print(f"  {'ok ' if ok else 'BAD'} {name}: {'inhibited' if g else 'not inhibited'} (expected {'inhibited' if inhibited else 'not inhibited'})")
sys.exit(1 if bad else 0)
PY
