#!/usr/bin/env bash
# Makes vendor/etcd-client: crates.io's etcd-client, with two changes that only make it build faster.
# Every topic gets it through `[patch.crates-io]` in the workspace's Cargo.toml; the API is the same, so
# what you copy from a topic into your own service works with crates.io's etcd-client unchanged.
#
#   scripts/vendor-etcd-client.sh           (re)make vendor/etcd-client from crates.io's etcd-client
#   scripts/vendor-etcd-client.sh --check   fail unless vendor/etcd-client is exactly what this script makes
#
# The two changes, both measured in docs/performance.md ("Why etcd-client is vendored"):
#
# 1. The Rust code that etcd's .proto files become is checked in (src/rpc/generated/), made by the crate's
#    own build script, unchanged. Built from crates.io, etcd-client compiles a protobuf code generator at
#    build time (tonic-prost-build, prost-build, regex, petgraph, pulldown-cmark, prettyplease, a second
#    syn...) and runs protoc before any of its own code can compile: that chain sits on the critical path of
#    every cold build, about 14 s of a topic's 64 s on 2 cores.
# 2. tonic without its default features: etcd-client asks for tonic's defaults, which are tonic's gRPC
#    *server* and its axum router. A client needs only tonic's `channel` and `codegen`.
#
# The script downloads etcd-client (cargo checks the crate's checksum against crates.io's index), runs its
# build script in a scratch crate (this needs protoc: scripts/install-deps.sh), copies the library sources,
# licences and README, and rewrites Cargo.toml and src/rpc/pb.rs as described above. Nothing else changes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
version=0.21.1
dest=vendor/etcd-client

check=false
case "${1:-}" in
  --check) check=true ;;
  "") ;;
  *) echo "usage: scripts/vendor-etcd-client.sh [--check]" >&2; exit 2 ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A scratch crate outside the workspace, so our [patch] does not apply: it gets crates.io's etcd-client and
# runs its build script. `cargo check` compiles the build script fully but the library only as far as
# type-checking, which is all that is needed to get the generated files.
mkdir -p "$work/scratch/src"
cat >"$work/scratch/Cargo.toml" <<EOF
[package]
name = "vendor-etcd-client"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
etcd-client = "=$version"

[workspace]
EOF
: >"$work/scratch/src/lib.rs"
echo "== downloading etcd-client $version and running its build script (cargo check)"
(cd "$work/scratch" && CARGO_TARGET_DIR="$work/target" cargo check --quiet)

src=$(cd "$work/scratch" && cargo metadata --format-version 1 |
  grep -o "\"manifest_path\":\"[^\"]*/etcd-client-$version/Cargo.toml\"" | head -1 | cut -d'"' -f4)
[ -f "$src" ] || { echo "vendor-etcd-client: cargo metadata names no etcd-client $version" >&2; exit 1; }
src=$(dirname "$src")
out=$(ls -d "$work"/target/debug/build/etcd-client-*/out | head -1)
[ -f "$out/etcdserverpb.rs" ] || { echo "vendor-etcd-client: the build script made no etcdserverpb.rs in $out" >&2; exit 1; }

new="$work/etcd-client"
mkdir -p "$new"
cp -r "$src/src" "$new/src"
cp "$src/LICENSE-APACHE" "$src/LICENSE-MIT" "$src/README.md" "$new/"
mkdir -p "$new/src/rpc/generated"
for pkg in authpb etcdserverpb mvccpb v3electionpb v3lockpb; do
  cp "$out/$pkg.rs" "$new/src/rpc/generated/$pkg.rs"
done
# The generated files, as the build script wrote them, are not rustfmt's layout; leave them as they are.
printf 'disable_all_formatting = true\n' >"$new/rustfmt.toml"

# src/rpc/pb.rs: include the checked-in files instead of the build script's OUT_DIR.
sed 's|tonic::include_proto!("\([a-z0-9]*\)");|include!("generated/\1.rs");|' "$src/src/rpc/pb.rs" >"$new/src/rpc/pb.rs"
[ "$(grep -c 'include!("generated/' "$new/src/rpc/pb.rs")" -eq 5 ] ||
  { echo "vendor-etcd-client: src/rpc/pb.rs no longer has the five include_proto! lines this script rewrites" >&2; exit 1; }

# Cargo.toml: no build script, no build- or dev-dependencies, no examples or tests (not copied), and tonic
# with only the client features.
{
  echo "# etcd-client $version from crates.io, changed by scripts/vendor-etcd-client.sh (which says why):"
  echo "# no build script (src/rpc/generated/ holds its output) and tonic without its server features."
  echo
  awk '
    /^\[/ { skip = ($0 ~ /^\[\[(example|test|bench)\]\]/ || $0 ~ /^\[(build-dependencies|dev-dependencies)/) }
    skip { next }
    /^build = "build.rs"$/ { print "build = false"; next }
    { print }
    /^\[dependencies\.tonic\]$/ { tonic = 1; next }
    tonic && /^version = / { print "default-features = false"; print "features = [\"channel\", \"codegen\"]"; tonic = 0 }
  ' "$src/Cargo.toml"
} >"$new/Cargo.toml"
grep -q '^build = false$' "$new/Cargo.toml" && grep -q '^features = \["channel", "codegen"\]$' "$new/Cargo.toml" ||
  { echo "vendor-etcd-client: etcd-client's Cargo.toml no longer looks as this script expects" >&2; exit 1; }

if $check; then
  if diff -r "$new" "$dest" >"$work/diff"; then
    echo "   ok: $dest is etcd-client $version with the changes scripts/vendor-etcd-client.sh makes"
  else
    echo "vendor-etcd-client: $dest differs from what this script makes from etcd-client $version:" >&2
    head -40 "$work/diff" >&2
    echo "run scripts/vendor-etcd-client.sh to remake it" >&2
    exit 1
  fi
else
  rm -rf "$dest"
  mkdir -p "$(dirname "$dest")"
  cp -r "$new" "$dest"
  echo "made $dest from etcd-client $version"
fi
