#!/usr/bin/env bash
# A Wi-Fi iPhone's day with our daemon, end to end, as commands a user can repeat: the emulated
# iPhone is paired over (emulated) USB, its Wi-Fi connections are switched on over USB, the cable
# is pulled, and it is found over Wi-Fi; then a short Wi-Fi blip and a long drop. The daemon runs
# in a network namespace on a bridge ("LAN") with the phone's Wi-Fi face in another; every client
# command runs where a user would run it, beside the daemon.
#
#   sudo bash scripts/wifi-story.sh        (after npm run build; about a minute)
#
# Needs root, iproute2, umockdev (scripts/setup-system.sh), Debian's libimobiledevice tools, and
# pymobiledevice3 to switch Wi-Fi connections on over USB (`lockdown wifi-connections on`;
# PMD3=path, default .venv-clients/bin/pymobiledevice3, then PATH). Without it the user flips the
# switch on the phone instead (the Wi-Fi face's control socket).
set -u
cd "$(dirname "$0")/.."
PMD3=${PMD3:-.venv-clients/bin/pymobiledevice3}
[ -x "$PMD3" ] || PMD3=$(command -v pymobiledevice3 || true)
S=$(mktemp -d /tmp/wifi-story.XXXXXX)
USB=; DAEMON=; PHONE=
cleanup() {
  [ -n "$PHONE" ] && kill "$PHONE" 2>/dev/null
  [ -n "$DAEMON" ] && kill "$DAEMON" 2>/dev/null
  [ -n "$USB" ] && kill "$USB" 2>/dev/null
  wait 2>/dev/null
  for n in lan host phone; do ip netns del story-$n 2>/dev/null; done
  rm -rf "$S"
}
trap cleanup EXIT INT TERM
say() { printf '\n$ %s\n' "$*"; }
run() { say "$@"; "$@"; }

# A LAN: a bridge in namespace "lan"; the daemon's host and the phone each on it.
for n in lan host phone; do ip netns add story-$n; ip -n story-$n link set lo up; done
ip -n story-lan link add br0 type bridge; ip -n story-lan link set br0 type bridge mcast_snooping 0; ip -n story-lan link set br0 up
ip link add eth0 netns story-host type veth peer name p0 netns story-lan
ip link add wl0 netns story-phone type veth peer name p1 netns story-lan
for p in p0 p1; do ip -n story-lan link set $p master br0; ip -n story-lan link set $p up; done
ip -n story-host addr add 10.77.0.1/24 dev eth0; ip -n story-host link set eth0 up; ip -n story-host route add 224.0.0.0/4 dev eth0
ip -n story-phone addr add 10.77.0.2/24 dev wl0; ip -n story-phone link set wl0 up; ip -n story-phone route add 224.0.0.0/4 dev wl0

# The iPhone on (emulated) USB; it keeps its identity in iphone.json.
MUXD_EMU_STATE=$S/iphone.json test/usb-emulation/emulated-iphone.sh > $S/usb.out 2>&1 &
USB=$!
for _ in $(seq 50); do grep -q 'source ' $S/usb.out && break; sleep 0.2; done
ENVSH=$(sed -n 's/^  source \(.*\)$/\1/p' $S/usb.out); CTL=$(dirname "$ENVSH")/ctl.sock

# Our daemon, in the host's namespace, under umockdev's preload (USB) and on the LAN (Wi-Fi).
ip netns exec story-host bash -c "source $ENVSH; exec node dist/main.js -f -S $S/muxd.sock -P NONE -C $S/lockdown" > $S/daemon.log 2>&1 &
DAEMON=$!
for _ in $(seq 50); do [ -S $S/muxd.sock ] && break; sleep 0.2; done
export USBMUXD_SOCKET_ADDRESS=UNIX:$S/muxd.sock
sleep 1.5   # the virtual user taps Trust after 0.3 s; the daemon pairs
run ip netns exec story-host idevice_id -l
run ip netns exec story-host idevicepair validate

# The same phone on Wi-Fi (its Wi-Fi face follows iphone.json): Wi-Fi connections are still off.
ip netns exec story-phone node dist/emulator/wifi-phone-cli.js --state $S/iphone.json --udid 00008030-001A2B3C4D5E802E --interface wl0 --control $S/phone.sock > $S/phone.out 2> $S/phone.log &
PHONE=$!
sleep 1.5
run ip netns exec story-host idevice_id -n
if [ -n "$PMD3" ]; then
  say "# switch Wi-Fi connections on, over USB (pymobiledevice3 takes a bare socket path)"
  run ip netns exec story-host env USBMUXD_SOCKET_ADDRESS=$S/muxd.sock HOME=$S PYTHONDONTWRITEBYTECODE=1 "$PMD3" lockdown wifi-connections on
else
  say "# no pymobiledevice3: the user ticks \"Show this iPhone when on Wi-Fi\" on the phone instead"
  run node dist/emulator/wifi-phone-cli.js ctl $S/phone.sock wifi enabled=true
fi
sleep 1
run ip netns exec story-host idevice_id -n
run ip netns exec story-host idevice_id
say "# unplug the cable"
run /usr/bin/python3 test/usb-emulation/tbctl.py $CTL unplug
sleep 1
run ip netns exec story-host idevice_id
run ip netns exec story-host ideviceinfo -n -k WiFiAddress
run ip netns exec story-host ideviceinfo -n -k ProductVersion
[ -n "$PMD3" ] && run ip netns exec story-host env USBMUXD_SOCKET_ADDRESS=$S/muxd.sock HOME=$S PYTHONDONTWRITEBYTECODE=1 "$PMD3" usbmux list
say "# a 7 s Wi-Fi blip: shorter than the heartbeat deadline (Interval 10 s + grace 10 s), nothing happens"
ip -n story-phone link set wl0 down; sleep 7
run ip netns exec story-host idevice_id -n
ip -n story-phone link set wl0 up; sleep 2
say "# a 25 s Wi-Fi drop: Detached within 20 s; back by itself once the phone is"
ip -n story-phone link set wl0 down; sleep 25
run ip netns exec story-host idevice_id -n
ip -n story-phone link set wl0 up; sleep 3
run ip netns exec story-host idevice_id -n
say "# the daemon's log, network lines"
grep -E '"layer":"network"|device attached|device detached|paired' $S/daemon.log | grep -v 'lockdown TLS' | sed -E 's/.*"msg":"([^"]*)".*/\1/'

