#!/usr/bin/env bash
# Installs the third-party clients the interop tier runs against both daemons, inside the
# repository (nothing system-wide, no root needed):
#   .venv-clients/pymobiledevice3/  a venv of Debian's python3 (scripts/clients/pymobiledevice3.txt)
#   .venv-clients/tidevice/         another one (scripts/clients/tidevice.txt: its pairing needs an
#                                   older pyOpenSSL and cryptography than pymobiledevice3 accepts)
#   .venv-clients/npm/              go-ios from npm (scripts/clients/package*.json, npm ci; its
#                                   postinstall, which would copy the binary into npm's global
#                                   prefix, is skipped: the binary is run from the package)
#   .venv-clients/bin/              pymobiledevice3, tidevice and ios, linked from those
# Every Python package is pinned (pip freeze of a fresh venv), go-ios by package-lock.json.
# Idempotent: a stamp holding the hash of those files skips the work when nothing changed.
# Called by scripts/setup-system.sh; MUXD_CLIENTS_DIR installs elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR="${MUXD_CLIENTS_DIR:-$PWD/.venv-clients}"
SPEC=(scripts/clients/pymobiledevice3.txt scripts/clients/tidevice.txt scripts/clients/package.json scripts/clients/package-lock.json)
PYTHON=/usr/bin/python3   # Debian's: the one a fresh Debian 12 has (pyenv's may shadow it on PATH)
stamp="$(cat "${SPEC[@]}" | sha256sum | cut -d' ' -f1)"

if [ -f "$DIR/.stamp" ] && [ "$(cat "$DIR/.stamp")" = "$stamp" ] \
  && [ -x "$DIR/bin/pymobiledevice3" ] && [ -x "$DIR/bin/tidevice" ] && [ -x "$DIR/bin/ios" ]; then
  echo "setup-clients: pymobiledevice3, tidevice and go-ios present in $DIR"
  exit 0
fi

echo "setup-clients: installing pymobiledevice3, tidevice and go-ios into $DIR"
rm -f "$DIR/.stamp"
mkdir -p "$DIR/bin"
for tool in pymobiledevice3 tidevice; do
  venv="$DIR/$tool"
  [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "scripts/clients/$tool.txt"
  ln -sf "$venv/bin/$tool" "$DIR/bin/$tool"
done

mkdir -p "$DIR/npm"
cp scripts/clients/package.json scripts/clients/package-lock.json "$DIR/npm/"
(cd "$DIR/npm" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
arch="$(node -p 'process.arch === "arm64" ? "arm64" : "amd64"')"
ln -sf "$DIR/npm/node_modules/go-ios/dist/go-ios-linux-${arch}_linux_${arch}/ios" "$DIR/bin/ios"
"$DIR/bin/ios" --version >/dev/null 2>&1

echo "$stamp" > "$DIR/.stamp"
echo "setup-clients: pymobiledevice3 $("$DIR/bin/pymobiledevice3" version 2>/dev/null | tail -n1), $("$DIR/bin/tidevice" version 2>/dev/null), go-ios $("$DIR/bin/ios" --version 2>/dev/null | head -n1)"
