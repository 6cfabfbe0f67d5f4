#!/usr/bin/env bash
# The one command that runs every test on a fresh machine: it installs what is
# missing (scripts/dev-deps.sh), then runs the whole workspace's tests, which
# start their own throwaway Postgres cluster (or use WEFT_TEST_DATABASE_URL).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/dev-deps.sh
cargo test --workspace "$@"
