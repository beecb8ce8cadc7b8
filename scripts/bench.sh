#!/usr/bin/env bash
# Runs every benchmark group against the real servers (provisioned as for
# the tests) and prints the medians and ratios BENCHMARKS.md records.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/services.sh
cargo bench -p octopus-benches "$@" 2>&1 | tee target/bench.log
python3 scripts/bench_report.py target/criterion
