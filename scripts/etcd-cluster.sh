# The local 3-member cluster of scripts/etcd.sh (`scripts/etcd.sh cluster ...`), which sources this file.
# Each member runs the single member's command line with a name, ports and folder of its own, all three in
# --initial-cluster, and an --initial-cluster-token that keeps it from joining another cluster's members.
# shellcheck shell=bash disable=SC2154 # base, root: set by scripts/etcd.sh
cluster_dir="$base/cluster" new_cluster=false
member_dir() { echo "$cluster_dir/member$1"; }
member_pid() { pid_of "$(member_dir "$1")"; }
member_has_data() { [ -d "$(member_dir "$1")/data/member" ]; }
member_endpoint() { echo "127.0.0.1:${cports[$1 - 1]}"; }
any_member_runs() { member_pid 1 >/dev/null || member_pid 2 >/dev/null || member_pid 3 >/dev/null; }
cluster_endpoints() { echo "$(member_endpoint 1),$(member_endpoint 2),$(member_endpoint 3)"; }

# Sets cports and pports, the client and peer ports of members 1-3: the ones the cluster was created with
# (in .etcd/cluster/ports: its members know each other by their peer ports), else LOCAL_CLUSTER_CLIENT_PORTS
# (2379,22379,32379) and LOCAL_CLUSTER_PEER_PORTS (each client port + 1).
cluster_ports() {
  local c=${LOCAL_CLUSTER_CLIENT_PORTS:-2379,22379,32379} p=${LOCAL_CLUSTER_PEER_PORTS:-} port
  if [ -f "$cluster_dir/ports" ]; then
    c=$(sed -n 's/^client //p' "$cluster_dir/ports") p=$(sed -n 's/^peer //p' "$cluster_dir/ports")
    [ "${LOCAL_CLUSTER_CLIENT_PORTS:-$c} ${LOCAL_CLUSTER_PEER_PORTS:-$p}" = "$c $p" ] || say "note: the cluster in \
$(show "$cluster_dir") keeps its ports (client $c, peer $p); for others, first: $(self) cluster reset"
  fi
  [[ "$c" =~ ^[0-9]+,[0-9]+,[0-9]+$ ]] || fail "LOCAL_CLUSTER_CLIENT_PORTS=$c: give three ports, comma-separated"
  IFS=, read -r -a cports <<<"$c"
  [ -n "$p" ] || p="$((cports[0] + 1)),$((cports[1] + 1)),$((cports[2] + 1))"
  [[ "$p" =~ ^[0-9]+,[0-9]+,[0-9]+$ ]] || fail "LOCAL_CLUSTER_PEER_PORTS=$p: give three ports, comma-separated"
  IFS=, read -r -a pports <<<"$p"
  for port in "${cports[@]}" "${pports[@]}"; do valid_port "$port" || fail "$port is not a port number (1-65535)"; done
  [ -z "$(printf '%s\n' "${cports[@]}" "${pports[@]}" | sort | uniq -d)" ] || fail "the cluster's six ports must all differ: $c and $p"
  client_list=$c peer_list=$p
}

# What etcd's "bind: address already in use" on PORT means for the member in DIR, and the command for other
# ports (for a cluster that has data, a new one: its members know each other by their peer ports).
cluster_bind_error() {
  local i c=() p=() reset="" IFS=,
  for i in 0 1 2; do c+=("$(alt "${cports[i]}")") && p+=("$(alt "${pports[i]}")"); done
  $new_cluster || reset="$(self) cluster reset && "
  echo "member ${2##*member} cannot start: etcd could not bind 127.0.0.1:$1 (bind: address already in use): port $1
is taken by another program. Free it, or start ${reset:+a new cluster (this wipes the current one) }on other ports:
  ${reset}LOCAL_CLUSTER_CLIENT_PORTS=${c[*]} LOCAL_CLUSTER_PEER_PORTS=${p[*]} $(self) cluster up"
}

# 1 if member N leads, 0 if it follows, as it sees itself (a serializable request: no quorum needed).
leads() {
  port_answers "${cports[$1 - 1]}" && ctl_at "$(member_endpoint "$1")" endpoint status -w fields 2>/dev/null |
    awk -F' : ' '/^"MemberID"/ { m = $2 } /^"Leader"/ { l = $2 } END { if (m == "") exit 1; print (m == l) }'
}
cluster_leader() { local n; for n in 1 2 3; do [ "$(leads "$n")" != 1 ] || { echo "$n" && return 0; }; done; return 1; }
# Member N serves linearizable reads: it runs and belongs to a cluster with a quorum.
member_healthy() { port_answers "${cports[$1 - 1]}" && ctl_at "$(member_endpoint "$1")" endpoint health >/dev/null 2>&1; }
wait_member() { wait_healthy "$(member_dir "$1")" "member_healthy $1" cluster_bind_error; }

start_member() {
  local n=$1 dir="$cluster_dir/member$1"
  # On a member that has data, etcd ignores the --initial-* flags: it rejoins with what its data says.
  start_etcd "$dir" "member$n" "http://$(member_endpoint "$n")" "http://127.0.0.1:${pports[n - 1]}" \
    "member1=http://127.0.0.1:${pports[0]},member2=http://127.0.0.1:${pports[1]},member3=http://127.0.0.1:${pports[2]}" \
    --initial-cluster-token etcd-by-example-cluster
  say "starting member $n (pid $(cat "$dir/etcd.pid")): client $(member_endpoint "$n"), peer 127.0.0.1:${pports[n - 1]}, log $(show "$dir/etcd.log")"
}

refuse_single_member() {
  local pid where
  if pid=$(pid_of "$base"); then where="runs (pid $pid) at 127.0.0.1:$(client_port_of "$pid")"
  elif [ -f "$base/docker" ]; then where="runs in Docker (docker-compose.yml) on 127.0.0.1:2379"
  else return 0; fi
  fail "the single member of \`$0 up\` $where; it and the cluster both use 127.0.0.1:2379 and 2380 by default, \
and this state folder: run one at a time. Stop it first:
  $(self) down"
}

# A new cluster that did not come up holds nothing: kill its members (SIGTERM can hang on a silent peer), wipe it.
abandon_cluster() {
  local n
  for n in 1 2 3; do kill -KILL "$(member_pid "$n")" 2>/dev/null || true; done
  rm -rf "$cluster_dir" && echo "etcd.sh: the new cluster did not come up; its members are stopped and its data wiped" >&2
}

cluster_up() {
  cluster_ports && refuse_single_member
  local n with_data=0 to_start=() how="is healthy: members 1, 2, 3" all leader
  for n in 1 2 3; do
    if member_has_data "$n"; then with_data=$((with_data + 1)); fi
    member_pid "$n" >/dev/null || to_start+=("$n")
  done
  if [ "$with_data" = 0 ]; then new_cluster=true; fi
  [ "$with_data" = 0 ] || [ "$with_data" = 3 ] || fail "some members have data in $(show "$cluster_dir") and the \
others none, so these cannot join; start afresh:
  $(self) cluster reset && $(self) cluster up"
  if [ "${#to_start[@]}" -gt 0 ]; then
    "$root/scripts/install-deps.sh" || fail "prerequisites are missing and could not be installed (see above). With
Docker, the same cluster: docker compose --profile cluster up -d etcd-1 etcd-2 etcd-3"
    if $new_cluster; then
      mkdir -p "$cluster_dir" && printf 'client %s\npeer %s\n' "$client_list" "$peer_list" >"$cluster_dir/ports"
      say "creating a new 3-member cluster in $(show "$cluster_dir")" && on_fail=abandon_cluster
    fi
    for n in "${to_start[@]}"; do start_member "$n"; done
  else
    how="is already running"
  fi
  for n in 1 2 3; do wait_member "$n"; done
  on_fail=""
  say "the cluster $how (pids $(member_pid 1), $(member_pid 2), $(member_pid 3)) at $(cluster_endpoints)"
  all=$(cluster_endpoints) && leader=$(cluster_leader) || leader=""
  say "point the examples and etcdctl at all three members:"
  echo "  ETCD_ENDPOINTS=$all cargo run -p kv" && echo "  export ETCDCTL_ENDPOINTS=$all"
  say "stop a member${leader:+ (the leader is member $leader)} and start it again; the others keep serving:"
  echo "  $(self) cluster stop-member ${leader:-1}" && echo "  $(self) cluster start-member ${leader:-1}"
}

# Stops the followers first, then the leader. A leader that gets SIGTERM hands its leadership to a follower it
# is connected to, and waits up to 7 s for that when the follower is stopping too; once the followers have
# dropped their connections (at once on SIGTERM), it has no one to hand over to and just stops.
cluster_down() {
  local n pid leader="" pids=()
  if any_member_runs; then cluster_ports >/dev/null && leader=$(cluster_leader) || true; fi
  for n in 1 2 3; do
    if pid=$(member_pid "$n"); then
      pids[n]=$pid
      [ "$n" = "$leader" ] || kill -TERM "$pid" 2>/dev/null || true
    else
      rm -f "$(member_dir "$n")/etcd.pid" && say "member $n is not running"
    fi
  done
  [ "${#pids[@]}" -gt 0 ] || return 0
  if [ -n "${pids[leader]:-}" ]; then sleep 0.3 && kill -TERM "${pids[leader]}" 2>/dev/null || true; fi
  for n in "${!pids[@]}"; do
    stop_pid "${pids[n]}" "member $n" && rm -f "$(member_dir "$n")/etcd.pid"
    say "stopped member $n (pid ${pids[n]}$(if [ "$n" = "$leader" ]; then echo ", the leader"; fi))"
  done
  say "the data stays in $(show "$cluster_dir"); start again with: $(self) cluster up"
}

cluster_stop_member() {
  local n=$1 pid was="" m running=()
  cluster_ports
  if ! pid=$(member_pid "$n"); then
    rm -f "$(member_dir "$n")/etcd.pid"
    say "member $n is not running; start it with: $(self) cluster start-member $n" && return 0
  fi
  [ "$(cluster_leader)" != "$n" ] || was=", the leader"
  stop_pid "$pid" "member $n" && rm -f "$(member_dir "$n")/etcd.pid" && say "stopped member $n (pid $pid$was)"
  for m in 1 2 3; do if member_pid "$m" >/dev/null; then running+=("$m"); fi; done
  case "${#running[@]}" in
    2) say "members ${running[0]} and ${running[1]} still run: a quorum (2 of 3), so the cluster keeps serving"
       if [ -n "$was" ]; then say "they elect a new leader among themselves (etcd's election timeout is 1s by default)"; fi ;;
    *) say "members running: ${running[*]:-none}; without a quorum (2 of 3) the cluster refuses writes and"
       say "linearizable reads until another member returns" ;;
  esac
  say "start it again with: $(self) cluster start-member $n"
}

cluster_start_member() {
  local n=$1 pid leader
  cluster_ports
  if pid=$(member_pid "$n"); then say "member $n already runs (pid $pid) at $(member_endpoint "$n")" && return 0; fi
  member_has_data "$n" || fail "member $n has no data yet in $(show "$(member_dir "$n")"); create the cluster with: $(self) cluster up"
  refuse_single_member
  start_member "$n" && wait_member "$n"
  leader=$(cluster_leader) || leader="?"
  say "member $n (pid $(member_pid "$n")) rejoined the cluster and is healthy at $(member_endpoint "$n"); the leader is member $leader"
}

cluster_status() {
  command -v etcdctl >/dev/null 2>&1 || fail "etcdctl is not installed; run scripts/install-deps.sh"
  cluster_ports
  say "3-member cluster in $(show "$cluster_dir"): clients $(cluster_endpoints)"
  local n pid role serving=0
  for n in 1 2 3; do
    if ! pid=$(member_pid "$n"); then
      role="not running"
      if member_has_data "$n" && any_member_runs; then role+="; start it: $(self) cluster start-member $n"; fi
    elif member_healthy "$n" && role=$(leads "$n"); then
      role="running (pid $pid), $(if [ "$role" = 1 ]; then echo leader; else echo follower; fi)" && serving=$((serving + 1))
    else
      role="running (pid $pid) but not serving: no quorum (2 of 3 members) with it; see $(show "$(member_dir "$n")/etcd.log")"
    fi
    echo "  member $n  $(member_endpoint "$n")  $role"
  done
  case $serving in
    3) say "all 3 members are healthy" && return 0 ;;
    2) say "2 of 3 members are healthy: a quorum, so the cluster serves reads and writes" ;;
    *) if any_member_runs; then say "$serving of 3 members are healthy: no quorum (2 of 3), so the cluster refuses writes"
       elif member_has_data 1; then say "the cluster is stopped; start it with: $(self) cluster up"
       else say "no cluster yet; create it with: $(self) cluster up"; fi ;;
  esac
  return 1
}

cmd_cluster() {
  case "${1:-}" in
    up | down | status) "cluster_$1" ;;
    reset) cluster_down && rm -rf "$cluster_dir" && say "wiped $(show "$cluster_dir"); start afresh with: $(self) cluster up" ;;
    stop-member | start-member)
      [[ "${2:-}" =~ ^[123]$ ]] || fail "which member? give 1, 2 or 3 (for example: $0 cluster $1 1)"
      "cluster_${1/-/_}" "$2" ;;
    "") usage >&2 && exit 2 ;;
    *) echo "etcd.sh: unknown cluster command '$1'" >&2 && usage >&2 && exit 2 ;;
  esac
}
