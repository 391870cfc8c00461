#!/usr/bin/env bash
# A single local etcd member for following the tutorial, bound to 127.0.0.1 only.
#
#   scripts/etcd.sh up       install what is missing, start etcd, wait until it is healthy (idempotent)
#   scripts/etcd.sh down     stop the member this script started, through its PID file (idempotent)
#   scripts/etcd.sh status   is this script's member running, and what does the etcd on its port say
#   scripts/etcd.sh logs     the last lines of etcd's log (`logs -f` to follow)
#   scripts/etcd.sh reset    stop it and wipe its data
#
#   scripts/etcd.sh up --secure     a second member beside the plain one, run the way production etcd runs:
#                                   TLS on https://127.0.0.1:2479, client certificates required, and auth on
#                                   with a user root and a user app that may read and write /app/ only;
#                                   prints the lines that connect to it (idempotent)
#   scripts/etcd.sh down --secure   stop it (`status`, `logs` and `reset` take --secure too; `reset --secure`
#                                   also wipes its certificates and passwords)
#
#   scripts/etcd.sh cluster up               three members instead of one (clients 2379, 22379, 32379),
#                                            wait until all three are healthy (idempotent)
#   scripts/etcd.sh cluster status           each member: running or not, its pid, which one leads
#   scripts/etcd.sh cluster stop-member N    stop member N (1-3); the other two keep serving
#   scripts/etcd.sh cluster start-member N   start it again on its own data: it rejoins and catches up
#   scripts/etcd.sh cluster down             stop all three (`cluster reset` also wipes their data)
#
# Data, log and PID file live in .etcd/ at the top of the repository (git-ignored), or in LOCAL_ETCD_DIR.
# Ports: LOCAL_ETCD_PORT (client, default 2379) and LOCAL_ETCD_PEER_PORT (default: the first free port after
# the client port, so 2380). On another client port, `up` prints the ETCD_ENDPOINTS=... and ETCDCTL_ENDPOINTS=...
# settings that point the examples and etcdctl at it.
# The secure member keeps its data, log, PID file, certificates (from scripts/make-certs.sh) and passwords
# (root.password, app.password) in .etcd/secure/; LOCAL_ETCD_PORT and LOCAL_ETCD_PEER_PORT set its ports
# as they do the plain member's (client default 2479, peer the first free port after it).
# The cluster keeps each member's data, log and PID file in .etcd/cluster/memberN/; its ports are
# LOCAL_CLUSTER_CLIENT_PORTS (default 2379,22379,32379) and LOCAL_CLUSTER_PEER_PORTS (default: each client
# port + 1).
# The single member and the cluster both use 2379 and 2380: run one at a time.
#
# If etcd cannot be installed but Docker with compose is available, `up` falls back to docker-compose.yml.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)

# `--secure`, anywhere after the command, turns it to the secure member.
secure=false
args=()
for arg in "$@"; do
  if [ "$arg" = --secure ]; then secure=true; else args+=("$arg"); fi
done
set -- ${args[@]+"${args[@]}"}

base="${LOCAL_ETCD_DIR:-$root/.etcd}"
secure_state="$base/secure"
certs="$secure_state/certs"
root_password="$secure_state/root.password"
app_password="$secure_state/app.password"
app_prefix=/app/
if $secure; then
  state=$secure_state
  default_port=2479
  flag=" --secure" # repeated in the commands this script prints
else
  state=$base
  default_port=2379
  flag=""
fi
data="$state/data"
log="$state/etcd.log"
pidfile="$state/etcd.pid"
docker_marker="$base/docker"
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

# The PID in a PID file, if that process still runs.
live_etcd_pid() {
  [ -f "$1" ] || return 1
  local pid
  pid=$(cat "$1")
  # The PID must still be an etcd process: PIDs are reused after a reboot or a crash.
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && ps -p "$pid" -o comm= | grep -q etcd; then
    echo "$pid"
  else
    return 1
  fi
}

# The PID of the member this command is about (the secure one with --secure), if it runs.
our_pid() { live_etcd_pid "$pidfile"; }

# The client port a running etcd listens on, read from its own command line.
client_port_of() {
  ps -ww -o args= -p "$1" 2>/dev/null |
    sed -n 's|.*--listen-client-urls https\{0,1\}://127\.0\.0\.1:\([0-9][0-9]*\).*|\1|p'
}

# The client port: LOCAL_ETCD_PORT if set; else the port of the member this script runs; else 2379.
if [ -n "${LOCAL_ETCD_PORT:-}" ]; then
  client_port=$LOCAL_ETCD_PORT
elif pid=$(our_pid) && port=$(client_port_of "$pid") && [ -n "$port" ]; then
  client_port=$port
else
  client_port=$default_port
fi
if $secure; then endpoint="https://127.0.0.1:$client_port"; else endpoint="127.0.0.1:$client_port"; fi

# etcdctl at one endpoint with only the flags given here: it refuses a flag that an ETCDCTL_* variable also
# sets, users are told to `export ETCDCTL_ENDPOINTS=...`, and TLS or user settings meant for one member would
# break the calls to another.
ctl_at() {
  local at=$1
  shift
  env -u ETCDCTL_ENDPOINTS -u ETCDCTL_DIAL_TIMEOUT -u ETCDCTL_COMMAND_TIMEOUT -u ETCDCTL_WRITE_OUT \
    -u ETCDCTL_CACERT -u ETCDCTL_CERT -u ETCDCTL_KEY -u ETCDCTL_USER -u ETCDCTL_PASSWORD \
    -u ETCDCTL_INSECURE_TRANSPORT -u ETCDCTL_INSECURE_SKIP_TLS_VERIFY \
    ETCDCTL_API=3 etcdctl --endpoints="$at" "$@"
}

# etcdctl at this command's member. The secure member gets the CA and the client certificate: with
# --client-cert-auth, etcd takes the certificate's CN, `app`, as the user of a request that carries no
# password, so no password is needed (nor shown in `ps`) for what the app user may do.
ctl() {
  if $secure; then
    ctl_at "$endpoint" --cacert="$certs/ca.crt" --cert="$certs/client.crt" --key="$certs/client.key" "$@"
  else
    ctl_at "$endpoint" "$@"
  fi
}

healthy() {
  command -v etcdctl >/dev/null 2>&1 && ctl --dial-timeout=1s --command-timeout=2s endpoint health >/dev/null 2>&1
}

status_table() {
  ctl --dial-timeout=1s --command-timeout=2s endpoint status -w table
}

# Whether etcd could not bind 127.0.0.1:PORT. A listener there is not the only thing that stops it: so does
# a connection whose local end is that port (any program's outgoing connection, while open and for a minute
# after it closes, in TIME-WAIT), though it accepts nothing. So the test is to bind the port the way etcd
# does (with SO_REUSEADDR), with perl, which every Debian, Ubuntu and macOS system has. Without perl, only a
# listener is found: something that accepts a connection.
port_in_use() {
  if command -v perl >/dev/null 2>&1; then
    local bound=0
    perl -MSocket -e '
      socket(my $s, PF_INET, SOCK_STREAM, 0) or exit 2;
      setsockopt($s, SOL_SOCKET, SO_REUSEADDR, 1) or exit 2;
      exit(bind($s, pack_sockaddr_in($ARGV[0], INADDR_LOOPBACK)) ? 0 : 1);' "$1" || bound=$?
    case $bound in
      0) return 1 ;;
      1) return 0 ;;
    esac
  fi
  port_answers "$1"
}

# Whether something accepts connections at 127.0.0.1:PORT.
port_answers() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A complete command that starts this script's member on two ports that are free right now.
other_ports_command() {
  local p=$((default_port + 20000)) tries=0
  while [ "$p" = "$client_port" ] || port_in_use "$p" || port_in_use $((p + 1)); do
    p=$((p + 2))
    tries=$((tries + 1))
    [ "$tries" -ge 50 ] && break
  done
  local dir=""
  [ -n "${LOCAL_ETCD_DIR:-}" ] && dir="LOCAL_ETCD_DIR=$LOCAL_ETCD_DIR "
  echo "  ${dir}LOCAL_ETCD_PORT=$p LOCAL_ETCD_PEER_PORT=$((p + 1)) $0 up$flag"
  if $secure; then
    echo "  then use the lines it prints"
  else
    echo "  then: ETCD_ENDPOINTS=127.0.0.1:$p cargo run -p kv"
  fi
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
      fail "etcd did not become healthy within ${start_limit}s; see $0 logs$flag"
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
  if any_member_runs; then
    cluster_ports
    fail "the 3-member cluster of \`$0 cluster up\` runs at $(cluster_endpoints). It and the single member
both use 127.0.0.1:2379 and 2380; run one at a time. Use the cluster:
  ETCD_ENDPOINTS=$(cluster_endpoints) cargo run -p kv
or stop it first:
  $(self) cluster down"
  fi
  if ! "$root/scripts/install-deps.sh"; then
    if docker_available; then up_with_docker; return 0; fi
    fail "prerequisites are missing and could not be installed (see above)"
  fi
  if port_in_use "$client_port"; then
    local s
    if s=$(secure_running) && [ "${s#* }" = "$client_port" ]; then
      fail "port $client_port is the secure member's (\`$0 up --secure\`, pid ${s% *}); give the plain one other ports:
$(other_ports_command)"
    fi
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
  # Ctrl-C pressed in this terminal later. `env -u`: etcd reads ETCD_* variables as flags, and the secure
  # member's users are told to `export ETCD_PASSWORD=...`.
  local detach=nohup
  command -v setsid >/dev/null 2>&1 && detach=setsid
  "$detach" env -u ETCD_ENDPOINTS -u ETCD_PASSWORD etcd \
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

plain_down() {
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
    if any_member_runs; then
      say "the 3-member cluster runs; stop it with: $(self) cluster down"
    elif healthy; then
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

plain_status() {
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
    if any_member_runs; then
      say "but its 3-member cluster (\`$0 cluster up\`) runs:"
      cluster_status
      return
    fi
  fi
  if healthy; then
    say "the etcd answering at $endpoint was NOT started by this script (perhaps the system service 'etcd');"
    say "its own status:"
    status_table
    return 0
  fi
  if port_answers "$client_port"; then
    say "something that is not etcd listens at $endpoint"
  elif port_in_use "$client_port"; then
    say "nothing answers at $endpoint, and its port is taken all the same (by a connection's local end, for example)"
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

# `down` and `status` of the plain member say in one line when the secure one runs beside it.
cmd_down() {
  plain_down
  local s
  if s=$(secure_running); then
    say "the secure etcd (pid ${s% *}) at https://127.0.0.1:${s#* } keeps running; stop it with: $(self) down --secure"
  fi
}

cmd_status() {
  local rc=0 s
  plain_status || rc=$?
  if s=$(secure_running); then
    say "the secure etcd also runs (pid ${s% *}) at https://127.0.0.1:${s#* }; see: $(self) status --secure"
  fi
  return "$rc"
}

# ---- the secure member (`scripts/etcd.sh up --secure` ...) ----

# "PID PORT" of the secure member, if it runs.
secure_running() {
  local pid
  pid=$(live_etcd_pid "$secure_state/etcd.pid") || return 1
  echo "$pid $(client_port_of "$pid")"
}

# A path as the user types it: relative to the repository when inside it, quoted for the shell if needed.
shell_path() { printf '%q' "$(show "$1")"; }

# Runs etcdctl at the secure member (the output is dropped) or fails with what it says and why it ran.
setup_step() {
  local what=$1 out
  shift
  out=$(ctl --dial-timeout=2s --command-timeout=5s "$@" 2>&1) ||
    fail "could not $what on the secure etcd at $endpoint: $(echo "$out" | grep -m1 '^Error:' || echo "$out" | tail -n 1)"
}

# A random password in FILE, readable by its owner only, unless FILE holds one already.
new_password() {
  [ -s "$1" ] && return 0
  (umask 077 && openssl rand -hex 12 >"$1") || fail "could not write a password into $(show "$1") with openssl"
}

# The users and the role, made while auth is off: on the first start, or after a start that stopped halfway.
# Once auth is on they live in etcd's data, and a restart or a second `up --secure` changes nothing.
ensure_users() {
  local users
  # Before auth is enabled anyone may list the users; after, only root may, and etcd answers the client
  # certificate's user (app) with "permission denied".
  if ! users=$(ctl --dial-timeout=2s --command-timeout=5s user list 2>&1); then
    [[ "$users" == *"permission denied"* ]] ||
      fail "cannot tell whether auth is on at $endpoint: $(echo "$users" | grep -m1 '^Error:' || echo "$users" | tail -n 1)"
    if [ ! -s "$root_password" ] || [ ! -s "$app_password" ]; then
      fail "auth is on at $endpoint, but the passwords are missing from $(show "$secure_state"); start afresh:
  $(self) reset --secure && $(self) up --secure"
    fi
    return 0
  fi
  new_password "$root_password"
  new_password "$app_password"
  local user file
  for user in root app; do
    file=$root_password
    [ "$user" = app ] && file=$app_password
    # The password goes on etcdctl's stdin, never on its command line, which `ps` shows to everyone.
    if grep -qx "$user" <<<"$users"; then
      setup_step "set the password of user $user" user passwd "$user" --interactive=false <"$file"
    else
      setup_step "add user $user" user add "$user" --interactive=false <"$file"
    fi
  done
  # etcd refuses `auth enable` unless root has the root role.
  setup_step "grant user root the role root" user grant-role root root
  ctl --dial-timeout=2s --command-timeout=5s role get app >/dev/null 2>&1 || setup_step "add role app" role add app
  setup_step "let role app read and write $app_prefix" role grant-permission app --prefix=true readwrite "$app_prefix"
  setup_step "grant user app the role app" user grant-role app app
  setup_step "enable auth" auth enable
  say "created users root and app (role app: read and write $app_prefix), and enabled auth"
}

secure_next_steps() {
  local ca cert key
  ca=$(shell_path "$certs/ca.crt")
  cert=$(shell_path "$certs/client.crt")
  key=$(shell_path "$certs/client.key")
  say "secure etcd (TLS, client certificates, users) is healthy at $endpoint"
  say "users: root (password in $(show "$root_password")), app (password in $(show "$app_password"), may read and write $app_prefix only)"
  say "try, from the repository's top folder:"
  echo "  export ETCD_PASSWORD=\"\$(cat $(shell_path "$app_password"))\""
  # The topics call the private key --key-file: their own --key names an etcd key.
  echo "  cargo run -p secure -- --endpoints $endpoint --cacert $ca --cert $cert --key-file $key --user app"
  # No password here: with --client-cert-auth, etcd takes the certificate's CN, app, as the user.
  echo "  etcdctl --endpoints $endpoint --cacert $ca --cert $cert --key $key get $app_prefix --prefix"
}

secure_up() {
  local pid port
  if pid=$(our_pid); then
    port=$(client_port_of "$pid")
    if [ -n "$port" ] && [ "$port" != "$client_port" ]; then
      fail "this script's secure etcd (pid $pid) already runs at https://127.0.0.1:$port, not at $endpoint; to move it:
  $(self) down --secure && LOCAL_ETCD_PORT=$client_port $(self) up --secure"
    fi
    wait_healthy "$pid"
    say "already running (pid $pid) at $endpoint"
    ensure_users
    secure_next_steps
    return 0
  fi
  "$root/scripts/install-deps.sh" || fail "prerequisites are missing and could not be installed (see above)"
  if port_in_use "$client_port"; then
    local plain
    if plain=$(live_etcd_pid "$base/etcd.pid") && [ "$(client_port_of "$plain")" = "$client_port" ]; then
      fail "port $client_port is the plain member's (\`$0 up\`, pid $plain); give the secure one other ports:
$(other_ports_command)"
    fi
    fail "port $client_port is taken; free it, or use other ports:
$(other_ports_command)"
  fi
  local peer_port
  peer_port=$(choose_peer_port)
  "$root/scripts/make-certs.sh" "$certs" || fail "could not make the certificates in $(show "$certs") (see above)"

  mkdir -p "$data"
  local client_url="https://127.0.0.1:$client_port" peer_url="http://127.0.0.1:$peer_port"
  # Detached and without ETCD_* variables, as the plain member. Clients must speak TLS and show a certificate
  # signed by this CA (--client-cert-auth); the peer port stays plain HTTP on 127.0.0.1.
  local detach=nohup
  command -v setsid >/dev/null 2>&1 && detach=setsid
  "$detach" env -u ETCD_ENDPOINTS -u ETCD_PASSWORD etcd \
    --name etcd-by-example-secure \
    --data-dir "$data" \
    --listen-client-urls "$client_url" \
    --advertise-client-urls "$client_url" \
    --listen-peer-urls "$peer_url" \
    --initial-advertise-peer-urls "$peer_url" \
    --initial-cluster "etcd-by-example-secure=$peer_url" \
    --initial-cluster-state new \
    --cert-file "$certs/server.crt" \
    --key-file "$certs/server.key" \
    --trusted-ca-file "$certs/ca.crt" \
    --client-cert-auth \
    >>"$log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$pidfile"
  say "starting the secure etcd (pid $pid) on 127.0.0.1, client port $client_port (TLS), peer port $peer_port"
  say "data in $(show "$data"), certificates in $(show "$certs"), log in $(show "$log")"
  wait_healthy "$pid"
  ensure_users
  secure_next_steps
}

secure_down() {
  local pid
  if ! pid=$(our_pid); then
    rm -f "$pidfile"
    say "the secure etcd is not running (no live PID in $(show "$pidfile"))"
    return 0
  fi
  stop_pid "$pid" "the secure etcd"
  rm -f "$pidfile"
  say "stopped the secure etcd (pid $pid); its data, certificates and passwords stay in $(show "$state")"
}

secure_status() {
  command -v etcdctl >/dev/null 2>&1 || fail "etcdctl is not installed; run scripts/install-deps.sh"
  local pid port
  if ! pid=$(our_pid); then
    say "the secure etcd is not running (no live PID in $(show "$pidfile")); start it with: $(self) up --secure"
    return 1
  fi
  port=$(client_port_of "$pid")
  if [ -n "$port" ] && [ "$port" != "$client_port" ]; then
    say "note: LOCAL_ETCD_PORT=$client_port, but the secure etcd runs at https://127.0.0.1:$port; showing it"
    client_port=$port
    endpoint="https://127.0.0.1:$port"
  fi
  if ! healthy; then
    say "the secure etcd (pid $pid) runs but does not answer at $endpoint; see: $(self) logs --secure"
    return 1
  fi
  say "running (pid $pid) at $endpoint, with TLS, client certificates and users root and app"
  status_table
}

secure_logs() {
  [ -f "$log" ] || fail "no log yet at $(show "$log"); start the secure etcd with: $(self) up --secure"
  if [ "${1:-}" = "-f" ]; then tail -n 50 -f "$log"; else tail -n 50 "$log"; fi
}

secure_reset() {
  secure_down
  rm -rf "$secure_state"
  say "wiped $(show "$secure_state") (data, certificates, passwords); start afresh with: $(self) up --secure"
}

# ---- the local 3-member cluster (`scripts/etcd.sh cluster ...`) ----

cluster_dir="$base/cluster"
cluster_ports_file="$cluster_dir/ports"
cluster_members=(1 2 3)
cluster_token=etcd-by-example-cluster

# This script as the user runs it again, with LOCAL_ETCD_DIR when it is set.
self() {
  local dir=""
  [ -n "${LOCAL_ETCD_DIR:-}" ] && dir="LOCAL_ETCD_DIR=$LOCAL_ETCD_DIR "
  echo "$dir$0"
}

member_dir() { echo "$cluster_dir/member$1"; }
member_pidfile() { echo "$(member_dir "$1")/etcd.pid"; }
member_log() { echo "$(member_dir "$1")/etcd.log"; }
member_has_data() { [ -d "$(member_dir "$1")/data/member" ]; }
member_endpoint() { echo "127.0.0.1:${cports[$1 - 1]}"; }

# The PID of member N if it runs: the process must still be an etcd on member N's data directory.
member_pid() {
  local file pid
  file=$(member_pidfile "$1")
  [ -f "$file" ] || return 1
  pid=$(cat "$file")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
    ps -ww -o args= -p "$pid" 2>/dev/null | grep -qF -- "--data-dir $(member_dir "$1")/data"; then
    echo "$pid"
  else
    return 1
  fi
}

any_member_runs() {
  local n
  for n in "${cluster_members[@]}"; do member_pid "$n" >/dev/null && return 0; done
  return 1
}

cluster_endpoints() {
  local n out=""
  for n in "${cluster_members[@]}"; do out="$out${out:+,}$(member_endpoint "$n")"; done
  echo "$out"
}

# Fails unless the ports after the first two arguments (the variable and its value) are three port numbers.
check_three_ports() {
  local var=$1 value=$2 p
  shift 2
  [ "$#" -eq 3 ] || fail "$var=$value: give three ports, comma-separated (for example 2379,22379,32379)"
  for p in "$@"; do
    valid_port "$p" || fail "$var=$value: '$p' is not a port number (1-65535)"
  done
}

# Sets cports and pports (client and peer port of members 1-3): from LOCAL_CLUSTER_CLIENT_PORTS and
# LOCAL_CLUSTER_PEER_PORTS, else from the ports recorded when the cluster was created, else the defaults.
# Client ports given without peer ports get each client port + 1 as its peer port, as 2379 gets 2380.
# A cluster's peer ports are written in its data, so a cluster that has data must keep them: `ports_changed`
# tells whether the variables ask for other ports than the recorded ones.
cluster_ports() {
  local recorded_client="" recorded_peer=""
  if [ -f "$cluster_ports_file" ]; then
    recorded_client=$(sed -n 's/^client //p' "$cluster_ports_file")
    recorded_peer=$(sed -n 's/^peer //p' "$cluster_ports_file")
  fi
  client_list=${LOCAL_CLUSTER_CLIENT_PORTS:-${recorded_client:-2379,22379,32379}}
  local default_peers=2380,22380,32380
  if [ -n "${LOCAL_CLUSTER_CLIENT_PORTS:-}" ]; then
    IFS=, read -r -a cports <<<"$client_list"
    check_three_ports LOCAL_CLUSTER_CLIENT_PORTS "$client_list" ${cports[@]+"${cports[@]}"}
    default_peers="$((cports[0] + 1)),$((cports[1] + 1)),$((cports[2] + 1))"
  fi
  if [ -n "${LOCAL_CLUSTER_PEER_PORTS:-}" ]; then
    peer_list=$LOCAL_CLUSTER_PEER_PORTS
  elif [ -n "${LOCAL_CLUSTER_CLIENT_PORTS:-}" ]; then
    peer_list=$default_peers
  else
    peer_list=${recorded_peer:-$default_peers}
  fi
  IFS=, read -r -a cports <<<"$client_list"
  IFS=, read -r -a pports <<<"$peer_list"
  check_three_ports LOCAL_CLUSTER_CLIENT_PORTS "$client_list" ${cports[@]+"${cports[@]}"}
  check_three_ports LOCAL_CLUSTER_PEER_PORTS "$peer_list" ${pports[@]+"${pports[@]}"}
  local dupes
  dupes=$(printf '%s\n' "${cports[@]}" "${pports[@]}" | sort | uniq -d | tr '\n' ' ')
  [ -z "$dupes" ] || fail "the cluster's six ports must all differ; used twice: $dupes"
  ports_changed=false
  if [ -n "$recorded_client" ] && { [ "$client_list" != "$recorded_client" ] || [ "$peer_list" != "$recorded_peer" ]; }; then
    # The existing members run on the recorded ports: status, stop-member and down look there.
    # up and start-member refuse (refuse_changed_ports).
    ports_changed=true
    IFS=, read -r -a cports <<<"$recorded_client"
    IFS=, read -r -a pports <<<"$recorded_peer"
  fi
  recorded="client ports $recorded_client, peer ports $recorded_peer"
}

refuse_changed_ports() {
  $ports_changed || return 0
  fail "the cluster in $(show "$cluster_dir") was created with $recorded, and its members
know each other by those peer ports. Unset LOCAL_CLUSTER_CLIENT_PORTS and LOCAL_CLUSTER_PEER_PORTS to use
them, or wipe it and start afresh on the new ports:
  $(self) cluster reset"
}

# Whatever answers at one member's ports when that member does not run, in plain words ("" if nothing).
port_holder() {
  local n=$1 port=${cports[$1 - 1]} peer=${pports[$1 - 1]} pid
  if pid=$(our_pid) && [ "$(client_port_of "$pid")" = "$port" ]; then
    echo "the single member of \`$0 up\` (pid $pid) answers at 127.0.0.1:$port"
  elif port_answers "$port"; then
    if command -v etcdctl >/dev/null 2>&1 && ctl_at "127.0.0.1:$port" --dial-timeout=1s --command-timeout=2s \
      endpoint status >/dev/null 2>&1; then
      echo "an etcd that this script's cluster did not start answers at 127.0.0.1:$port (perhaps \`$0 up\` run with another LOCAL_ETCD_DIR, or the system service 'etcd')"
    else
      echo "something that is not etcd listens at 127.0.0.1:$port"
    fi
  elif port_in_use "$port"; then
    echo "port $port is taken, though nothing listens there (by a connection's local end, for example)"
  elif port_answers "$peer"; then
    echo "something listens at member $n's peer port 127.0.0.1:$peer"
  elif port_in_use "$peer"; then
    echo "member $n's peer port $peer is taken, though nothing listens there (by a connection's local end, for example)"
  fi
}

# A complete command that starts the cluster on six ports that are free right now: client ports like
# 12379, 42379, 52379 (the next hundred up if taken), each peer port one above its client port.
cluster_other_ports_command() {
  local off base c found=() peers=()
  for off in 0 100 200 300 400 500 600 700 800 900; do
    for base in 12379 22379 32379 42379 52379 62379; do
      [ "${#found[@]}" -ge 3 ] && break 2
      c=$((base + off))
      if ! port_in_use "$c" && ! port_in_use $((c + 1)) &&
        ! printf '%s\n' "${cports[@]}" "${pports[@]}" | grep -qx -e "$c" -e "$((c + 1))"; then
        found+=("$c")
        peers+=($((c + 1)))
      fi
    done
  done
  local reset=""
  if member_has_data 1; then reset="$(self) cluster reset && "; fi
  local IFS=,
  echo "  ${reset}LOCAL_CLUSTER_CLIENT_PORTS=${found[*]} LOCAL_CLUSTER_PEER_PORTS=${peers[*]} $(self) cluster up"
}

cluster_next_steps() {
  local all leader_line=""
  all=$(cluster_endpoints)
  say "point the examples and etcdctl at all three members:"
  echo "  ETCD_ENDPOINTS=$all cargo run -p kv"
  echo "  export ETCDCTL_ENDPOINTS=$all"
  local leader=""
  if leader=$(cluster_leader); then leader_line=" (the leader is member $leader)"; fi
  say "stop a member$leader_line and start it again; the others keep serving:"
  echo "  $(self) cluster stop-member ${leader:-1}"
  echo "  $(self) cluster start-member ${leader:-1}"
}

# `member_id leader` as member N sees them, read with a serializable request (it answers without a quorum).
member_view() {
  port_answers "${cports[$1 - 1]}" || return 1
  ctl_at "$(member_endpoint "$1")" --dial-timeout=1s --command-timeout=2s endpoint status -w fields 2>/dev/null |
    awk -F' : ' '/^"MemberID"/ { m = $2 } /^"Leader"/ { l = $2 } END { if (m == "") exit 1; print m, l }'
}

# Member N serves linearizable reads: it runs and belongs to a cluster with a quorum.
member_healthy() {
  port_answers "${cports[$1 - 1]}" &&
    ctl_at "$(member_endpoint "$1")" --dial-timeout=1s --command-timeout=2s endpoint health >/dev/null 2>&1
}

# The number (1-3) of the member that leads, as the running members see it.
cluster_leader() {
  local n view ids=() leader=""
  for n in "${cluster_members[@]}"; do
    if view=$(member_view "$n"); then
      ids[n]=${view% *}
      if [ "${view#* }" != 0 ]; then leader=${view#* }; fi
    fi
  done
  [ -n "$leader" ] || return 1
  for n in "${cluster_members[@]}"; do
    if [ "${ids[n]:-}" = "$leader" ]; then echo "$n"; return 0; fi
  done
  return 1
}

start_member_process() {
  local n=$1 dir peer_url client_url initial="" m
  dir=$(member_dir "$n")
  mkdir -p "$dir"
  client_url="http://127.0.0.1:${cports[$n - 1]}"
  peer_url="http://127.0.0.1:${pports[$n - 1]}"
  for m in "${cluster_members[@]}"; do
    initial="$initial${initial:+,}member$m=http://127.0.0.1:${pports[$m - 1]}"
  done
  # As for the single member: detached, so it outlives this script and ignores Ctrl-C in this terminal.
  # On a member that has data, etcd ignores the --initial-* flags: it rejoins with what its data says.
  local detach=nohup
  command -v setsid >/dev/null 2>&1 && detach=setsid
  "$detach" env -u ETCD_ENDPOINTS etcd \
    --name "member$n" \
    --data-dir "$dir/data" \
    --listen-client-urls "$client_url" \
    --advertise-client-urls "$client_url" \
    --listen-peer-urls "$peer_url" \
    --initial-advertise-peer-urls "$peer_url" \
    --initial-cluster "$initial" \
    --initial-cluster-token "$cluster_token" \
    --initial-cluster-state new \
    >>"$dir/etcd.log" 2>&1 </dev/null &
  echo "$!" >"$(member_pidfile "$n")"
  say "starting member $n (pid $!): client 127.0.0.1:${cports[$n - 1]}, peer 127.0.0.1:${pports[$n - 1]}, log $(show "$dir/etcd.log")"
}

# Waits until each member given is healthy. Returns 1 with the reason in start_error when one exits (its
# log's last lines go to stderr) or after start_limit.
wait_members_healthy() {
  local n deadline=$((SECONDS + start_limit)) pending=("$@")
  while [ "${#pending[@]}" -gt 0 ]; do
    local still=()
    for n in "${pending[@]}"; do
      if ! member_pid "$n" >/dev/null; then
        echo "--- last lines of $(show "$(member_log "$n")") ---" >&2
        tail -n 20 "$(member_log "$n")" >&2 || true
        rm -f "$(member_pidfile "$n")"
        start_error="member $n exited during start-up (see above)"
        return 1
      fi
      member_healthy "$n" || still+=("$n")
    done
    pending=(${still[@]+"${still[@]}"})
    [ "${#pending[@]}" -eq 0 ] && break
    if [ "$SECONDS" -ge "$deadline" ]; then
      start_error="member(s) ${pending[*]} did not become healthy within ${start_limit}s. A member serves only
while a quorum (2 of 3) runs; see: $(self) cluster status, and the logs in $(show "$cluster_dir")"
      return 1
    fi
    sleep 0.2
  done
}

stop_pid() {
  local pid=$1 what=$2
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  say "$what (pid $pid) did not stop within 10s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
}

refuse_single_member() {
  local pid
  if pid=$(our_pid); then
    fail "the single member of \`$0 up\` runs (pid $pid) at 127.0.0.1:$(client_port_of "$pid"). It and the
cluster both use 127.0.0.1:2379 and 2380 by default, and this state folder: run one at a time. Stop it first:
  $(self) down"
  fi
  if [ -f "$docker_marker" ]; then
    fail "the single member of \`$0 up\` runs in Docker (docker-compose.yml) on 127.0.0.1:2379. Stop it first:
  $(self) down"
  fi
}

cluster_up() {
  cluster_ports
  refuse_changed_ports
  refuse_single_member
  local n with_data=() without_data=() to_start=()
  for n in "${cluster_members[@]}"; do
    if member_has_data "$n"; then with_data+=("$n"); else without_data+=("$n"); fi
  done
  if [ "${#with_data[@]}" -gt 0 ] && [ "${#without_data[@]}" -gt 0 ]; then
    fail "member(s) ${without_data[*]} have no data in $(show "$cluster_dir") while the others do, so they cannot
rejoin; wipe the cluster and start afresh:
  $(self) cluster reset && $(self) cluster up"
  fi
  for n in "${cluster_members[@]}"; do
    member_pid "$n" >/dev/null || to_start+=("$n")
  done
  if [ "${#to_start[@]}" -eq 0 ]; then
    wait_members_healthy "${cluster_members[@]}" || fail "$start_error"
    say "the cluster is already running (pids $(member_pid 1), $(member_pid 2), $(member_pid 3)) at $(cluster_endpoints)"
    cluster_next_steps
    return 0
  fi
  "$root/scripts/install-deps.sh" ||
    fail "prerequisites are missing and could not be installed (see above). With Docker, the same cluster:
  docker compose --profile cluster up -d etcd-1 etcd-2 etcd-3"
  local holder
  for n in "${to_start[@]}"; do
    holder=$(port_holder "$n")
    if [ -z "$holder" ]; then continue; fi
    if [[ "$holder" == "the single member"* ]]; then
      fail "$holder; it and the cluster cannot both run. Stop it first:
  $(self) down"
    fi
    local why="use other ports"
    if member_has_data 1; then
      why="start a new cluster on other ports (its members know each other by their peer ports, so this wipes the current one's data)"
    fi
    fail "member $n cannot start: $holder. Free the port, or $why:
$(cluster_other_ports_command)"
  done
  if [ "${#without_data[@]}" -eq 3 ]; then
    mkdir -p "$cluster_dir"
    printf 'client %s\npeer %s\n' "$client_list" "$peer_list" >"$cluster_ports_file"
    say "creating a new 3-member cluster in $(show "$cluster_dir")"
  fi
  for n in "${to_start[@]}"; do start_member_process "$n"; done
  if ! wait_members_healthy "${cluster_members[@]}"; then
    if [ "${#without_data[@]}" -eq 3 ]; then
      # A cluster that never came up holds nothing: stop what started and wipe it, so that the next
      # `cluster up` starts clean instead of finding some members with data and some without.
      cluster_down >/dev/null
      rm -rf "$cluster_dir"
      fail "$start_error
The new cluster did not come up; its members are stopped and its data wiped. Once the cause is fixed:
  $(self) cluster up"
    fi
    fail "$start_error"
  fi
  say "the cluster is healthy: members 1, 2, 3 (pids $(member_pid 1), $(member_pid 2), $(member_pid 3)) at $(cluster_endpoints)"
  cluster_next_steps
}

# Stops the followers first, then the leader. A leader that gets SIGTERM hands its leadership to a follower it
# is connected to, and waits up to 7 s for that when the follower is stopping too; once the followers have
# dropped their connections (at once on SIGTERM), it has no one to hand over to and just stops.
cluster_down() {
  local n pid leader="" pids=() names=()
  if any_member_runs; then
    cluster_ports
    leader=$(cluster_leader) || true
  fi
  for n in "${cluster_members[@]}"; do
    if pid=$(member_pid "$n"); then
      if [ "$n" != "$leader" ]; then kill -TERM "$pid" 2>/dev/null || true; fi
      pids+=("$pid")
      names+=("$n")
    else
      rm -f "$(member_pidfile "$n")"
      say "member $n is not running"
    fi
  done
  [ "${#pids[@]}" -gt 0 ] || return 0
  if [ -n "$leader" ] && [ "${#pids[@]}" -gt 1 ]; then
    # The followers drop their peer connections at once; then the leader has no one to hand over to.
    sleep 0.3
    kill -TERM "$(member_pid "$leader")" 2>/dev/null || true
  fi
  local i
  for i in "${!pids[@]}"; do
    stop_pid "${pids[i]}" "member ${names[i]}"
    rm -f "$(member_pidfile "${names[i]}")"
    if [ "${names[i]}" = "$leader" ]; then
      say "stopped member ${names[i]} (pid ${pids[i]}, the leader)"
    else
      say "stopped member ${names[i]} (pid ${pids[i]})"
    fi
  done
  say "the data stays in $(show "$cluster_dir"); start again with: $(self) cluster up"
}

cluster_reset() {
  cluster_down
  rm -rf "$cluster_dir"
  say "wiped $(show "$cluster_dir"); start afresh with: $(self) cluster up"
}

member_arg() {
  [[ "${1:-}" =~ ^[123]$ ]] || fail "which member? give 1, 2 or 3 (for example: $0 cluster $2 1)"
}

cluster_stop_member() {
  local n=$1 pid leader="" m running=()
  cluster_ports
  if ! pid=$(member_pid "$n"); then
    rm -f "$(member_pidfile "$n")"
    say "member $n is not running; start it with: $(self) cluster start-member $n"
    return 0
  fi
  leader=$(cluster_leader) || true
  stop_pid "$pid" "member $n"
  rm -f "$(member_pidfile "$n")"
  local was=""
  if [ "$leader" = "$n" ]; then was=", the leader"; fi
  say "stopped member $n (pid $pid$was)"
  for m in "${cluster_members[@]}"; do member_pid "$m" >/dev/null && running+=("$m"); done
  case "${#running[@]}" in
    2) say "members ${running[0]} and ${running[1]} still run: a quorum (2 of 3), so the cluster keeps serving"
       if [ -n "$was" ]; then say "they elect a new leader among themselves (etcd's election timeout is 1s by default)"; fi ;;
    1) say "only member ${running[0]} still runs: without a quorum (2 of 3) the cluster refuses writes and"
       say "linearizable reads until another member returns" ;;
    *) say "no member runs now" ;;
  esac
  say "start it again with: $(self) cluster start-member $n"
}

cluster_start_member() {
  local n=$1 pid
  cluster_ports
  refuse_changed_ports
  if pid=$(member_pid "$n"); then
    say "member $n already runs (pid $pid) at $(member_endpoint "$n")"
    return 0
  fi
  member_has_data "$n" ||
    fail "member $n has no data yet in $(show "$(member_dir "$n")"); create the cluster with: $(self) cluster up"
  refuse_single_member
  local holder
  holder=$(port_holder "$n")
  [ -z "$holder" ] || fail "member $n cannot start: $holder"
  start_member_process "$n"
  wait_members_healthy "$n" || fail "$start_error"
  local leader
  leader=$(cluster_leader) || leader="?"
  say "member $n (pid $(member_pid "$n")) rejoined the cluster and is healthy at $(member_endpoint "$n"); the leader is member $leader"
}

cluster_status() {
  command -v etcdctl >/dev/null 2>&1 || fail "etcdctl is not installed; run scripts/install-deps.sh"
  cluster_ports
  if $ports_changed; then
    say "note: LOCAL_CLUSTER_*_PORTS ask for other ports than this cluster's ($recorded); showing its own"
  fi
  say "3-member cluster in $(show "$cluster_dir"): clients $(cluster_endpoints)"
  local n pid view ids=() leaders=() states=() healthy_count=0
  for n in "${cluster_members[@]}"; do
    if pid=$(member_pid "$n") && view=$(member_view "$n"); then
      ids[n]=${view% *}
      leaders[n]=${view#* }
    fi
  done
  for n in "${cluster_members[@]}"; do
    local line="  member $n  $(member_endpoint "$n")  "
    if pid=$(member_pid "$n"); then
      if [ -z "${ids[n]:-}" ]; then
        line+="running (pid $pid) but does not answer; see $(show "$(member_log "$n")")"
      elif ! member_healthy "$n"; then
        line+="running (pid $pid) but not serving: no quorum (2 of 3 members) with it"
      elif [ "${leaders[n]}" = "${ids[n]}" ]; then
        line+="running (pid $pid), leader"
        healthy_count=$((healthy_count + 1))
      else
        line+="running (pid $pid), follower"
        healthy_count=$((healthy_count + 1))
      fi
    else
      line+="not running"
      local holder
      holder=$(port_holder "$n")
      if [ -n "$holder" ]; then
        line+="; but $holder"
      elif member_has_data "$n" && any_member_runs; then
        line+="; start it: $(self) cluster start-member $n"
      fi
    fi
    echo "$line"
  done
  case "$healthy_count" in
    3) say "all 3 members are healthy"; return 0 ;;
    2) say "2 of 3 members are healthy: a quorum, so the cluster serves reads and writes" ;;
    *) if any_member_runs; then
         say "$healthy_count of 3 members are healthy: no quorum (2 of 3), so the cluster refuses writes"
       elif member_has_data 1; then
         say "the cluster is stopped; start it with: $(self) cluster up"
       else
         say "no cluster yet; create it with: $(self) cluster up"
       fi ;;
  esac
  return 1
}

cmd_cluster() {
  case "${1:-}" in
    up) cluster_up ;;
    down) cluster_down ;;
    status) cluster_status ;;
    reset) cluster_reset ;;
    stop-member) member_arg "${2:-}" stop-member; cluster_stop_member "$2" ;;
    start-member) member_arg "${2:-}" start-member; cluster_start_member "$2" ;;
    "") usage >&2; exit 2 ;;
    *) echo "etcd.sh: unknown cluster command '$1'" >&2; usage >&2; exit 2 ;;
  esac
}

if $secure; then
  case "${1:-}" in
    up) secure_up ;;
    down) secure_down ;;
    status) secure_status ;;
    logs) shift; secure_logs "$@" ;;
    reset) secure_reset ;;
    "") usage >&2; exit 2 ;;
    *) fail "--secure goes with up, down, status, logs or reset, not with '$1'" ;;
  esac
  exit
fi

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  logs) shift; cmd_logs "$@" ;;
  reset) cmd_reset ;;
  cluster) shift; cmd_cluster "$@" ;;
  -h | --help | help) usage ;;
  "") usage >&2; exit 2 ;;
  *) echo "etcd.sh: unknown command '$1'" >&2; usage >&2; exit 2 ;;
esac
