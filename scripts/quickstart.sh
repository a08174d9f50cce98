#!/usr/bin/env bash
# From a fresh clone to a running daemon with a virtual iPhone you can query.
#
#   bash scripts/quickstart.sh          install (system packages, npm ci, build), then start
#   bash scripts/quickstart.sh start    start only (already built)
#   bash scripts/quickstart.sh stop     stop the daemon started here
#
# As root the daemon takes the system's places (socket /var/run/usbmuxd, pidfile
# /var/run/usbmuxd.pid, pair records /var/lib/lockdown), so every client finds it without
# configuration. As another user it uses places under $TMPDIR and tells you how to point clients
# at it. Overrides: QUICKSTART_SOCKET, QUICKSTART_PIDFILE, QUICKSTART_CONFIG_DIR, QUICKSTART_LOG.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -eq 0 ]; then
  SOCKET="${QUICKSTART_SOCKET:-/var/run/usbmuxd}"
  PIDFILE="${QUICKSTART_PIDFILE:-/var/run/usbmuxd.pid}"
  CONFIG_DIR="${QUICKSTART_CONFIG_DIR:-/var/lib/lockdown}"
else
  base="${TMPDIR:-/tmp}/usbmuxd-$(id -un)"
  SOCKET="${QUICKSTART_SOCKET:-$base.sock}"
  PIDFILE="${QUICKSTART_PIDFILE:-$base.pid}"
  CONFIG_DIR="${QUICKSTART_CONFIG_DIR:-$base-lockdown}"
fi
LOG="${QUICKSTART_LOG:-${TMPDIR:-/tmp}/usbmuxd-quickstart.log}"

install() {
  bash scripts/setup-system.sh
  npm ci --no-audit --no-fund
  npm run build
}

start() {
  if [ ! -f dist/main.js ]; then
    echo "quickstart: dist/main.js is missing; run 'npm run build' (or 'bash scripts/quickstart.sh')" >&2
    exit 1
  fi
  nohup node dist/main.js -f --no-usb --virtual-device --virtual-wifi \
    -S "$SOCKET" -P "$PIDFILE" -C "$CONFIG_DIR" -l "$LOG" >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do
    if [ -S "$SOCKET" ] && kill -0 "$pid" 2>/dev/null; then break; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "quickstart: the daemon exited during startup; its log ($LOG) ends with:" >&2
      tail -n 5 "$LOG" >&2 || true
      exit 1
    fi
    sleep 0.1
  done
  if [ ! -S "$SOCKET" ]; then
    echo "quickstart: no socket at $SOCKET after 10 s; see $LOG" >&2
    exit 1
  fi
  local env_hint=""
  if [ "$SOCKET" != /var/run/usbmuxd ] && [ "$SOCKET" != /run/usbmuxd ]; then
    env_hint="USBMUXD_SOCKET_ADDRESS=UNIX:$SOCKET "
  fi
  cat <<EOF
usbmuxd is running (pid $pid) with a virtual iPhone, listening on $SOCKET.

  Try:   ${env_hint}idevice_id -l        # prints the virtual iPhone's UDID (USB)
         ${env_hint}ideviceinfo -s       # its lockdown values
         ${env_hint}idevice_id -n        # the same phone over (virtual) Wi-Fi, once paired
         ${env_hint}ideviceinfo -n       # a TLS session with it over the network
  Logs:  $LOG
  Stop:  bash scripts/quickstart.sh stop   (or: node dist/main.js -X -P $PIDFILE)
EOF
}

stop() {
  node dist/main.js -X -P "$PIDFILE"
}

case "${1:-all}" in
  all) install; start ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: bash scripts/quickstart.sh [start|stop]" >&2; exit 2 ;;
esac
