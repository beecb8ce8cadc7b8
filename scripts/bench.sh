#!/usr/bin/env bash
# Runs every benchmark group against the real servers (provisioned as for
# the tests), in one run, and prints the medians and ratios BENCHMARKS.md
# records (only this run's results: criterion keeps earlier ones).
# Extra arguments go to `cargo bench`; honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/services.sh
target=${CARGO_TARGET_DIR:-target}
mkdir -p "$target"
touch "$target/bench.start"
start=$(date +%s)
cargo bench -p octopus-benches "$@" 2>&1 | tee "$target/bench.log"
echo "bench: the run took $(( $(date +%s) - start )) s" | tee -a "$target/bench.log"
python3 scripts/bench_report.py "$target/criterion" --since "$target/bench.start" \
  --log "$target/bench.log"
