#!/usr/bin/env bash
# A local etcd for following the tutorial, bound to 127.0.0.1 only.
#
#   scripts/etcd.sh up       install what is missing, start one etcd member, wait until it is healthy
#   scripts/etcd.sh down     stop the member this script started (its PID file says which)
#   scripts/etcd.sh status   is this script's member running, and what does the etcd on its port say
#   scripts/etcd.sh logs     the last lines of etcd's log (`logs -f` to follow)
#   scripts/etcd.sh reset    stop it and wipe its data
#
#   scripts/etcd.sh up --secure   a second member, run the way production etcd runs: TLS on 127.0.0.1:2479,
#                                 client certificates, users root and app (app may use /app/ only); prints
#                                 the lines that connect to it. down, status, logs and reset take --secure
#                                 too (`reset --secure` also wipes its certificates and passwords).
#
#   scripts/etcd.sh cluster up|status|down|reset         three members (clients 2379, 22379, 32379)
#   scripts/etcd.sh cluster stop-member|start-member N   stop member N (1-3), or start it again: it rejoins
#
# `up` on a running member says "already running". Data, log and PID file live in .etcd/ (git-ignored) or in
# LOCAL_ETCD_DIR: the secure member's in .etcd/secure/, the cluster's in .etcd/cluster/memberN/.
# Ports: LOCAL_ETCD_PORT (2379; 2479 with --secure), LOCAL_ETCD_PEER_PORT (the client port + 1),
# LOCAL_CLUSTER_CLIENT_PORTS (2379,22379,32379), LOCAL_CLUSTER_PEER_PORTS (each client port + 1). When one is
# taken, etcd exits with "bind: address already in use": the script names the port and prints the command
# that moves it. The single member and the cluster both use 2379 and 2380: run one at a time.
# If etcd cannot be installed but Docker with compose is available, `up` falls back to docker-compose.yml.
set -euo pipefail
# etcd reads ETCD_* variables as flags, and etcdctl ETCDCTL_* ones: the examples' and a user's are not for them.
unset ETCD_ENDPOINTS ETCD_PASSWORD "${!ETCDCTL_@}"
root=$(cd "$(dirname "$0")/.." && pwd)
secure=false args=() # `--secure`, anywhere after the command, turns it to the secure member
for arg in "$@"; do if [ "$arg" = --secure ]; then secure=true; else args+=("$arg"); fi; done
set -- ${args[@]+"${args[@]}"}
base="${LOCAL_ETCD_DIR:-$root/.etcd}"
certs="$base/secure/certs" docker_marker="$base/docker" compose_file="$root/docker-compose.yml"
state=$base default_port=2379 https="" label=etcd flag=""
if $secure; then state="$base/secure" default_port=2479 https=https:// label="the secure etcd" flag=" --secure"; fi
pidfile="$state/etcd.pid" log="$state/etcd.log" start_limit=30 # seconds to wait for a healthy member

# ---- one etcd member: start_etcd DIR NAME CLIENT_URL PEER_URL INITIAL_CLUSTER [more flags] ----
# starts etcd in the background, with its data, log and PID file in DIR. `scripts/etcd.sh up` runs
#   start_etcd .etcd etcd-by-example http://127.0.0.1:2379 http://127.0.0.1:2380 etcd-by-example=http://127.0.0.1:2380
# `up --secure` adds TLS flags (etcd-secure.sh), and each member of the cluster a token (etcd-cluster.sh).
start_etcd() {
  local dir=$1 name=$2 client_url=$3 peer_url=$4 cluster=$5 detach=nohup
  local etcd=(
    etcd
    --name "$name"                             # this member's name, unique in its cluster
    --data-dir "$dir/data"                     # its write-ahead log and snapshots: the keys outlive a restart
    --listen-client-urls "$client_url"         # where it serves clients (etcdctl, the examples): 127.0.0.1 only
    --advertise-client-urls "$client_url"      # the client URL it gives clients and the other members
    --listen-peer-urls "$peer_url"             # where it talks raft with the other members of its cluster
    --initial-advertise-peer-urls "$peer_url"  # the peer URL it gives the other members
    --initial-cluster "$cluster"               # every member as name=peer URL; read on the first start only
    --initial-cluster-state new                # a new cluster (a member joining a running one says existing)
    --logger zap --log-outputs stderr          # its log: JSON lines on stderr, which goes to DIR/etcd.log
  )
  shift 5
  mkdir -p "$dir"
  # setsid (or nohup, as on macOS): the member outlives this script and ignores a Ctrl-C in this terminal.
  command -v setsid >/dev/null 2>&1 && detach=setsid
  "$detach" "${etcd[@]}" "$@" >"$dir/etcd.log" 2>&1 </dev/null & disown
  echo "$!" >"$dir/etcd.pid"
}

say() { echo "etcd.sh: $*"; }
# $on_fail, if set, undoes a half-done start.
fail() { echo "etcd.sh: error: $*" >&2; local undo=${on_fail:-}; on_fail=""; $undo; exit 1; }
# The usage is the header comment above: every line from the second up to the first that is not a comment.
usage() { awk 'NR == 1 { next } !/^#/ { exit } { sub(/^# ?/, ""); print }' "$0"; }
show() { echo "${1#"$root"/}"; } # a path as the user knows it: relative to the repository when inside it
self() { echo "${LOCAL_ETCD_DIR:+LOCAL_ETCD_DIR=$LOCAL_ETCD_DIR }$0"; } # this script, as run again
valid_port() { [[ "$1" =~ ^[1-9][0-9]{0,4}$ ]] && [ "$1" -le 65535 ]; }
for v in LOCAL_ETCD_PORT LOCAL_ETCD_PEER_PORT; do [ -z "${!v:-}" ] || valid_port "${!v}" || fail "$v=${!v} is not a port number (1-65535)"; done

# The PID in DIR/etcd.pid, if that process still runs etcd on DIR/data (PIDs are reused after a reboot).
pid_of() { local pid; pid=$(cat "$1/etcd.pid" 2>/dev/null) && [ -n "$pid" ] &&
  ps -ww -o args= -p "$pid" 2>/dev/null | grep -qF -- "--data-dir $1/data " && echo "$pid"; }
# The client port a running etcd listens on, read from its own command line.
client_port_of() { ps -ww -o args= -p "$1" 2>/dev/null |
  sed -n 's|.*--listen-client-urls https\{0,1\}://127\.0\.0\.1:\([0-9]*\).*|\1|p'; }

# The client port: LOCAL_ETCD_PORT if set; else the port of the member this script runs; else the default.
client_port=${LOCAL_ETCD_PORT:-}
[ -n "$client_port" ] || { pid=$(pid_of "$state") && client_port=$(client_port_of "$pid"); } || true
client_port=${client_port:-$default_port}
peer_port=${LOCAL_ETCD_PEER_PORT:-$((client_port + 1))}
endpoint="${https}127.0.0.1:$client_port"

# etcdctl at one endpoint with only the flags given here: it refuses a flag that an ETCDCTL_* variable also
# sets, and users are told to `export ETCDCTL_ENDPOINTS=...` (unset at the top, with the others).
ctl_at() { ETCDCTL_API=3 etcdctl --endpoints="$1" --dial-timeout=1s --command-timeout=3s "${@:2}"; }
# etcdctl at this command's member; at the secure one with the CA and the client certificate, whose CN, app,
# etcd takes as the user of a request without a password: no password needed (nor shown in `ps`).
ctl() {
  if $secure; then set -- --cacert="$certs/ca.crt" --cert="$certs/client.crt" --key="$certs/client.key" "$@"; fi
  ctl_at "$endpoint" "$@"
}
port_answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; } # something accepts connections there
healthy() { port_answers "$client_port" && ctl endpoint health >/dev/null 2>&1; }

# Waits until the command CHECK succeeds for the member in DIR. If the member exits, fails: when etcd could not
# bind a port, with what `HINT PORT DIR` says (which port, and what to run), else with the end of its log.
wait_healthy() {
  local dir=$1 check=$2 hint=$3 deadline=$((SECONDS + start_limit)) port
  while sleep 0.2; do
    if ! kill -0 "$(cat "$dir/etcd.pid" 2>/dev/null)" 2>/dev/null; then
      rm -f "$dir/etcd.pid"
      port=$(sed -n 's/.*listen tcp 127\.0\.0\.1:\([0-9]*\): bind: address already in use.*/\1/p' "$dir/etcd.log")
      [ -z "$port" ] || fail "$($hint "${port%%$'\n'*}" "$dir")"
      echo "--- last lines of $(show "$dir/etcd.log") ---" >&2
      tail -n 20 "$dir/etcd.log" >&2 || true
      fail "etcd exited during start-up (see above)"
    fi
    ! $check || return 0
    [ "$SECONDS" -lt "$deadline" ] || fail "etcd did not become healthy within ${start_limit}s; see $(show "$dir/etcd.log")"
  done
}

alt() { echo $(($1 <= 64535 ? $1 + 1000 : $1 - 1000)); } # a port to suggest instead of $1
# A whole command that starts this command's member on client port $1 and peer port $2.
command_on() {
  echo "  ${LOCAL_ETCD_DIR:+LOCAL_ETCD_DIR=$LOCAL_ETCD_DIR }LOCAL_ETCD_PORT=$1 LOCAL_ETCD_PEER_PORT=$2 $0 up$flag"
  if $secure; then echo "  then use the lines it prints"; else echo "  then: ETCD_ENDPOINTS=127.0.0.1:$1 cargo run -p kv"; fi
}
# What etcd's "bind: address already in use" on PORT means, and the command that moves the member off it.
bind_error() {
  local kind=client var=LOCAL_ETCD_PORT who="another program" c p d pid
  c=$(alt "$client_port") && p=$((c + 1))
  if [ "$1" = "$peer_port" ]; then
    kind=peer var=LOCAL_ETCD_PEER_PORT c=$client_port p=$(alt "$peer_port")
  elif ! $secure; then
    who="something that is not etcd" # no plain etcd answered there before the start
  fi
  for d in "$base" "$base/secure"; do
    if pid=$(pid_of "$d") && [ "$(client_port_of "$pid")" = "$1" ]; then who="this script's member in $(show "$d") (pid $pid)"; fi
  done
  echo "etcd could not bind 127.0.0.1:$1 (bind: address already in use): port $1 is taken by $who.
It is the $kind port, which $var sets; free it, or move the member:"
  command_on "$c" "$p"
}

# Where to point the examples at a member at 127.0.0.1:$client_port.
next_steps() {
  if [ "$client_port" = 2379 ]; then say "try: cargo run -p kv" && return 0; fi
  say "the examples and etcdctl use 127.0.0.1:2379 unless told otherwise; point them at this member:"
  printf '  %s\n' "ETCD_ENDPOINTS=127.0.0.1:$client_port cargo run -p kv" "export ETCDCTL_ENDPOINTS=127.0.0.1:$client_port"
}

compose() { if docker compose version >/dev/null 2>&1; then docker compose -f "$compose_file" "$@"; else docker-compose -f "$compose_file" "$@"; fi; }
docker_available() { docker info >/dev/null 2>&1 && { docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null; }; }
up_with_docker() { # docker-compose.yml publishes 127.0.0.1:2379 only
  [ "$client_port" = 2379 ] || fail "etcd could not be installed, and the Docker fallback (docker-compose.yml) serves port 2379 only"
  say "etcd could not be installed; Docker is available, so starting docker-compose.yml instead"
  compose up -d && mkdir -p "$state" && touch "$docker_marker"
  local waited=0
  until compose exec -T etcd etcdctl endpoint health >/dev/null 2>&1; do
    [ $((waited += 1)) -le "$start_limit" ] && sleep 1 || fail "the etcd container did not become healthy within ${start_limit}s"
  done
  say "etcd (docker) is healthy at $endpoint" && next_steps
}

cmd_up() {
  local pid port name=etcd-by-example more=()
  if pid=$(pid_of "$state"); then
    port=$(client_port_of "$pid")
    [ "$port" = "$client_port" ] || fail "this script's ${label#the } (pid $pid) already runs at 127.0.0.1:$port, not at $endpoint; to move it:
  $(self) down$flag && LOCAL_ETCD_PORT=$client_port $(self) up$flag"
    wait_healthy "$state" healthy bind_error
    say "already running (pid $pid) at $endpoint"
  elif $secure; then
    "$root/scripts/install-deps.sh" || fail "prerequisites are missing and could not be installed (see above)"
    "$root/scripts/make-certs.sh" "$certs" || fail "could not make the certificates in $(show "$certs") (see above)"
    name=etcd-by-example-secure more=("${tls_flags[@]}")
  elif [ -f "$docker_marker" ] && healthy; then
    say "already running (docker) at $endpoint" && next_steps && return 0
  elif any_member_runs; then
    cluster_ports
    fail "the 3-member cluster of \`$0 cluster up\` runs at $(cluster_endpoints). It and the single member
both use 127.0.0.1:2379 and 2380; run one at a time. Use the cluster:
  ETCD_ENDPOINTS=$(cluster_endpoints) cargo run -p kv
or stop it first:
  $(self) cluster down"
  elif ! "$root/scripts/install-deps.sh"; then
    if docker_available; then up_with_docker && return 0; fi
    fail "prerequisites are missing and could not be installed (see above)"
  elif healthy; then
    say "an etcd that this script did not start already answers at $endpoint (perhaps the system service"
    say "'etcd'); the examples can use it." && next_steps
    say "Or stop it, or start this script's own member on other ports:"
    command_on "$(alt "$client_port")" "$(($(alt "$client_port") + 1))" && return 0
  fi
  if [ -z "$pid" ]; then
    local peer_url="http://127.0.0.1:$peer_port"
    start_etcd "$state" "$name" "${https:-http://}127.0.0.1:$client_port" "$peer_url" "$name=$peer_url" ${more[@]+"${more[@]}"}
    say "starting $label (pid $(cat "$pidfile")) on 127.0.0.1, client port $client_port, peer port $peer_port"
    say "data in $(show "$state/data"), log in $(show "$log")"
    wait_healthy "$state" healthy bind_error
    $secure || say "etcd is healthy at $endpoint"
  fi
  if $secure; then ensure_users; secure_next_steps; else next_steps; fi
}

stop_pid() { # PID WHAT: SIGTERM, and SIGKILL after 10 s
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  say "$2 (pid $1) did not stop within 10s; killing it" && kill -KILL "$1" 2>/dev/null || true
}
# "PID PORT" of the secure member, if it runs: the plain `down` and `status` name it in one line.
secure_running() { local pid; pid=$(pid_of "$base/secure") && echo "$pid $(client_port_of "$pid")"; }

cmd_down() {
  local pid s
  if ! $secure && [ -f "$docker_marker" ]; then
    compose down && rm -f "$docker_marker" && say "stopped the docker etcd"
  elif pid=$(pid_of "$state"); then
    stop_pid "$pid" "$label" && rm -f "$pidfile" && say "stopped $label (pid $pid)"
  else
    rm -f "$pidfile" && say "$label is not running (no live PID in $(show "$pidfile"))"
    if $secure; then return 0; elif any_member_runs; then say "the 3-member cluster runs; stop it with: $(self) cluster down"
    elif healthy; then say "the etcd answering at $endpoint was not started by this script; left running"; fi
  fi
  if ! $secure && s=$(secure_running); then
    say "the secure etcd (pid ${s% *}) at https://127.0.0.1:${s#* } keeps running; stop it with: $(self) down --secure"
  fi
}

member_status() {
  local pid port
  if [ -f "$docker_marker" ] && ! $secure; then
    compose ps && healthy && ctl endpoint status -w table && return 0
    say "the docker etcd does not answer at $endpoint" && return 1
  elif ! pid=$(pid_of "$state"); then
    if $secure; then say "the secure etcd is not running (no live PID in $(show "$pidfile")); start it with: $(self) up --secure" && return 1; fi
    say "no etcd started by this script is running (no live PID in $(show "$pidfile"))"
    if any_member_runs; then say "but its 3-member cluster (\`$0 cluster up\`) runs:" && cluster_status && return 0 || return 1; fi
  elif [ "$(client_port_of "$pid")" != "$client_port" ]; then
    say "this script's ${label#the } (pid $pid) runs at 127.0.0.1:$(client_port_of "$pid"), not at $endpoint"
  elif healthy; then
    say "running (pid $pid) at $endpoint$(if $secure; then echo ", with TLS, client certificates and users root and app"; fi)"
    ctl endpoint status -w table && return 0
  else
    say "this script's ${label#the } (pid $pid) runs but does not answer at $endpoint; see: $(self) logs$flag" && return 1
  fi
  if ! $secure && healthy; then
    say "the etcd answering at $endpoint was NOT started by this script (perhaps the system service 'etcd');"
    say "its own status:" && ctl endpoint status -w table && return 0
  fi
  if port_answers "$client_port"; then say "something that is not etcd listens at $endpoint"; else say "nothing answers at $endpoint"; fi
  return 1
}

cmd_status() {
  command -v etcdctl >/dev/null 2>&1 || fail "etcdctl is not installed; run scripts/install-deps.sh"
  local rc=0 s
  member_status || rc=$?
  if ! $secure && s=$(secure_running); then
    say "the secure etcd also runs (pid ${s% *}) at https://127.0.0.1:${s#* }; see: $(self) status --secure"
  fi
  return "$rc"
}

cmd_reset() {
  cmd_down
  if $secure; then rm -rf "$state" && say "wiped $(show "$state") (data, certificates, passwords); start afresh with: \
$(self) up --secure" && return 0; fi
  rm -rf "$state/data"
  # The Docker fallback's data is in a volume of docker-compose.yml: the repository's own .etcd/ only.
  if [ -z "${LOCAL_ETCD_DIR:-}" ] && docker_available; then compose down -v >/dev/null 2>&1 || true; fi
  say "wiped $(show "$state/data"); start afresh with: $0 up"
}

# shellcheck source=scripts/etcd-secure.sh
. "$root/scripts/etcd-secure.sh"
# shellcheck source=scripts/etcd-cluster.sh
. "$root/scripts/etcd-cluster.sh"

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  logs)
    if ! $secure && [ -f "$docker_marker" ]; then shift && compose logs "$@" etcd && exit; fi
    [ -f "$log" ] || fail "no log yet at $(show "$log"); start $label with: $(self) up$flag"
    if [ "${2:-}" = -f ]; then tail -n 50 -f "$log"; else tail -n 50 "$log"; fi ;;
  reset) cmd_reset ;;
  cluster) if $secure; then fail "--secure goes with up, down, status, logs or reset"; fi; shift; cmd_cluster "$@" ;;
  -h | --help | help) usage ;;
  "") usage >&2 && exit 2 ;;
  *) echo "etcd.sh: unknown command '$1'" >&2 && usage >&2 && exit 2 ;;
esac
