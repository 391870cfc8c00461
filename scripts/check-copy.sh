#!/usr/bin/env bash
# Proves that what the READMEs say to copy works when a reader copies it, in a new crate outside the workspace
# with crates.io's etcd-client.
#
#   scripts/check-copy.sh                      every recipe and every self-contained topic lib.rs
#   scripts/check-copy.sh kept_lease kv ...    only these
#
# Recipes (README.md, "## Copy a recipe", one "### <module>" section each): the section's `cargo add` lines
# run as written, the files it names (`crates/recipes/src/*.rs`) copied into src/, its ```rust block as
# src/main.rs; then `cargo build` and `cargo test`, and the program is RUN against a throwaway etcd on a free
# loopback port (ETCD_ENDPOINTS): every line of the section's ```text block must be among the lines it prints.
#
# Topics: a crates/<topic>/src/lib.rs that uses nothing from the workspace (no `recipes::`, no
# `etcd_connect::`) is copied as src/lib.rs with the `cargo add` lines of its README's "Use it in your
# project" section, then `cargo check`. A lib.rs that uses recipes is not claimed copyable alone: its README
# points to the recipes instead.
#
# The scratch crates reuse the workspace's Cargo.lock (same versions) and target directory. It runs online,
# as a reader's build would: the workspace builds etcd-client from vendor/, so a fresh machine's cargo cache
# has neither crates.io's etcd-client nor its build dependencies (and crates.io's etcd-client needs protoc).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scratch="$root/target/copy-check"
export CARGO_TARGET_DIR="$root/target"
etcd_bin="${TEST_ETCD_BIN:-etcd}"

new_crate() { # name dir
  rm -rf "$2"
  mkdir -p "$2/src"
  # `[workspace]` makes the scratch crate its own workspace, not a member of ours.
  printf '[package]\nname = "%s"\nversion = "0.0.0"\nedition = "2021"\npublish = false\n\n[dependencies]\n\n[workspace]\n' "$1" >"$2/Cargo.toml"
  cp Cargo.lock "$2/Cargo.lock"
}

run_adds() { # dir, adds on stdin
  local line
  while IFS= read -r line; do
    [ -n "$line" ] || continue
    # shellcheck disable=SC2086 # the README's line is split into words exactly as a shell would
    (cd "$1" && eval "${line/cargo add/cargo add --quiet}") || return 1
  done
}

# The lines of README.md's "### <recipe>" section under "## Copy a recipe".
recipe_section() {
  awk -v want="### $1" '
    /^## / { in_recipes = ($0 == "## Copy a recipe"); on = 0; next }
    in_recipes && /^### / { on = ($0 == want); next }
    on { print }' README.md
}

# The lines inside the section's first ```<lang> block.
block() { # lang, section on stdin
  awk -v fence="\`\`\`$1" '$0 == fence && !done { on = 1; next } on && /^```/ { on = 0; done = 1 } on { print }'
}

etcd_pid=""
etcd_dir=""
stop_etcd() {
  if [ -n "$etcd_pid" ]; then kill "$etcd_pid" 2>/dev/null || true; wait "$etcd_pid" 2>/dev/null || true; fi
  if [ -n "$etcd_dir" ]; then rm -rf "$etcd_dir"; fi
  return 0
}
trap stop_etcd EXIT

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A throwaway etcd on two free loopback ports below the ephemeral range; sets ETCD_ENDPOINTS.
start_etcd() {
  command -v "$etcd_bin" >/dev/null || {
    echo "check-copy: no etcd binary ($etcd_bin); install it with scripts/install-deps.sh" >&2
    exit 1
  }
  local port
  for _ in $(seq 50); do
    port=$((10000 + RANDOM % 10000))
    port_free "$port" && port_free $((port + 1)) && break
  done
  etcd_dir=$(mktemp -d)
  "$etcd_bin" --name copy-check --data-dir "$etcd_dir/data" \
    --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
    --listen-peer-urls "http://127.0.0.1:$((port + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((port + 1))" \
    --initial-cluster "copy-check=http://127.0.0.1:$((port + 1))" >"$etcd_dir/log" 2>&1 &
  etcd_pid=$!
  export ETCD_ENDPOINTS="127.0.0.1:$port"
  for _ in $(seq 100); do
    ETCDCTL_API=3 etcdctl --endpoints "$ETCD_ENDPOINTS" endpoint health >/dev/null 2>&1 && return 0
    kill -0 "$etcd_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "check-copy: the throwaway etcd did not come up on $ETCD_ENDPOINTS:" >&2
  tail -5 "$etcd_dir/log" >&2
  exit 1
}

check_recipe() { # recipe
  local recipe=$1 section adds files crate out expected missing
  section=$(recipe_section "$recipe")
  [ -n "$section" ] || { echo "check-copy: README.md has no \"### $recipe\" under \"## Copy a recipe\"" >&2; return 1; }
  adds=$(grep '^cargo add ' <<<"$section" || true)
  files=$(grep -o '`crates/recipes/src/[a-z_]*\.rs`' <<<"$section" | tr -d '`' | sort -u)
  [ -n "$adds" ] && [ -n "$files" ] || { echo "check-copy: ### $recipe names no \`cargo add\` line or no file to copy" >&2; return 1; }
  crate="$scratch/recipe-$recipe"
  new_crate "copy-of-$recipe" "$crate"
  for f in $files; do cp "$f" "$crate/src/"; done
  block rust <<<"$section" >"$crate/src/main.rs"
  echo "== recipe $recipe: $(echo "$adds" | tr '\n' ';' | sed 's/;$//; s/;/; /g'); copy $(echo $files)"
  run_adds "$crate" <<<"$adds" || return 1
  (cd "$crate" && cargo build --quiet 2>&1 && cargo test --quiet 2>&1 | grep -E '^test result|FAILED|error' ) || return 1
  out=$(cd "$crate" && timeout 60 cargo run --quiet 2>&1) || { echo "$out" >&2; echo "check-copy: the $recipe program failed" >&2; return 1; }
  missing=0
  while IFS= read -r expected; do
    grep -qxF -- "$expected" <<<"$out" || { echo "check-copy: $recipe did not print: $expected" >&2; missing=1; }
  done < <(block text <<<"$section")
  [ "$missing" = 0 ] || { echo "it printed:" >&2; echo "$out" >&2; return 1; }
  echo "   ok: built, tested and ran as README.md says; it printed the README's lines"
}

check_topic() { # topic
  local topic=$1 readme lib adds crate
  readme="crates/$topic/README.md"
  lib="crates/$topic/src/lib.rs"
  [ -f "$lib" ] || { echo "check-copy: $topic has no src/lib.rs" >&2; return 1; }
  adds=$(awk '/^## Use it in your project/ { on = 1; next } /^## / { on = 0 } on && /^cargo add / { print }' "$readme")
  [ -n "$adds" ] || { echo "check-copy: $readme has no \`cargo add\` line under \"## Use it in your project\"" >&2; return 1; }
  crate="$scratch/$topic"
  new_crate "copy-of-$topic" "$crate"
  cp "$lib" "$crate/src/lib.rs"
  echo "== $topic: $(echo "$adds" | tr '\n' ';' | sed 's/;$//; s/;/; /g')"
  run_adds "$crate" <<<"$adds" || return 1
  (cd "$crate" && cargo check --quiet 2>&1) || return 1
  echo "   ok: crates/$topic/src/lib.rs builds with only the dependencies its README names"
}

recipes=()
topics=()
for name in "$@"; do
  if [ -f "crates/recipes/src/$name.rs" ]; then recipes+=("$name"); else topics+=("$name"); fi
done
if [ $# -eq 0 ]; then
  for f in crates/recipes/src/*.rs; do
    [ "$(basename "$f")" = lib.rs ] || recipes+=("$(basename "$f" .rs)")
  done
  for dir in crates/*/; do
    lib="$dir/src/lib.rs"
    [ -f "$dir/src/main.rs" ] && [ -f "$lib" ] || continue
    # Claimed copyable alone: its README has the section, and its code (comments aside) uses nothing of ours.
    grep -q '^## Use it in your project' "$dir/README.md" 2>/dev/null || continue
    # (Not `grep -v | grep -q`: with pipefail, the first grep's SIGPIPE when -q stops early fails the pipe.)
    code=$(grep -v '^[[:space:]]*//' "$lib")
    grep -qE '\b(recipes|etcd_connect)::' <<<"$code" || topics+=("$(basename "$dir")")
  done
fi

failed=()
[ ${#recipes[@]} -eq 0 ] || start_etcd
for recipe in "${recipes[@]}"; do
  check_recipe "$recipe" || failed+=("$recipe")
done
for topic in "${topics[@]}"; do
  check_topic "$topic" || failed+=("$topic")
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "check-copy: failed for: ${failed[*]}" >&2
  exit 1
fi
echo "check-copy: ${#recipes[@]} recipe(s) built, tested and run; ${#topics[@]} topic lib.rs file(s) copy cleanly"
