#!/usr/bin/env bash
# Keeps the build quick for a workshop on a small machine. Two checks:
#
# 1. No heavy feature comes back: a dependency's default features that nobody here needs (tokio's `full`,
#    clap's colors, env_logger's regex filters, tonic's server) can add tens of seconds to a cold build, and
#    so does etcd-client's build-time code generator, which vendor/etcd-client replaces.
# 2. Switching between the tests and a topic rebuilds only the topic: every member must resolve the same
#    dependency features, or `cargo run -p watch` after `cargo test` compiles its own copy of tokio, hyper,
#    tonic and etcd-client. Run this after the tests were built (CI runs it after scripts/test.sh).
#
#   scripts/check-build.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
status=0

echo "== heavy dependency features"
tree=$(cargo tree --workspace -e features,normal --prefix none 2>/dev/null)
# The crates alone: what every topic links (normal), and that plus what is compiled to build them (build).
normal=$(cargo tree --workspace -e normal --prefix none 2>/dev/null)
normal_and_build=$(cargo tree --workspace -e normal,build --prefix none 2>/dev/null)
# `crate feature "name"` lines that must not appear, each with the reason it is refused.
heavy=(
  'tokio feature "full"|tokio `full` builds every tokio module; list the features used in [workspace.dependencies]'
  'clap feature "color"|clap colors pull anstream & co.; not needed for --help'
  'clap feature "default"|clap default features; pick the ones used (std, derive, env, help, usage, error-context, suggestions)'
  'env_logger feature "regex"|env_logger regex filters build the regex crate; RUST_LOG=debug needs no regex'
  'env_logger feature "default"|env_logger default features include regex'
  'env_logger feature "humantime"|env_logger humantime builds jiff for clock timestamps; etcd-connect logs seconds since start'
  'tonic feature "server"|tonic'"'"'s gRPC server (hyper server, socket2): a client needs only "channel"; see vendor/etcd-client'
  'tonic feature "router"|tonic'"'"'s axum router: a client needs only "channel"; see vendor/etcd-client'
)
for entry in "${heavy[@]}"; do
  pattern=${entry%%|*}
  why=${entry#*|}
  if grep -qF "$pattern" <<<"$tree"; then
    echo "check-build: $pattern is enabled: $why" >&2
    echo "  enabled through: $(cargo tree --workspace -e features,normal -i "${pattern%% *}" 2>/dev/null | grep -F "$pattern" -A3 | head -4 | tr -s ' ' | tr '\n' ' ')" >&2
    status=1
  fi
done
if grep -qE '^regex v' <<<"$normal"; then
  echo "check-build: the regex crate is a normal dependency again; find who wants it: cargo tree -i regex" >&2
  status=1
fi
# etcd-client's build script compiles a protobuf code generator (prost-build, regex, petgraph, ...) and runs
# protoc on every cold build; vendor/etcd-client has its output checked in instead.
if grep -qE '^(prost-build|tonic-build|tonic-prost-build) v' <<<"$normal_and_build"; then
  echo "check-build: a protobuf code generator is built again (is [patch.crates-io] etcd-client = vendor/etcd-client gone?): cargo tree -e build -i prost-build" >&2
  status=1
fi
# TLS: etcd-client's `tls` feature (rustls with ring). aws-lc-rs needs CMake and builds for minutes on 2
# cores; openssl-sys ties every topic to the system's OpenSSL headers.
for crate in aws-lc-rs aws-lc-sys openssl-sys; do
  if grep -qE "^$crate v" <<<"$normal"; then
    echo "check-build: $crate is a dependency; keep etcd-client's \`tls\` feature (rustls with ring): cargo tree -i $crate" >&2
    status=1
  fi
done
[ $status -eq 0 ] && echo "   ok: no heavy feature enabled"

echo "== switching between tests and a topic rebuilds only the topic"
cargo build --workspace --all-targets --quiet
for dir in crates/*/; do
  topic=$(basename "$dir")
  [ -f "$dir/src/main.rs" ] || continue
  touch "$dir/src/main.rs"
  compiled=$(cargo build -p "$topic" 2>&1 | sed -n 's/^ *Compiling \([^ ]*\) .*/\1/p' | sort -u | tr '\n' ' ')
  if [ "$compiled" != "$topic " ]; then
    echo "check-build: \`cargo build -p $topic\` after the workspace build compiled: ${compiled:-nothing}(expected only $topic)" >&2
    echo "  a member enables other dependency features than the rest; declare them once in [workspace.dependencies]" >&2
    status=1
  else
    echo "   ok: cargo build -p $topic compiled only $topic"
  fi
done
exit $status
