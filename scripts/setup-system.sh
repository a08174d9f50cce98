#!/usr/bin/env bash
# Installs the Debian packages the test suite needs (umockdev for the USB tier, the real
# libimobiledevice clients, ideviceinstaller and the reference usbmuxd 1.1.1 for interop and
# differential tests, socat and openssl for the remote-TLS listener test, a C compiler and the kernel
# headers for the seccomp helper of test/cli/unit-sandbox.test.ts, and avahi-daemon only so the
# Wi-Fi discovery test can run our mDNS browser beside it: the daemon itself never needs avahi),
# then the third-party clients (pymobiledevice3, tidevice, go-ios) into the repository's
# .venv-clients/ (scripts/setup-clients.sh; no root needed for that part).
# Idempotent: does nothing when everything is present. Needs root (or sudo) to install packages.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(umockdev gir1.2-umockdev-1.0 libumockdev0 python3-gi libusbmuxd-tools libimobiledevice-utils ideviceinstaller usbmuxd systemd udev iproute2 gcc libc6-dev avahi-daemon python3-venv socat openssl)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup-system: all packages present (${PACKAGES[*]})"
else
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      SUDO=sudo
    else
      echo "setup-system: missing Debian packages: ${missing[*]}" >&2
      echo "setup-system: run this script as root (or install them with apt-get)." >&2
      exit 1
    fi
  else
    SUDO=
  fi
  echo "setup-system: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

bash scripts/setup-clients.sh
