#!/usr/bin/env bash
# Makes sure the servers the tests talk to are running. Idempotent.
set -euo pipefail
echo "no services needed yet"
