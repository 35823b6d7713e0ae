#!/usr/bin/env python3
"""Checks the delivery decisions in .github/workflows that schemas and
actionlint cannot see. Usage: check-workflows.py [WORKFLOW_DIR]
- an image is pushed only by a reusable workflow (on: workflow_call), and
  every job that calls it `needs` every other job of its workflow: nothing is
  built, pushed or deployed from a commit that failed CI;
- a workflow that applies manifests (kubectl apply) is never triggered by a
  push; on workflow_run it requires the triggering run's success; in the one
  that deploys the image every checkout names a ref, and never github.sha (a
  manual run must deploy the commit its image was built from, not the
  dispatch's);
- INGRESS_URL is a required repository variable: no default, checked first;
- the deploy refuses k8s/backup.yaml's placeholder object store;
- the image workflow writes the measured image size to the job summary.
Exits 1 on any failure."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def triggers(wf: dict) -> dict:
    # PyYAML reads the bare key `on` as True.
    on = wf.get("on", wf.get(True, {}))
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return {k: None for k in on}
    return on or {}


def steps(job: dict) -> list[dict]:
    return job.get("steps", []) or []


def main() -> int:
    wdir = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / ".github/workflows"
    files = {f.name: yaml.safe_load(f.read_text()) for f in sorted(wdir.glob("*.yml"))}
    errors: list[str] = []
    pushers = set()

    for name, wf in files.items():
        for jname, job in wf.get("jobs", {}).items():
            for st in steps(job):
                if str(st.get("uses", "")).startswith("docker/build-push-action") \
                        and str(st.get("with", {}).get("push", "")).lower() in ("true", "${{ true }}"):
                    pushers.add(name)
                    on = triggers(wf)
                    if set(on) != {"workflow_call"}:
                        errors.append(f"{name}: pushes an image but is triggered by {sorted(map(str, on))}:"
                                      " only on: workflow_call, called after CI's jobs")
                    summary = " ".join(str(s.get("run", "")) for s in steps(job))
                    if not ("GITHUB_STEP_SUMMARY" in summary and "docker image inspect" in summary):
                        errors.append(f"{name}/{jname}: does not write the measured image size to the job summary")

    callers = {}
    for name, wf in files.items():
        jobs = wf.get("jobs", {})
        for jname, job in jobs.items():
            target = str(job.get("uses", ""))
            if target.startswith("./.github/workflows/") and target.rsplit("/", 1)[1] in pushers:
                callers[name] = jname
                needs = job.get("needs", [])
                needs = [needs] if isinstance(needs, str) else needs
                others = {j for j, o in jobs.items() if j != jname and jname not in (o.get("needs") or [])}
                missing = others - set(needs)
                if missing:
                    errors.append(f"{name}/{jname}: builds the image without waiting for {sorted(missing)}")
                if "make test" not in " ".join(str(s.get("run", "")) for j in jobs.values() for s in steps(j)):
                    errors.append(f"{name}: calls the image build but never runs `make test`")
    for p in pushers:
        if not any(files[c]["jobs"][j].get("uses", "").endswith("/" + p) for c, j in callers.items()):
            errors.append(f"{p}: pushes an image but no workflow calls it after its CI jobs")

    for name, wf in files.items():
        jobs = wf.get("jobs", {})
        text = yaml.safe_dump(wf)
        if "kubectl apply" not in text:
            continue
        on = triggers(wf)
        if "push" in on or "pull_request" in on:
            errors.append(f"{name}: applies manifests on a push or pull request")
        if "workflow_run" in on:
            upstream = set(on["workflow_run"].get("workflows", []))
            ci_names = {files[c].get("name") for c in callers}
            if not upstream or not upstream <= ci_names:
                errors.append(f"{name}: workflow_run on {sorted(upstream)}, not on the workflow that builds"
                              f" the image after CI ({sorted(n for n in ci_names if n)})")
            for jname, job in jobs.items():
                cond = str(job.get("if", ""))
                if "workflow_run.conclusion == 'success'" not in cond:
                    errors.append(f"{name}/{jname}: runs without requiring the triggering run's success")
        if "image-ref" not in text:
            continue  # applies manifests without an image (deploy-monitoring.yml)
        for jname, job in jobs.items():
            for st in steps(job):
                if str(st.get("uses", "")).startswith("actions/checkout"):
                    ref = str(st.get("with", {}).get("ref", ""))
                    if not ref or "github.sha" in ref:
                        errors.append(f"{name}/{jname}: checks out {ref or 'the default ref'}, not the commit"
                                      " the deployed image was built from")
            env = job.get("env", {})
            if "INGRESS_URL" in env or "INGRESS_URL" in text:
                value = str(env.get("INGRESS_URL", ""))
                if value.replace(" ", "") != "${{vars.INGRESS_URL}}":
                    errors.append(f"{name}/{jname}: INGRESS_URL must be exactly the repository variable"
                                  f" (no default), is {value!r}")
                runs = [str(s.get("run", "")) for s in steps(job)]
                if not any(re.search(r"-n \$\{INGRESS_URL", r) and "exit 1" in r for r in runs):
                    errors.append(f"{name}/{jname}: does not fail when INGRESS_URL is unset")
            if ".invalid" not in " ".join(str(s.get("run", "")) for s in steps(job)):
                errors.append(f"{name}/{jname}: applies k8s/ without refusing the placeholder object store (.invalid)")

    for e in errors:
        print(f"FAIL {e}")
    print(f"workflows: {len(files)} checked; image pushed by {sorted(pushers)}, called from "
          f"{sorted(f'{c}/{j}' for c, j in callers.items())}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
