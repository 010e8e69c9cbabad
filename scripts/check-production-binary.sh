#!/usr/bin/env bash
# The production binary carries no simulator (issue 43): the container image builds with
# `--no-default-features` (docker/Dockerfile), and a binary built with the image's own cargo
# flags must (1) link nothing of the `sessionsync-sim` crate and (2) refuse `demo` and
# `simulate`, saying why. The flags are read from the Dockerfile, so the image cannot drift from
# what is checked here. A debug build: the features, not the profile, decide what is linked
# (cargo keeps it apart from the default-feature build, so neither rebuilds the other).
set -euo pipefail
cd "$(dirname "$0")/.."
flags=$(grep -o 'cargo build [^\\&]*' docker/Dockerfile | head -1)
case "$flags" in
  *--no-default-features*) ;;
  *) echo "docker/Dockerfile builds with the default features (\"$flags\"): the image would carry the simulators; add --no-default-features" >&2; exit 1 ;;
esac
# The features it adds come from a build argument whose default must be none.
if ! grep -qx 'ARG SESSIONSYNC_FEATURES=""' docker/Dockerfile; then
  echo "docker/Dockerfile: ARG SESSIONSYNC_FEATURES must default to \"\" (the production image has no simulator)" >&2
  exit 1
fi
cargo build --quiet --locked --no-default-features --bin sessionsync
bin=target/debug/sessionsync
if grep -q -a 'sessionsync_sim' "$bin"; then
  echo "$bin (built as docker/Dockerfile builds it) links the sessionsync-sim crate" >&2
  exit 1
fi
for cmd in demo simulate; do
  set +e
  out=$("$bin" "$cmd" 2>&1)
  rc=$?
  set -e
  if [ "$rc" != 2 ] || ! grep -q "carries no simulator" <<<"$out"; then
    echo "\`sessionsync $cmd\` on the production build: exit $rc, expected 2 and \"carries no simulator\":" >&2
    echo "$out" >&2
    exit 1
  fi
done
if "$bin" --help | grep -qE '^\s+(demo|simulate)\b'; then
  echo "the production build's --help lists demo or simulate" >&2
  exit 1
fi
echo "production binary: no simulator linked; demo and simulate refused with the reason"
