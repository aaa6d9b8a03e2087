#!/usr/bin/env bash
# SeaweedFS's `weed` binary (Apache-2.0), the S3-compatible object store the tests start in
# temporary directories (fedge/local_s3.py) and an operator can run beside the coordinator:
#
#   scripts/seaweedfs.sh install     build (or reuse) the cached binary, print its path
#   scripts/seaweedfs.sh path        print where the cached binary lives (built or not)
#
# Built from the Go module proxy: `go install` refuses the module (its go.mod has a replace
# directive), so the module is downloaded with `go mod download` and `go build ./weed` runs
# in a writable copy of its folder. The first build takes about ten minutes on two cores;
# later calls reuse the cached binary.
#
# Environment:
#   FEDGE_WEED_CACHE   cache folder (default ~/.cache/fedge/seaweedfs)
#   FEDGE_WEED         a `weed` binary to use instead of building one
# Needs: Go (>= the module's go directive) and network access to the Go module proxy.
set -euo pipefail

MODULE=github.com/seaweedfs/seaweedfs
# A pseudo-version of the main branch that the module proxy serves (SeaweedFS tags its
# releases without the module's major-version suffix, so the proxy lists no tags).
VERSION=v0.0.0-20261109003541-7506e5f91cd6
CACHE="${FEDGE_WEED_CACHE:-${HOME:-/root}/.cache/fedge/seaweedfs}"
BIN="$CACHE/$VERSION/weed"

die() { echo "seaweedfs: $*" >&2; exit 1; }

install() {
  if [[ -n "${FEDGE_WEED:-}" ]]; then
    [[ -x "$FEDGE_WEED" ]] || die "FEDGE_WEED=$FEDGE_WEED is not an executable"
    echo "$FEDGE_WEED"; return
  fi
  if [[ -x "$BIN" ]]; then echo "$BIN"; return; fi
  command -v go >/dev/null 2>&1 || die "'go' not found; install Go (https://go.dev/dl/) first"
  local work
  work="$(mktemp -d)"
  # Expanded now: the trap runs after this function's locals are gone.
  trap "chmod -R u+w '$work' 2>/dev/null; rm -rf '$work'" EXIT
  echo "seaweedfs: downloading $MODULE@$VERSION" >&2
  local dir
  dir="$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "$MODULE@$VERSION" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  [[ -d "$dir" ]] || die "go mod download gave no folder for $MODULE@$VERSION"
  cp -r "$dir" "$work/src"
  chmod -R u+w "$work/src"
  echo "seaweedfs: building weed (about ten minutes on two cores)" >&2
  mkdir -p "$(dirname "$BIN")"
  # -s -w: no symbol table or DWARF (the binary is for running, not debugging).
  (cd "$work/src" && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$BIN.tmp" ./weed)
  mv "$BIN.tmp" "$BIN"
  echo "$BIN"
}

case "${1:-}" in
  install) install ;;
  path) echo "${FEDGE_WEED:-$BIN}" ;;
  *) echo "usage: $0 install|path" >&2; exit 2 ;;
esac
