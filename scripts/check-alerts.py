#!/usr/bin/env python3
"""Checks what promtool does not: every alert in monitoring/rules has a
severity, a summary, a description and a runbook_url whose section exists in
docs/runbook.md; every warning/critical `family` pair is complete; and the
unit tests in monitoring/tests make every alert fire and stay silent; the
required alerts (REQUIRED) exist.
Exits 1 on any failure."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


# Alerts that must exist: the PostgreSQL set (issue 12) watches what
# CloudNativePG and its Barman Cloud plugin export.
REQUIRED = {"PostgresInstanceDown", "PostgresReplicationLag", "PostgresSlotRetainingWAL",
            "PostgresVolumeNearFull", "PostgresBackupTooOld", "PostgresWALArchivingStalled", "Watchdog"}
# Always firing by design (severity none): tested firing, never silent.
ALWAYS_FIRING = {"Watchdog"}


def main() -> int:
    errors = []
    anchors = {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.*)$", (ROOT / "docs/runbook.md").read_text(), re.M)}
    alerts = {}
    for f in sorted((ROOT / "monitoring/rules").glob("*.yml")):
        for g in yaml.safe_load(f.read_text())["groups"]:
            for r in g["rules"]:
                if "alert" in r:
                    alerts[r["alert"]] = r
    for name in sorted(REQUIRED - set(alerts)):
        errors.append(f"{name}: required alert is missing")
    families: dict[str, set[str]] = {}
    for name, r in alerts.items():
        labels, ann = r.get("labels", {}), r.get("annotations", {})
        if name in ALWAYS_FIRING:
            if labels.get("severity") != "none" or r.get("expr") != "vector(1)":
                errors.append(f"{name}: must be `vector(1)` with severity none (the heartbeat)")
        elif labels.get("severity") not in ("warning", "critical"):
            errors.append(f"{name}: severity must be warning or critical")
        for key in ("summary", "description", "runbook_url"):
            if not ann.get(key):
                errors.append(f"{name}: annotation {key} is missing")
        url = ann.get("runbook_url", "")
        m = re.fullmatch(r"https://\S+/docs/runbook\.md#([\w-]+)", url)
        if not m:
            errors.append(f"{name}: runbook_url {url!r} does not point at a section of docs/runbook.md")
        elif m.group(1) not in anchors:
            errors.append(f"{name}: docs/runbook.md has no section #{m.group(1)}")
        if "family" in labels:
            families.setdefault(labels["family"], set()).add(labels.get("severity"))
    for fam, sev in families.items():
        if sev != {"warning", "critical"}:
            errors.append(f"family {fam}: needs one warning and one critical alert, has {sorted(sev)}")

    fires, silent = set(), set()
    for f in sorted((ROOT / "monitoring/tests").glob("*.yml")):
        for t in yaml.safe_load(f.read_text()).get("tests", []):
            for a in t.get("alert_rule_test", []):
                (fires if a.get("exp_alerts") else silent).add(a["alertname"])
    for name in alerts:
        if name not in fires:
            errors.append(f"{name}: no unit test makes it fire")
        if name not in silent and name not in ALWAYS_FIRING:
            errors.append(f"{name}: no unit test keeps it silent")
    for name in (fires | silent) - set(alerts):
        errors.append(f"tests name an alert that does not exist: {name}")

    for e in errors:
        print(f"FAIL {e}")
    print(f"alerts: {len(alerts)} checked (annotations, runbook sections, tests firing and silent)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
