#!/usr/bin/env bash
# The project's one test command: formatting, lints, docs and every test,
# against real servers that scripts/services.sh provisions first.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "services"
./scripts/services.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps

step "cargo test"
cargo test --workspace --all-features -- --skip chaos

step "chaos test (OCTOPUS_CHAOS_SECS=${OCTOPUS_CHAOS_SECS:-15})"
cargo test -p octopus-adapters --all-features --test chaos -- --nocapture chaos

step "history-checked chaos (every fault, crash states)"
cargo test -p octopus-adapters --all-features --test history_chaos -- --nocapture --exact chaos_with_every_fault_keeps_the_history

step "quickstart"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
OCTOPUS_QUICKSTART_DB="$tmp/quickstart.db" cargo run --quiet --example quickstart

step "resilient example (MySQL outage through a fault proxy)"
cargo run --quiet --example resilient --features resilient

step "resilient example on PostgreSQL (one changed URL)"
OCTOPUS_PRIMARY_URL="${OCTOPUS_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}" \
  cargo run --quiet --example resilient --features resilient,postgres

printf '\nall checks passed\n'
