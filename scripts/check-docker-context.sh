#!/usr/bin/env bash
# Replays docker/Dockerfile's build context without a Docker engine, in seconds rather than a
# full image build: exports the checkout's files (tracked plus untracked-not-ignored, as a clean
# clone has them), drops what .dockerignore drops, performs the Dockerfile's COPY instructions
# into a scratch directory, and runs the build stage's cargo command there as `cargo check`
# (same manifest, lock file, features and binary). A file the build needs but the context
# lacks fails here, as it would in `docker build`. CI runs it (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

python3 - "$scratch" <<'PY'
import fnmatch, os, re, shlex, shutil, subprocess, sys
scratch = sys.argv[1]
ctx = os.path.join(scratch, "context")
files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"],
                       check=True, capture_output=True).stdout.decode().split("\0")
files = [f for f in files if f and os.path.isfile(f)]

# .dockerignore: Go filepath.Match patterns with `**`; `dir/` and `dir` also exclude below.
pats = []
for line in open(".dockerignore"):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    if line.startswith("!"):
        sys.exit(".dockerignore: negated patterns are not replayed here; extend this script")
    pats.append(line.rstrip("/").lstrip("/"))
def ignored(path):
    parts = path.split("/")
    for p in pats:
        for i in range(1, len(parts) + 1):
            head = "/".join(parts[:i])
            if fnmatch.fnmatchcase(head, p):
                return True
            if p.startswith("**/") and fnmatch.fnmatchcase(head, p[3:]):
                return True
            if p.startswith("**/") and fnmatch.fnmatchcase(parts[i - 1], p[3:]):
                return True
    return False
kept = [f for f in files if not ignored(f)]
for f in kept:
    os.makedirs(os.path.join(ctx, os.path.dirname(f)), exist_ok=True)
    shutil.copy2(f, os.path.join(ctx, f))
print(f"context: {len(kept)} of {len(files)} files after .dockerignore")

# The Dockerfile's COPY instructions from the context, stage by stage.
text = re.sub(r"\\\n", " ", open("docker/Dockerfile").read())
stage, workdir, build_runs = None, "/", []
for raw in text.splitlines():
    line = raw.strip()
    if not line or line.startswith("#"):
        continue
    op, _, rest = line.partition(" ")
    op = op.upper()
    if op == "FROM":
        stage = rest.split()[-1] if " AS " in rest.upper() else rest
        workdir = "/"
        os.makedirs(os.path.join(scratch, "stages", stage), exist_ok=True)
    elif op == "WORKDIR":
        workdir = os.path.join(workdir, rest.strip())
    elif op == "COPY" and "--from=" not in rest:
        args = shlex.split(rest)
        srcs, dest = args[:-1], args[-1]
        target = os.path.join(scratch, "stages", stage, (dest if dest.startswith("/") else os.path.join(workdir, dest)).lstrip("/"))
        for src in srcs:
            path = os.path.normpath(os.path.join(ctx, src))
            if not os.path.exists(path):
                sys.exit(f"docker/Dockerfile: COPY {src} (stage {stage}): not in the build context (check .dockerignore)")
            if os.path.isdir(path):
                shutil.copytree(path, target, dirs_exist_ok=True)
            else:
                os.makedirs(target if dest.endswith("/") else os.path.dirname(target), exist_ok=True)
                shutil.copy2(path, target)
    elif op == "RUN" and stage == "build":
        build_runs.append(rest)
    if op == "WORKDIR" and stage == "build":
        open(os.path.join(scratch, "build_workdir"), "w").write(workdir)
if not any("cargo build" in r for r in build_runs):
    sys.exit("docker/Dockerfile: the build stage runs no `cargo build`")
PY

workdir=$(cat "$scratch/build_workdir")
src="$scratch/stages/build$workdir"
# The stage's cargo build (production: no default features; and the demo image's, with them), checked (not compiled to a binary) with a cache kept under target/.
( cd "$src" && CARGO_TARGET_DIR="$root/target/docker-context" \
    cargo check --release --locked --no-default-features --bin sessionsync --quiet \
    && cargo check --release --locked --bin sessionsync --quiet )
echo "docker build context: OK (the build stage's cargo command succeeds on exactly what it copies)"
