#!/usr/bin/env bash
# Debian packages the test suite needs: Chromium (driven by Playwright in tests/test_app_browser.py)
# and a font so screenshots show text. Idempotent: returns at once when everything is installed;
# runs `apt-get update` only when a package is missing and cannot be installed from the current lists.
# CI machines start bare and run as root; elsewhere it uses sudo when available.
set -euo pipefail

PACKAGES=(chromium fonts-dejavu-core)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_system_deps: already installed: ${PACKAGES[*]}"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_system_deps: no apt-get; install ${missing[*]} by hand (browser tests will skip)" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo -n"
  else
    echo "install_system_deps: not root and no sudo; browser tests will skip" >&2
    exit 0
  fi
fi

export DEBIAN_FRONTEND=noninteractive
# Another apt/dpkg run (unattended upgrades, a parallel job) holds the lock for a while on fresh
# machines: wait up to 5 minutes for it instead of failing at once.
APT=(apt-get -o DPkg::Lock::Timeout=300)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Quiet on success; on failure apt's own messages are shown, not swallowed.
run() {
  if ! "$@" >"$log" 2>&1; then
    echo "install_system_deps: failed: $*" >&2
    cat "$log" >&2
    return 1
  fi
}
install() { run $SUDO "${APT[@]}" install -y -qq --no-install-recommends "${missing[@]}"; }
echo "install_system_deps: installing ${missing[*]}"
if ! install; then
  echo "install_system_deps: retrying after apt-get update" >&2
  run $SUDO "${APT[@]}" update -qq
  install
fi
echo "install_system_deps: done"
