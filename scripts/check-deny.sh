#!/usr/bin/env bash
# Supply-chain checks (CI runs it): `cargo deny check` for licences, bans (duplicate versions are
# reported), sources (crates.io only) and advisories, offline, against the RustSec advisory
# database snapshot in ../shared/rustsec-advisory-db (its SNAPSHOT file names the commit and date).
# cargo-deny reads its advisory database as a git checkout under deny.toml's db-path: the snapshot
# is copied there as a local repository whose one commit carries the snapshot's date (nothing is
# fetched). cargo-deny itself is installed at the version pinned here when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_DENY_VERSION=0.20.2
SNAPSHOT=${RUSTSEC_SNAPSHOT:-../shared/rustsec-advisory-db}

if ! cargo deny --version 2>/dev/null | grep -qx "cargo-deny $CARGO_DENY_VERSION"; then
  echo "installing cargo-deny $CARGO_DENY_VERSION (crates.io)" >&2
  cargo install --locked --quiet cargo-deny --version "$CARGO_DENY_VERSION"
fi
[ -d "$SNAPSHOT/crates" ] || { echo "no RustSec snapshot at $SNAPSHOT (set RUSTSEC_SNAPSHOT)" >&2; exit 1; }
commit=$(sed -n 's/^commit: //p' "$SNAPSHOT/SNAPSHOT")
date=$(sed -n 's/^committed: //p' "$SNAPSHOT/SNAPSHOT")
# The directory cargo-deny derives from the database's URL (deny.toml: db-urls).
db=target/advisory-dbs/advisory-db-3157b0e258782691
if [ "$(cat "$db/.snapshot-commit" 2>/dev/null)" != "$commit" ]; then
  rm -rf "$db"
  mkdir -p "$db"
  cp -r "$SNAPSHOT/crates" "$db/"
  (
    cd "$db"
    git init -q
    git add crates
    GIT_AUTHOR_DATE="${date}T00:00:00Z" GIT_COMMITTER_DATE="${date}T00:00:00Z" \
      git -c user.name=snapshot -c user.email=snapshot@localhost commit -q -m "RustSec advisory-db $commit"
  )
  echo "$commit" >"$db/.snapshot-commit"
fi
echo "advisories: RustSec snapshot $commit of $date (offline)"
cargo deny --offline check --hide-inclusion-graph --show-stats advisories licenses bans sources
