#!/usr/bin/env bash
# The project's test command: install what is missing, then run every test against real, throwaway etcd
# members (the tests start their own on free loopback ports; they never touch 127.0.0.1:2379).
#
#   scripts/test.sh                 all tests
#   scripts/test.sh -p watch        one topic (any `cargo test` arguments pass through)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/install-deps.sh
cargo test --workspace "$@"
