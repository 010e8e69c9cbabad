#!/usr/bin/env bash
# Fuzzes the record parsers (Take Control JSON/XML, mluvii, SuperOffice) for a fixed time with
# cargo fuzz (libFuzzer, no sanitizer: the toolchain is stable). Usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-60}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
mkdir -p corpus/records
cp -n seeds/* corpus/records/ 2>/dev/null || true
cargo fuzz run -s none records corpus/records -- -max_total_time="$secs" -max_len=65536 -timeout=5 -rss_limit_mb=1024
