#!/usr/bin/env bash
# An emulated Raspberry Pi (64-bit Raspberry Pi OS is Debian bookworm on aarch64) for the
# reference device runtime, without hardware and without binfmt_misc:
#
#   scripts/pi-emulated.sh setup              build (or reuse) the cached aarch64 root
#   scripts/pi-emulated.sh device ARGS...     run `fedge device ARGS...` on the emulated Pi
#   scripts/pi-emulated.sh python ARGS...     run the root's python3.11 with fedge importable
#   scripts/pi-emulated.sh path               print where the cached root lives
#
# The root is Debian's own arm64 packages (python3.11 and what it links), unpacked by
# `debootstrap --foreign` plus `dpkg-deb -x`; the device extra's aarch64 cp311 wheels are
# fetched on the host with `pip download --platform` and installed into the root with
# `pip install --target` (nothing runs pip under emulation). Every aarch64 binary is started
# explicitly as `qemu-aarch64 -cpu cortex-a76 -L ROOT` (the Raspberry Pi 5's core), so the
# sandbox needs no binfmt_misc.
#
# QEMU: bookworm's own qemu-user-static (7.2) crashes inside ai-edge-litert >= 2.2's
# interpreter constructor (SIGSEGV; 2.1.6 runs), while QEMU 10 runs 2.3.0. So setup fetches
# the static `qemu-user` 10 from bookworm-backports into the cache with a private apt
# configuration (apt checks the archive signature as usual; the host's apt setup is not
# touched). On an aarch64 host nothing is emulated: the root's python runs natively.
#
# Environment:
#   FEDGE_PI_ROOT        cache folder (default ~/.cache/fedge/pi-bookworm-arm64)
#   FEDGE_DEBIAN_MIRROR  Debian mirror URL (default: the host's first apt source)
#   FEDGE_PI_PYTHON      host Python whose pip fetches the wheels (default: python3)
#   FEDGE_PI_QEMU        a qemu-aarch64 (>= 8) to use instead of the fetched one
#   FEDGE_PI_CPU         emulated core (default cortex-a76; cortex-a72 is the Pi 4's)
# Needs on the host: debootstrap, apt-get and dpkg-deb (Debian: apt-get install
# debootstrap), run as root.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT="${FEDGE_PI_ROOT:-${HOME:-/root}/.cache/fedge/pi-bookworm-arm64}"
HOST_PYTHON="${FEDGE_PI_PYTHON:-python3}"
SITE="$ROOT/opt/fedge-site"
CPU="${FEDGE_PI_CPU:-cortex-a76}"
# The device extra pinned to wheels that exist for aarch64 cp311 on glibc 2.36 (bookworm).
# ai-edge-litert 2.3.0 is the newest with such a wheel today, and the same version the
# export path pins, so the emulated Pi runs exactly the interpreter the tests run natively.
WHEELS=(
  "ai-edge-litert==2.3.0" "numpy==2.4.6" "aiohttp>=3.9" "tenacity>=8.2"
  "flatbuffers>=24.3" "cryptography>=42"
)
# Bumping this (or the list above) rebuilds the cache on the next setup.
STAMP_TEXT="bookworm arm64 python3.11 qemu-user/bookworm-backports | ${WHEELS[*]}"

die() { echo "pi-emulated: $*" >&2; exit 1; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' not found; on Debian: apt-get install $2"
}

debian_mirror() {
  if [[ -n "${FEDGE_DEBIAN_MIRROR:-}" ]]; then echo "$FEDGE_DEBIAN_MIRROR"; return; fi
  local uri=""
  if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    uri="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)"
  fi
  if [[ -z "$uri" && -f /etc/apt/sources.list ]]; then
    uri="$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list)"
  fi
  [[ -n "$uri" ]] || die "no Debian mirror found in the host's apt sources; set FEDGE_DEBIAN_MIRROR"
  echo "$uri"
}

# Sets EMU to the command prefix that runs a root's aarch64 binaries (empty on aarch64).
set_emulator() {
  local root="$1"
  EMU=()
  if [[ "$(uname -m)" != aarch64 ]]; then
    EMU=("${FEDGE_PI_QEMU:-$root/.qemu/usr/bin/qemu-aarch64}" -cpu "$CPU" -L "$root")
  fi
}

fetch_qemu() {
  local into="$1" apt_dir="$1/.apt"
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(debian_mirror) bookworm-backports main" \
    >"$apt_dir/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=$apt_dir/none"
              -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o "APT::Sandbox::User=root")
  apt-get "${opts[@]}" -q update >"$apt_dir/log" 2>&1 \
    || { tail -5 "$apt_dir/log" >&2; die "apt-get update of bookworm-backports failed"; }
  (cd "$apt_dir" && apt-get "${opts[@]}" -q download qemu-user/bookworm-backports >>"$apt_dir/log" 2>&1) \
    || { tail -5 "$apt_dir/log" >&2; die "could not download qemu-user from bookworm-backports"; }
  dpkg-deb -x "$apt_dir"/qemu-user_*.deb "$into/.qemu"
  # The package carries every guest architecture; keep the one we run.
  find "$into/.qemu" \( -type f -o -type l \) ! -path '*/usr/bin/qemu-aarch64' -delete
  rm -rf "$apt_dir"
}

setup() {
  if [[ -f "$ROOT/.fedge-ready" && "$(cat "$ROOT/.fedge-ready")" == "$STAMP_TEXT" ]]; then
    echo "pi-emulated: cached root at $ROOT"
    return
  fi
  need debootstrap debootstrap
  need dpkg-deb dpkg
  need apt-get apt
  [[ "$(id -u)" == 0 ]] || die "debootstrap needs root to build $ROOT"
  local started=$SECONDS staging="$ROOT.partial"
  rm -rf "$staging"
  mkdir -p "$staging"
  echo "pi-emulated: debootstrap (first stage) of bookworm arm64 into $staging"
  # --foreign only downloads and unpacks; the second stage (maintainer scripts) would need
  # to run aarch64 code as init, which is neither needed nor possible without binfmt.
  debootstrap --foreign --arch=arm64 --variant=minbase \
    --include=python3.11,libpython3.11,ca-certificates \
    bookworm "$staging" "$(debian_mirror)" >"$staging.log" 2>&1 \
    || { tail -20 "$staging.log" >&2; die "debootstrap failed (log: $staging.log)"; }
  # The first stage leaves the --include'd packages as .debs; unpack them all.
  for deb in "$staging"/var/cache/apt/archives/*.deb; do
    dpkg-deb -x "$deb" "$staging"
  done
  rm -f "$staging"/var/cache/apt/archives/*.deb
  if [[ "$(uname -m)" != aarch64 && -z "${FEDGE_PI_QEMU:-}" ]]; then
    echo "pi-emulated: fetching qemu-user from bookworm-backports"
    fetch_qemu "$staging"
  fi
  echo "pi-emulated: fetching aarch64 cp311 wheels: ${WHEELS[*]}"
  local platforms=(--platform manylinux2014_aarch64)
  for minor in 17 27 28 31 34 35 36; do platforms+=(--platform "manylinux_2_${minor}_aarch64"); done
  "$HOST_PYTHON" -m pip install --quiet --disable-pip-version-check --no-compile \
    --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 "${platforms[@]}" \
    --target "$staging/opt/fedge-site" "${WHEELS[@]}" >"$staging.pip.log" 2>&1 \
    || { grep -v '^WARNING: Location' "$staging.pip.log" | tail -20 >&2; die "pip could not fetch the aarch64 wheels"; }
  set_emulator "$staging"
  "${EMU[@]}" "$staging/usr/bin/python3.11" -c \
    "import platform, sys; assert platform.machine() == 'aarch64', platform.machine()" \
    || die "the emulated python3.11 does not start"
  echo "$STAMP_TEXT" >"$staging/.fedge-ready"
  rm -rf "$ROOT"
  mv "$staging" "$ROOT"
  rm -f "$staging.log" "$staging.pip.log"
  echo "pi-emulated: first setup took $((SECONDS - started)) s ($(du -sh "$ROOT" | cut -f1)) at $ROOT"
}

emulated_python() {
  [[ -f "$ROOT/.fedge-ready" ]] || die "no emulated root at $ROOT; run: $0 setup"
  # fedge itself is pure Python: the repository goes on the path as it is.
  set_emulator "$ROOT"
  PYTHONPATH="$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}" exec "${EMU[@]}" "$ROOT/usr/bin/python3.11" "$@"
}

case "${1:-}" in
  setup) setup ;;
  device) shift; emulated_python -m fedge device "$@" ;;
  python) shift; emulated_python "$@" ;;
  path) echo "$ROOT" ;;
  *) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
