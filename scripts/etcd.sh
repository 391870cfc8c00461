#!/usr/bin/env bash
# A single local etcd member for following the tutorial, bound to 127.0.0.1 only.
#
#   scripts/etcd.sh up       install what is missing, start etcd, wait until it is healthy (idempotent)
#   scripts/etcd.sh down     stop the member this script started (through its PID file)
#   scripts/etcd.sh status   is it running, and what does etcd say about itself
#   scripts/etcd.sh logs     the last lines of etcd's log (`logs -f` to follow)
#   scripts/etcd.sh reset    stop it and wipe its data
#
# Data and log live in .etcd/ at the top of the repository (git-ignored).
# Ports: LOCAL_ETCD_PORT (client, default 2379) and LOCAL_ETCD_PEER_PORT (default 2380). With another client
# port, point the examples at it: ETCD_ENDPOINTS=127.0.0.1:$LOCAL_ETCD_PORT cargo run -p kv
#
# If etcd cannot be installed but Docker with compose is available, `up` falls back to docker-compose.yml.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state="$root/.etcd"
data="$state/data"
log="$state/etcd.log"
pidfile="$state/etcd.pid"
docker_marker="$state/docker"
client_port="${LOCAL_ETCD_PORT:-2379}"
peer_port="${LOCAL_ETCD_PEER_PORT:-2380}"
endpoint="127.0.0.1:$client_port"
start_limit=30 # seconds to wait for a healthy member

say() { echo "etcd.sh: $*"; }
fail() { echo "etcd.sh: error: $*" >&2; exit 1; }

our_pid() {
  [ -f "$pidfile" ] || return 1
  local pid
  pid=$(cat "$pidfile")
  # The PID must still be an etcd process: PIDs are reused after a reboot or a crash.
  if kill -0 "$pid" 2>/dev/null && ps -p "$pid" -o comm= | grep -q etcd; then
    echo "$pid"
  else
    return 1
  fi
}

healthy() {
  etcdctl --endpoints="$endpoint" --dial-timeout=1s --command-timeout=2s endpoint health >/dev/null 2>&1
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

compose() {
  if docker compose version >/dev/null 2>&1; then docker compose "$@"; else docker-compose "$@"; fi
}

docker_available() {
  command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 &&
    { docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1; }
}

wait_healthy() {
  local waited=0
  until healthy; do
    if [ -n "${1:-}" ] && ! kill -0 "$1" 2>/dev/null; then
      echo "--- last lines of $log ---" >&2
      tail -n 20 "$log" >&2 || true
      fail "etcd exited during start-up (see above)"
    fi
    if [ "$waited" -ge $((start_limit * 10)) ]; then
      fail "etcd did not become healthy within ${start_limit}s; see scripts/etcd.sh logs"
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
}

up_with_docker() {
  say "etcd could not be installed; Docker is available, so starting docker-compose.yml instead"
  compose -f "$root/docker-compose.yml" up -d
  mkdir -p "$state" && touch "$docker_marker"
  local waited=0
  until compose -f "$root/docker-compose.yml" exec -T etcd etcdctl endpoint health >/dev/null 2>&1; do
    [ "$waited" -ge "$start_limit" ] && fail "the etcd container did not become healthy within ${start_limit}s"
    sleep 1
    waited=$((waited + 1))
  done
  say "etcd (docker) is healthy at $endpoint"
}

cmd_up() {
  if pid=$(our_pid); then
    say "already running (pid $pid) at $endpoint"
    return 0
  fi
  if ! "$root/scripts/install-deps.sh"; then
    if docker_available; then up_with_docker; return 0; fi
    fail "prerequisites are missing and could not be installed (see above)"
  fi
  if port_in_use "$client_port"; then
    if healthy; then
      say "an etcd that this script did not start already answers at $endpoint (perhaps the system service"
      say "'etcd'); the examples will use it. Stop it, or use another port: LOCAL_ETCD_PORT=22379 $0 up"
      return 0
    fi
    fail "port $client_port is taken by something that is not etcd; free it, or use another port:
  LOCAL_ETCD_PORT=22379 LOCAL_ETCD_PEER_PORT=22380 $0 up && ETCD_ENDPOINTS=127.0.0.1:22379 cargo run -p kv"
  fi
  port_in_use "$peer_port" && fail "peer port $peer_port is taken; choose another with LOCAL_ETCD_PEER_PORT=..."

  mkdir -p "$data"
  local client_url="http://127.0.0.1:$client_port" peer_url="http://127.0.0.1:$peer_port"
  # setsid (or nohup where there is none, as on macOS): the member must outlive this script and ignore
  # Ctrl-C pressed in this terminal later. `env -u ETCD_ENDPOINTS`: etcd reads ETCD_* variables as flags.
  local detach=nohup
  command -v setsid >/dev/null 2>&1 && detach=setsid
  "$detach" env -u ETCD_ENDPOINTS etcd \
    --name etcd-by-example \
    --data-dir "$data" \
    --listen-client-urls "$client_url" \
    --advertise-client-urls "$client_url" \
    --listen-peer-urls "$peer_url" \
    --initial-advertise-peer-urls "$peer_url" \
    --initial-cluster "etcd-by-example=$peer_url" \
    --initial-cluster-state new \
    >>"$log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$pidfile"
  say "starting etcd (pid $pid), data in ${data#"$root"/}, log in ${log#"$root"/}"
  wait_healthy "$pid"
  say "etcd is healthy at $endpoint; try: cargo run -p kv"
}

cmd_down() {
  if [ -f "$docker_marker" ]; then
    compose -f "$root/docker-compose.yml" down
    rm -f "$docker_marker"
    say "stopped the docker etcd"
    return 0
  fi
  local pid
  if ! pid=$(our_pid); then
    rm -f "$pidfile"
    say "not running (no live PID in ${pidfile#"$root"/})"
    return 0
  fi
  kill -TERM "$pid"
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "etcd (pid $pid) did not stop within 10s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  say "stopped etcd (pid $pid)"
}

cmd_status() {
  if [ -f "$docker_marker" ]; then
    compose -f "$root/docker-compose.yml" ps
  elif pid=$(our_pid); then
    say "running (pid $pid) at $endpoint"
  else
    say "not started by this script"
  fi
  if command -v etcdctl >/dev/null 2>&1 && healthy; then
    etcdctl --endpoints="$endpoint" endpoint status -w table
  else
    say "nothing answers at $endpoint"
    return 1
  fi
}

cmd_logs() {
  if [ -f "$docker_marker" ]; then
    compose -f "$root/docker-compose.yml" logs "$@" etcd
    return
  fi
  [ -f "$log" ] || fail "no log yet at ${log#"$root"/}; start etcd with: $0 up"
  if [ "${1:-}" = "-f" ]; then tail -n 50 -f "$log"; else tail -n 50 "$log"; fi
}

cmd_reset() {
  cmd_down
  rm -rf "$data"
  [ -f "$root/docker-compose.yml" ] && docker_available && compose -f "$root/docker-compose.yml" down -v >/dev/null 2>&1 || true
  say "wiped ${data#"$root"/}; start afresh with: $0 up"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  logs) shift; cmd_logs "$@" ;;
  reset) cmd_reset ;;
  *) sed -n '2,15p' "$0"; exit 2 ;;
esac
