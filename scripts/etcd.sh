#!/usr/bin/env bash
# A single local etcd member for following the tutorial, bound to 127.0.0.1 only.
#
#   scripts/etcd.sh up       install what is missing, start etcd, wait until it is healthy (idempotent)
#   scripts/etcd.sh down     stop the member this script started, through its PID file (idempotent)
#   scripts/etcd.sh status   is this script's member running, and what does the etcd on its port say
#   scripts/etcd.sh logs     the last lines of etcd's log (`logs -f` to follow)
#   scripts/etcd.sh reset    stop it and wipe its data
#
# Data, log and PID file live in .etcd/ at the top of the repository (git-ignored), or in LOCAL_ETCD_DIR.
# Ports: LOCAL_ETCD_PORT (client, default 2379) and LOCAL_ETCD_PEER_PORT (default: the first free port after
# the client port, so 2380). On another client port, `up` prints the ETCD_ENDPOINTS=... and ETCDCTL_ENDPOINTS=...
# settings that point the examples and etcdctl at it.
#
# If etcd cannot be installed but Docker with compose is available, `up` falls back to docker-compose.yml.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state="${LOCAL_ETCD_DIR:-$root/.etcd}"
data="$state/data"
log="$state/etcd.log"
pidfile="$state/etcd.pid"
docker_marker="$state/docker"
default_port=2379
start_limit=30 # seconds to wait for a healthy member

say() { echo "etcd.sh: $*"; }
fail() { echo "etcd.sh: error: $*" >&2; exit 1; }

# The usage is the header comment above: every line from the second up to the first that is not a comment.
usage() { awk 'NR == 1 { next } !/^#/ { exit } { sub(/^# ?/, ""); print }' "$0"; }

# A path as the user knows it: relative to the repository when it is inside it.
show() { echo "${1#"$root"/}"; }

valid_port() { [[ "$1" =~ ^[1-9][0-9]{0,4}$ ]] && [ "$1" -le 65535 ]; }

for var in LOCAL_ETCD_PORT LOCAL_ETCD_PEER_PORT; do
  if [ -n "${!var:-}" ] && ! valid_port "${!var}"; then
    fail "$var=${!var} is not a port number (1-65535)"
  fi
done

our_pid() {
  [ -f "$pidfile" ] || return 1
  local pid
  pid=$(cat "$pidfile")
  # The PID must still be an etcd process: PIDs are reused after a reboot or a crash.
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && ps -p "$pid" -o comm= | grep -q etcd; then
    echo "$pid"
  else
    return 1
  fi
}

# The client port a running etcd listens on, read from its own command line.
client_port_of() {
  ps -ww -o args= -p "$1" 2>/dev/null |
    sed -n 's|.*--listen-client-urls http://127\.0\.0\.1:\([0-9][0-9]*\).*|\1|p'
}

# The client port: LOCAL_ETCD_PORT if set; else the port of the member this script runs; else 2379.
if [ -n "${LOCAL_ETCD_PORT:-}" ]; then
  client_port=$LOCAL_ETCD_PORT
elif pid=$(our_pid) && port=$(client_port_of "$pid") && [ -n "$port" ]; then
  client_port=$port
else
  client_port=$default_port
fi
endpoint="127.0.0.1:$client_port"

# etcdctl with only the flags given here: it refuses a flag that an ETCDCTL_* variable also sets, and users are
# told to `export ETCDCTL_ENDPOINTS=...`.
ctl() {
  env -u ETCDCTL_ENDPOINTS -u ETCDCTL_DIAL_TIMEOUT -u ETCDCTL_COMMAND_TIMEOUT -u ETCDCTL_WRITE_OUT \
    ETCDCTL_API=3 etcdctl --endpoints="$endpoint" "$@"
}

healthy() {
  command -v etcdctl >/dev/null 2>&1 && ctl --dial-timeout=1s --command-timeout=2s endpoint health >/dev/null 2>&1
}

status_table() {
  ctl --dial-timeout=1s --command-timeout=2s endpoint status -w table
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A complete command that starts this script's member on two ports that are free right now.
other_ports_command() {
  local p=22379 tries=0
  while [ "$p" = "$client_port" ] || port_in_use "$p" || port_in_use $((p + 1)); do
    p=$((p + 2))
    tries=$((tries + 1))
    [ "$tries" -ge 50 ] && break
  done
  local dir=""
  [ -n "${LOCAL_ETCD_DIR:-}" ] && dir="LOCAL_ETCD_DIR=$LOCAL_ETCD_DIR "
  echo "  ${dir}LOCAL_ETCD_PORT=$p LOCAL_ETCD_PEER_PORT=$((p + 1)) $0 up"
  echo "  then: ETCD_ENDPOINTS=127.0.0.1:$p cargo run -p kv"
}

# What to run next against a member at 127.0.0.1:$1.
next_steps() {
  if [ "$1" = "$default_port" ]; then
    say "try: cargo run -p kv"
  else
    say "the examples and etcdctl use 127.0.0.1:$default_port unless told otherwise; point them at this member:"
    echo "  ETCD_ENDPOINTS=127.0.0.1:$1 cargo run -p kv"
    echo "  export ETCDCTL_ENDPOINTS=127.0.0.1:$1"
  fi
}

# The peer port: LOCAL_ETCD_PEER_PORT if set (it must be free), else the first free port after the client port.
choose_peer_port() {
  local p
  if [ -n "${LOCAL_ETCD_PEER_PORT:-}" ]; then
    p=$LOCAL_ETCD_PEER_PORT
    [ "$p" = "$client_port" ] && fail "LOCAL_ETCD_PEER_PORT=$p is also the client port; choose another"
    if port_in_use "$p"; then
      fail "peer port $p (LOCAL_ETCD_PEER_PORT) is taken; free it, or use other ports:
$(other_ports_command)"
    fi
    echo "$p"
    return 0
  fi
  for ((p = client_port + 1; p <= client_port + 20 && p <= 65535; p++)); do
    if ! port_in_use "$p"; then
      echo "$p"
      return 0
    fi
  done
  fail "no free peer port after $client_port; set one with LOCAL_ETCD_PEER_PORT=..."
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
      echo "--- last lines of $(show "$log") ---" >&2
      tail -n 20 "$log" >&2 || true
      rm -f "$pidfile"
      fail "etcd exited during start-up (see above)"
    fi
    if [ "$waited" -ge $((start_limit * 10)) ]; then
      fail "etcd did not become healthy within ${start_limit}s; see $0 logs"
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
}

up_with_docker() {
  # docker-compose.yml publishes 127.0.0.1:2379 only.
  [ "$client_port" = "$default_port" ] ||
    fail "etcd could not be installed, and the Docker fallback (docker-compose.yml) serves port $default_port only"
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
  next_steps "$client_port"
}

cmd_up() {
  local pid port
  if pid=$(our_pid); then
    port=$(client_port_of "$pid")
    if [ -n "$port" ] && [ "$port" != "$client_port" ]; then
      fail "this script's etcd (pid $pid) already runs at 127.0.0.1:$port, not at $endpoint; to move it:
  $0 down && LOCAL_ETCD_PORT=$client_port $0 up"
    fi
    say "already running (pid $pid) at $endpoint"
    next_steps "$client_port"
    return 0
  fi
  if [ -f "$docker_marker" ] && healthy; then
    say "already running (docker) at $endpoint"
    next_steps "$client_port"
    return 0
  fi
  if ! "$root/scripts/install-deps.sh"; then
    if docker_available; then up_with_docker; return 0; fi
    fail "prerequisites are missing and could not be installed (see above)"
  fi
  if port_in_use "$client_port"; then
    if healthy; then
      say "an etcd that this script did not start already answers at $endpoint (perhaps the system service"
      say "'etcd'); the examples can use it."
      next_steps "$client_port"
      say "Or stop it, or start this script's own member on other ports:"
      other_ports_command
      return 0
    fi
    fail "port $client_port is taken by something that is not etcd; free it, or use other ports:
$(other_ports_command)"
  fi
  local peer_port
  peer_port=$(choose_peer_port)

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
  pid=$!
  echo "$pid" >"$pidfile"
  say "starting etcd (pid $pid) on 127.0.0.1, client port $client_port, peer port $peer_port"
  say "data in $(show "$data"), log in $(show "$log")"
  wait_healthy "$pid"
  say "etcd is healthy at $endpoint"
  next_steps "$client_port"
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
    say "not running (no live PID in $(show "$pidfile"))"
    if healthy; then
      say "the etcd answering at $endpoint was not started by this script; left running"
    fi
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
  command -v etcdctl >/dev/null 2>&1 || fail "etcdctl is not installed; run scripts/install-deps.sh"
  if [ -f "$docker_marker" ]; then
    compose -f "$root/docker-compose.yml" ps
    if healthy; then status_table; return 0; fi
    say "the docker etcd does not answer at $endpoint"
    return 1
  fi
  local pid port
  if pid=$(our_pid); then
    port=$(client_port_of "$pid")
    if [ -z "$port" ] || [ "$port" = "$client_port" ]; then
      if healthy; then
        say "running (pid $pid) at $endpoint"
        status_table
        return 0
      fi
      say "this script's etcd (pid $pid) runs but does not answer at $endpoint; see: $0 logs"
      return 1
    fi
    say "this script's etcd (pid $pid) runs at 127.0.0.1:$port, not at $endpoint"
  else
    say "no etcd started by this script is running (no live PID in $(show "$pidfile"))"
  fi
  if healthy; then
    say "the etcd answering at $endpoint was NOT started by this script (perhaps the system service 'etcd');"
    say "its own status:"
    status_table
    return 0
  fi
  if port_in_use "$client_port"; then
    say "something that is not etcd listens at $endpoint"
  else
    say "nothing answers at $endpoint"
  fi
  return 1
}

cmd_logs() {
  if [ -f "$docker_marker" ]; then
    compose -f "$root/docker-compose.yml" logs "$@" etcd
    return
  fi
  [ -f "$log" ] || fail "no log yet at $(show "$log"); start etcd with: $0 up"
  if [ "${1:-}" = "-f" ]; then tail -n 50 -f "$log"; else tail -n 50 "$log"; fi
}

cmd_reset() {
  cmd_down
  rm -rf "$data"
  # The Docker fallback keeps its data in a volume of docker-compose.yml; it belongs to the repository's
  # own .etcd/, not to a LOCAL_ETCD_DIR elsewhere.
  if [ -z "${LOCAL_ETCD_DIR:-}" ] && [ -f "$root/docker-compose.yml" ] && docker_available; then
    compose -f "$root/docker-compose.yml" down -v >/dev/null 2>&1 || true
  fi
  say "wiped $(show "$data"); start afresh with: $0 up"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  logs) shift; cmd_logs "$@" ;;
  reset) cmd_reset ;;
  -h | --help | help) usage ;;
  "") usage >&2; exit 2 ;;
  *) echo "etcd.sh: unknown command '$1'" >&2; usage >&2; exit 2 ;;
esac
