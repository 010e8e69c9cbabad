#!/usr/bin/env bash
# Webhooks under load (issue 14): RATE changes per second for SECONDS s against the SuperOffice
# and mluvii simulators, which push signed events to the in-process listener; then a flood of
# forged requests (1,000/s for 10 s) while real events go on. Prints change → committed p50/p99,
# changes lost, rows written per change (a session written twice would show), listener outcomes and
# peak memory. See examples/webhook_bench.rs for the method.
# Usage: scripts/bench-webhooks.sh [RATE] [SECONDS] [SESSIONS]   (defaults 50 60 2000; needs
# DATABASE_URL or a local server)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q --example webhook_bench
exec ./target/release/examples/webhook_bench "${1:-50}" "${2:-60}" "${3:-2000}"
