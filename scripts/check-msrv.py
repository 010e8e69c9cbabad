#!/usr/bin/env python3
"""Checks `rust-version` (CI runs it).

This machine has one Rust toolchain and cannot fetch another, so the minimum is not proven by a
build with that version. What is checked instead: every workspace package declares the same
`rust-version`, at least 1.85 (edition 2024), and at least the `rust-version` every dependency in
Cargo.lock declares for itself (a dependency that needs a newer compiler raises ours). Exits 1
naming each problem.
"""
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def version(s):
    return tuple(int(x) for x in s.split(".")[:3]) + (0,) * (3 - len(s.split(".")))


meta = json.loads(subprocess.run(
    ["cargo", "metadata", "--format-version", "1", "--locked"],
    cwd=ROOT, capture_output=True, text=True, check=True).stdout)
members = set(meta["workspace_members"])
ours = {p["name"]: p.get("rust_version") for p in meta["packages"] if p["id"] in members}
problems = []
declared = set(ours.values())
if None in declared or len(declared) != 1:
    problems.append(f"workspace packages declare different or no rust-version: {ours}")
msrv = version(max(v for v in declared if v) if declared - {None} else "0")
if msrv < (1, 85, 0):
    problems.append(f"rust-version {msrv} is below 1.85, which edition 2024 needs")
needs = sorted(((version(p["rust_version"]), p["name"], p["version"]) for p in meta["packages"]
                if p["id"] not in members and p.get("rust_version")), reverse=True)
for v, name, ver in needs:
    if v > msrv:
        problems.append(f"{name} {ver} needs Rust {'.'.join(map(str, v))}, above our rust-version")
for p in problems:
    print(p, file=sys.stderr)
if problems:
    sys.exit(1)
top = needs[0] if needs else None
print(f"msrv: rust-version {'.'.join(map(str, msrv[:2]))} for {len(ours)} packages; the highest a dependency needs is "
      f"{'.'.join(map(str, top[0][:2]))} ({top[1]} {top[2]})" if top else "msrv: no dependency declares one")
