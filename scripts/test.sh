#!/usr/bin/env bash
# Runs the whole test suite against a real PostgreSQL (scripts/with-postgres.sh finds or starts
# one: $TEST_DATABASE_URL, else 127.0.0.1:5432, else a private throw-away cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
exec scripts/with-postgres.sh cargo test --all-targets --features fault-points "$@"
