#!/usr/bin/env bash
# Our `bench` against etcd's own Go `benchmark` tool, side by side, on one throwaway etcd.
#
#   scripts/bench-compare.sh                         every case, 3 rounds each
#   ROUNDS=5 scripts/bench-compare.sh seq c64        only these cases, 5 rounds
#   ETCD_BENCHMARK=~/go/bin/benchmark scripts/bench-compare.sh
#
# Cases (the same flags for both tools):
#   seq      put --clients 1  --conns 1 --total $SEQ_TOTAL  --key-size 8 --val-size 256   (latency bound)
#   c64      put --clients 64 --conns 1 --total $CONC_TOTAL --key-size 8 --val-size 256  (one HTTP/2 connection)
#   range-l  range <key> --consistency l --clients 64 --conns 1 --total $CONC_TOTAL
#   range-s  range <key> --consistency s --clients 64 --conns 1 --total $CONC_TOTAL
#
# One etcd on free 127.0.0.1 ports, data in a temporary directory, killed on exit. Our tool is built with
# `cargo build --release -p bench`. Runs alternate (ours, theirs, ours, theirs, ...) so that a change in
# machine load hits both alike; a case's figure is the median of its rounds.
#
# Output on stdout, one stable line per case (details of each round go to stderr):
#   case=<name> ours=<req/s> theirs=<req/s> ratio=<ours/theirs>
# Without etcd's Go tool (a `benchmark` on PATH, or named by ETCD_BENCHMARK): `theirs=n/a ratio=n/a`, and
# one line on stderr says why. The Go tool is not packaged by Debian; build it from etcd's repository:
#   git clone https://github.com/etcd-io/etcd && cd etcd/tools/benchmark && go build -o ~/bin/benchmark .
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

ROUNDS=${ROUNDS:-3}
SEQ_TOTAL=${SEQ_TOTAL:-2000}
CONC_TOTAL=${CONC_TOTAL:-20000}
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(seq c64 range-l range-s)

note() { echo "bench-compare: $*" >&2; }

theirs_bin=${ETCD_BENCHMARK:-$(command -v benchmark || true)}
if [ -n "$theirs_bin" ] && [ ! -x "$theirs_bin" ]; then
  note "ETCD_BENCHMARK=$theirs_bin is not an executable file"
  exit 1
fi
if [ -z "$theirs_bin" ]; then
  note "etcd's Go benchmark tool is not on PATH (and ETCD_BENCHMARK is not set): running ours alone." \
    "Debian does not package it; build it from etcd's repository (tools/benchmark) with Go."
fi

command -v etcd >/dev/null || { note "etcd is not on PATH: run scripts/install-deps.sh"; exit 1; }

free_port() {
  local port
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  note "no free port found"
  exit 1
}

note "building: cargo build --release -p bench"
cargo build --release --quiet -p bench
ours_bin="$root/target/release/bench"

dir=$(mktemp -d)
etcd_pid=
cleanup() {
  if [ -n "$etcd_pid" ]; then
    kill "$etcd_pid" 2>/dev/null || true
    wait "$etcd_pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

client_port=$(free_port)
peer_port=$(free_port)
while [ "$peer_port" = "$client_port" ]; do peer_port=$(free_port); done
endpoint="127.0.0.1:$client_port"
etcd --name bench --data-dir "$dir/data" \
  --listen-client-urls "http://$endpoint" --advertise-client-urls "http://$endpoint" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "bench=http://127.0.0.1:$peer_port" --log-level error >"$dir/etcd.log" 2>&1 &
etcd_pid=$!
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$client_port") 2>/dev/null; then break; fi
  sleep 0.1
done
kill -0 "$etcd_pid" 2>/dev/null || { note "etcd did not start:"; cat "$dir/etcd.log" >&2; exit 1; }
note "etcd $(etcd --version | head -1 | awk '{print $3}') at $endpoint (data in $dir); load: $(cut -d' ' -f1-3 /proc/loadavg)"

# The flags of a case, after the subcommand, in the form both tools accept.
case_args() {
  case "$1" in
    seq) echo "put --clients 1 --conns 1 --total $SEQ_TOTAL --key-size 8 --val-size 256" ;;
    c64) echo "put --clients 64 --conns 1 --total $CONC_TOTAL --key-size 8 --val-size 256" ;;
    range-l) echo "range /bench-compare/k --consistency l --clients 64 --conns 1 --total $CONC_TOTAL" ;;
    range-s) echo "range /bench-compare/k --consistency s --clients 64 --conns 1 --total $CONC_TOTAL" ;;
    *) note "unknown case $1 (known: seq c64 range-l range-s)"; exit 1 ;;
  esac
}

# `Requests/sec:\t<x>` and `99% in <x> secs.` from an etcd-style summary on stdin.
rate_of() { awk -F'\t' '/^ *Requests\/sec:/ { printf "%.0f", $2 }'; }
p99_of() { awk '/^ *99% in / { print $3 }'; }

run_ours() {
  # shellcheck disable=SC2046 # the case's flags are meant to split into words
  "$ours_bin" $(case_args "$1") --endpoints "$endpoint"
}

run_theirs() {
  local sub rest
  read -r sub rest <<<"$(case_args "$1")"
  # Go's tool takes --clients and --conns before the subcommand, and --endpoints as a global flag.
  local clients conns
  clients=$(sed -n 's/.*--clients \([0-9]*\).*/\1/p' <<<"$rest")
  conns=$(sed -n 's/.*--conns \([0-9]*\).*/\1/p' <<<"$rest")
  rest=$(sed 's/--clients [0-9]*//; s/--conns [0-9]*//' <<<"$rest")
  # shellcheck disable=SC2086
  "$theirs_bin" --endpoints "$endpoint" --clients "$clients" --conns "$conns" "$sub" $rest 2>/dev/null
}

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print "n/a"; else print a[int((NR + 1) / 2)] }'; }

for name in "${cases[@]}"; do
  case_args "$name" >/dev/null
  ours_rates=()
  theirs_rates=()
  for round in $(seq 1 "$ROUNDS"); do
    out=$(run_ours "$name")
    rate=$(rate_of <<<"$out")
    ours_rates+=("$rate")
    note "$name round $round: ours $rate req/s, p99 $(p99_of <<<"$out") s"
    if [ -n "$theirs_bin" ]; then
      out=$(run_theirs "$name")
      rate=$(rate_of <<<"$out")
      theirs_rates+=("$rate")
      note "$name round $round: theirs $rate req/s, p99 $(p99_of <<<"$out") s"
    fi
  done
  ours=$(printf '%s\n' "${ours_rates[@]}" | median)
  if [ -n "$theirs_bin" ]; then
    theirs=$(printf '%s\n' "${theirs_rates[@]}" | median)
    ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
  else
    theirs=n/a
    ratio=n/a
  fi
  echo "case=$name ours=$ours theirs=$theirs ratio=$ratio"
done
