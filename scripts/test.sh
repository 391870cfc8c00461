#!/usr/bin/env bash
# The project's test command: install what is missing, then run every test against real, throwaway etcd
# members (the tests start their own on free loopback ports; they never touch 127.0.0.1:2379).
#
#   scripts/test.sh                 all tests
#   scripts/test.sh -p watch        one topic (any `cargo nextest run` / `cargo test` arguments pass through)
#
# The tests run the etcd on PATH, or the one TEST_ETCD_BIN names (with etcdctl beside it), such as etcd 3.5.1
# from `scripts/install-deps.sh --etcd35`: TEST_ETCD_BIN=.etcd/bin/3.5.1/etcd scripts/test.sh
#
# With cargo-nextest installed (`cargo install cargo-nextest`), the tests run four at a time across all test
# binaries (see .config/nextest.toml): about 2 minutes on 2 cores instead of about 5 1/2 with `cargo test`,
# which runs one test binary after another. Without it, `cargo test` runs them; the results are the same.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# The article topics' Go twins (crates/<topic>/go) are built by their tests with Debian's Go and etcd's Go
# client; elsewhere those tests fail and say what to install.
if command -v apt-get >/dev/null 2>&1; then
  scripts/install-deps.sh --go
else
  scripts/install-deps.sh
fi
etcd_bin=${TEST_ETCD_BIN:-$(command -v etcd)}
[ "${etcd_bin#/}" = "$etcd_bin" ] && etcd_bin="$root/$etcd_bin" # relative to the repository, as the tests take it
if ! [ -x "$etcd_bin" ]; then
  echo "test.sh: error: TEST_ETCD_BIN=${TEST_ETCD_BIN:-} is not an etcd binary; unset it, or run scripts/install-deps.sh --etcd35 for .etcd/bin/3.5.1/etcd" >&2
  exit 1
fi
echo "test.sh: the tests run $("$etcd_bin" --version | sed -n 1p) (${etcd_bin#"$root"/})"
# The whole workspace, unless arguments such as `-p watch` say what to run.
scope=(--workspace)
[ $# -gt 0 ] && scope=()
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run "${scope[@]}" "$@"
  # nextest does not run doc tests (the compiled examples in lib.rs docs); cargo test does, quickly.
  cargo test "${scope[@]}" --doc "$@"
else
  echo "test.sh: cargo-nextest is not installed, so the tests run one binary at a time (about 5 1/2 minutes);" \
    "\`cargo install cargo-nextest\` makes it about 2" >&2
  cargo test "${scope[@]}" "$@"
fi
