#!/usr/bin/env bash
# Proves that each topic's src/lib.rs can be copied into someone else's project as its README says.
#
#   scripts/check-copy.sh            every topic
#   scripts/check-copy.sh kv watch   only these
#
# For each topic: a scratch crate outside the workspace (in target/copy-check/<topic>), the `cargo add`
# lines of the README's "Use it in your project" section run in it as written, the topic's lib.rs copied in
# unchanged, then `cargo check`. A lib.rs that reaches for the shared etcd-connect crate, another topic,
# or a dependency or tokio feature its README does not name fails here. The scratch crates reuse the
# workspace's Cargo.lock (same versions) and target directory, so dependencies are checked only once.
# It runs online, as a reader's build would: the workspace builds etcd-client from vendor/, so on a fresh
# machine cargo's cache has neither crates.io's etcd-client nor its build dependencies (offline, every
# topic failed with "could not be found in registry index").
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scratch="$root/target/copy-check"
export CARGO_TARGET_DIR="$root/target"

topics=("$@")
if [ ${#topics[@]} -eq 0 ]; then
  for dir in crates/*/; do
    topic=$(basename "$dir")
    # Topics are the crates with a binary; etcd-connect and test-etcd are support crates.
    [ -f "$dir/src/main.rs" ] && topics+=("$topic")
  done
fi

failed=()
for topic in "${topics[@]}"; do
  readme="crates/$topic/README.md"
  lib="crates/$topic/src/lib.rs"
  [ -f "$readme" ] || { echo "check-copy: $topic has no README.md" >&2; failed+=("$topic"); continue; }
  [ -f "$lib" ] || { echo "check-copy: $topic has no src/lib.rs" >&2; failed+=("$topic"); continue; }

  # The `cargo add` lines of the README's "Use it in your project" section, as a reader would paste them.
  adds=$(awk '/^## Use it in your project/ { on = 1; next } /^## / { on = 0 } on && /^cargo add / { print }' "$readme")
  if [ -z "$adds" ]; then
    echo "check-copy: $readme has no \`cargo add\` line under \"## Use it in your project\"" >&2
    failed+=("$topic")
    continue
  fi

  crate="$scratch/$topic"
  rm -rf "$crate"
  mkdir -p "$crate/src"
  # `[workspace]` makes the scratch crate its own workspace, not a member of ours.
  cat >"$crate/Cargo.toml" <<EOF
[package]
name = "copy-of-$topic"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]

[workspace]
EOF
  cp Cargo.lock "$crate/Cargo.lock"
  cp "$lib" "$crate/src/lib.rs"

  echo "== $topic: $(echo "$adds" | tr '\n' ';' | sed 's/;$//; s/;/; /g')"
  ok=true
  while IFS= read -r line; do
    # shellcheck disable=SC2086 # the README's line is split into words exactly as a shell would
    (cd "$crate" && eval "${line/cargo add/cargo add --quiet}") || { ok=false; break; }
  done <<<"$adds"
  if $ok && (cd "$crate" && cargo check --quiet 2>&1); then
    echo "   ok: crates/$topic/src/lib.rs builds with only the dependencies its README names"
  else
    echo "check-copy: crates/$topic/src/lib.rs does not build from its README's dependencies alone" >&2
    failed+=("$topic")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "check-copy: failed for: ${failed[*]}" >&2
  exit 1
fi
echo "check-copy: ${#topics[@]} lib.rs file(s) copy cleanly"
