# The secure member of scripts/etcd.sh (`scripts/etcd.sh up --secure` ...), which sources this file.
# It runs the plain member's command line with these flags added; its peer port stays plain HTTP.
# shellcheck shell=bash disable=SC2154 # certs, state, endpoint: set by scripts/etcd.sh
tls_flags=(
  --cert-file "$certs/server.crt"   # the server's certificate (for 127.0.0.1, ::1 and localhost) and
  --key-file "$certs/server.key"    # its key: clients must speak TLS
  --trusted-ca-file "$certs/ca.crt" # the CA whose client certificates it accepts
  --client-cert-auth                # and every client must show one
)

# Runs etcdctl at the secure member (the output is dropped) or fails with what it says and why it ran.
setup_step() {
  local out
  out=$(ctl "${@:2}" 2>&1) || fail "could not $1 on the secure etcd at $endpoint: ${out##*$'\n'}"
}

# The users and the role, made while auth is off: on the first start, or after a start that stopped halfway.
# Once auth is on they live in etcd's data, and a restart or a second `up --secure` changes nothing.
ensure_users() {
  local users user
  # Before auth is enabled anyone may list the users; after, only root may, and etcd answers the client
  # certificate's user (app) with "permission denied".
  if ! users=$(ctl user list 2>&1); then
    [[ "$users" == *"permission denied"* ]] || fail "cannot tell whether auth is on at $endpoint: ${users##*$'\n'}"
    [ -s "$state/root.password" ] && [ -s "$state/app.password" ] || fail "auth is on at $endpoint, but the \
passwords are missing from $(show "$state"); start afresh:
  $(self) reset --secure && $(self) up --secure"
    return 0
  fi
  for user in root app; do
    # A random password, readable by its owner only, given to etcdctl on its stdin: `ps` shows command lines.
    [ -s "$state/$user.password" ] || (umask 077 && openssl rand -hex 12 >"$state/$user.password") ||
      fail "could not write a password into $(show "$state/$user.password") with openssl"
    if grep -qx "$user" <<<"$users"; then set -- passwd; else set -- add; fi
    setup_step "$1 user $user" user "$1" "$user" --interactive=false <"$state/$user.password"
  done
  setup_step "grant user root the role root" user grant-role root root # or etcd refuses `auth enable`
  ctl role get app >/dev/null 2>&1 || setup_step "add role app" role add app
  setup_step "let role app read and write /app/" role grant-permission app --prefix=true readwrite /app/
  setup_step "grant user app the role app" user grant-role app app
  setup_step "enable auth" auth enable
  say "created users root and app (role app: read and write /app/), and enabled auth"
}

shell_path() { printf '%q' "$(show "$1")"; } # a path as the user types it: relative, quoted if need be

secure_next_steps() {
  local tls key
  tls="--endpoints $endpoint --cacert $(shell_path "$certs/ca.crt") --cert $(shell_path "$certs/client.crt")"
  key=$(shell_path "$certs/client.key")
  say "secure etcd (TLS, client certificates, users) is healthy at $endpoint"
  say "users: root (password in $(show "$state/root.password")), app (password in $(show "$state/app.password"), may read and write /app/ only)"
  say "try, from the repository's top folder:"
  echo "  export ETCD_PASSWORD=\"\$(cat $(shell_path "$state/app.password"))\""
  # The topics call the private key --key-file: their own --key names an etcd key.
  echo "  cargo run -p secure -- $tls --key-file $key --user app"
  # No password here: with --client-cert-auth, etcd takes the certificate's CN, app, as the user.
  echo "  etcdctl $tls --key $key get /app/ --prefix"
}
