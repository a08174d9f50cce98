#!/usr/bin/env bash
# Run the emulated iPhone (umockdev testbed + device emulator) standalone, in front of any
# libusb daemon. Prints the environment the daemon needs and keeps running until Ctrl-C / SIGTERM,
# then removes everything it created.
#
#   test/usb-emulation/emulated-iphone.sh [--unconfigured] [--no-device]
#
# Needs: Debian packages umockdev gir1.2-umockdev-1.0 python3-gi, and `npm run build` (for
# dist/emulator/bridge-cli.js). Control it with test/usb-emulation/tbctl.py <ctl.sock> <command>.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bridge="$repo/dist/emulator/bridge-cli.js"
[ -f "$bridge" ] || { echo "missing $bridge: run npm run build" >&2; exit 1; }

state="$(mktemp -d /tmp/emulated-iphone.XXXXXX)"
tb_pid=""
emu_pid=""
cleanup() {
  [ -n "$emu_pid" ] && kill "$emu_pid" 2>/dev/null || true
  [ -n "$tb_pid" ] && kill "$tb_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$state"
}
trap cleanup EXIT INT TERM

/usr/bin/python3 "$here/testbed.py" --state-dir "$state" "$@" >"$state/ready" 2>"$state/testbed.log" &
tb_pid=$!
for _ in $(seq 1 100); do
  grep -q '^READY ' "$state/ready" 2>/dev/null && break
  sleep 0.1
done
grep -q '^READY ' "$state/ready" || { cat "$state/testbed.log" >&2; exit 1; }

node "$bridge" --socket "$state/device.sock" >"$state/emulator.log" 2>&1 &
emu_pid=$!

cat <<EOF
Emulated iPhone ready (UDID 00008030-001A2B3C4D5E802E, bus 1 device 2).
Run the daemon under test with:
  source $state/env.sh
  node dist/main.js -f -v -S /tmp/muxd.sock -P NONE -C /tmp/muxd-config     # or: usbmuxd -f -v -p
Clients need no preload:  USBMUXD_SOCKET_ADDRESS=UNIX:/tmp/muxd.sock idevice_id -l
Hotplug / faults:         /usr/bin/python3 $here/tbctl.py $state/ctl.sock unplug|add|stall in|error out|stats
Logs: $state/testbed.log $state/emulator.log   (Ctrl-C to stop and clean up)
EOF
wait "$tb_pid"
