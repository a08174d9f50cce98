#!/usr/bin/python3
"""An emulated iPhone on an emulated USB bus, for libusb programs (our daemon, Debian's usbmuxd).

umockdev provides the fake /sys and /dev; this process answers the usbdevfs ioctls that libusb
sends to /dev/bus/usb/001/002 and carries the usbmux bulk pipe to a device emulator over a Unix
socket. Run it with Debian's /usr/bin/python3 (python3-gi, gir1.2-umockdev-1.0); it re-executes
itself under libumockdev-preload, which uevents (hotplug) need. Programs under test run with
LD_PRELOAD=libumockdev-preload.so.0 and UMOCKDEV_DIR=<root>, both printed in the READY line.

Stdout carries exactly one line: READY {"root", "stateDir", "devSock", "ctlSock", "env"} (JSON),
printed once both sockets are listening (a client may connect as soon as it reads it).

Device socket (<stateDir>/device.sock), one emulator at a time, frames [u32 LE length][bytes]:
  host->device  one frame per bulk-OUT URB on 0x04 (ZLPs as length 0; libusb cuts OUT transfers
                above 16 KiB into 16 KiB URBs, or not with --bulk-sg, so the emulator reassembles by
                the mux length)
  device->host  one frame completes one bulk-IN URB on 0x85 (split if longer than the URB)
Unplugging closes the emulator's connection: the phone is gone; start a new emulator after re-adding.

Control socket (<stateDir>/ctl.sock): one command line in, one JSON line out:
  add [unconfigured]   plug the iPhone in (configuration 1, or 0 like the udev rule leaves it)
  unplug | remove      unplug: in-flight URBs complete with -ENODEV, "remove" uevent, node removed
  stall [in|out]       the next bulk URB on the mux endpoint (default in) completes with -EPIPE
  error [in|out]       the same with -EPROTO
  stats                counters, configuration history, claimed interfaces, URBs in flight
  quit                 clean up and exit
Temp dirs are removed on quit, SIGTERM, SIGINT and (with --exit-with-parent) when the parent dies.
"""
import argparse
import errno
import json
import os
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import traceback
from collections import deque

import records
from control import listen_unix, serve_control
from readiness import Readiness
from records import DEVNODE, DEVNUM, SYSPATH_DEV

PRELOAD = 'libumockdev-preload.so.0'
HERE = os.path.dirname(os.path.abspath(__file__))

MAX_READ_AHEAD_FRAMES = 32     # device->host frames buffered before we stop reading the emulator

VERBOSITY = 1


def log(level, *parts):
    if VERBOSITY >= level:
        print('[testbed %.3f]' % time.monotonic(), *parts, file=sys.stderr, flush=True)


class Urb:
    __slots__ = ('client', 'addr', 'mem', 'buf', 'type', 'ep', 'buflen', 'status', 'actual', 'indata')

    def __init__(self, client, addr, mem, buf, typ, ep, buflen):
        self.client, self.addr, self.mem, self.buf = client, addr, mem, buf
        self.type, self.ep, self.buflen = typ, ep, buflen
        self.status, self.actual, self.indata = 0, 0, None


class EmulatedIPhone:
    def __init__(self, args, umockdev, usbdevfs, iphone):
        self.args = args
        self.U, self.fs, self.D = umockdev, usbdevfs, iphone
        self.lock = threading.RLock()
        self.read_ahead = threading.Condition(self.lock)
        self.tb = umockdev.Testbed.new()
        self.root = self.tb.get_root_dir()
        self.present = False
        self.config = 1
        self.in_flight = []            # submitted, not completed
        self.completed = {}            # client -> deque of reapable URBs
        self.in_waiting = deque()      # bulk-IN URBs on the mux endpoint waiting for device data
        self.in_frames = deque()       # device->host frames not yet delivered
        self.out_backlog = deque()     # host->device frames while no emulator is connected
        self.faults = {'in': deque(), 'out': deque()}
        self.emulator = None
        self.readiness = None
        self.old_readiness = []        # kept open: a client may still poll a removed node
        self.claims = {}               # client -> claimed interface numbers (a client = one open handle)
        self.stats = {'outTransfers': 0, 'outBytes': 0, 'inTransfers': 0, 'inBytes': 0, 'reapEagain': 0,
                      'setConfiguration': [], 'getMode': 0, 'setMode': 0, 'faultsFired': 0, 'adds': 0,
                      'removes': 0}
        self.ioctl_counts = {}
        self.handler = umockdev.IoctlBase()
        self.handler.connect('handle-ioctl', self.on_ioctl)
        self.handler.connect('client-vanished', self.on_vanished)
        self.tb.add_from_string(records.hub_record(iphone))
        self.tb.attach_ioctl(DEVNODE, self.handler)

    # ---------------------------------------------------------------- records
    # ---------------------------------------------------------------- plug / unplug
    def add(self, unconfigured=False):
        with self.lock:
            if self.present:
                return 'already present'
            self.config = 0 if unconfigured else 1
            self.tb.add_from_string(records.iphone_record(self.D, self.config, self.args.serial))   # emits the "add" uevent (we run preloaded)
            if self.args.fifo_poll:
                self.readiness = Readiness(self.root + DEVNODE)
            self.present = True
            self.stats['adds'] += 1
        log(1, 'iPhone plugged in (configuration %d)' % self.config)
        return 'added'

    def unplug(self):
        with self.lock:
            if not self.present:
                return 'not present'
            self.present = False
            self.stats['removes'] += 1
            # The kernel completes outstanding URBs with -ENODEV; REAP_AFTER_DISCONNECT lets libusb reap them.
            for urb in list(self.in_flight):
                self.complete(urb, -errno.ENODEV, 0)
            self.in_waiting.clear()
            self.in_frames.clear()
            self.out_backlog.clear()
            self.claims.clear()
            for q in self.faults.values():
                q.clear()
            if self.emulator is not None:
                try:
                    self.emulator.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.read_ahead.notify_all()
        self.tb.uevent(SYSPATH_DEV, 'remove')
        time.sleep(0.2)   # let late sysfs readers finish before the directory goes
        with self.lock:
            self.tb.remove_device(SYSPATH_DEV)
            if self.readiness is not None:
                self.readiness.set()   # readable, so reapers see the -ENODEV completions
                self.old_readiness.append(self.readiness)
                self.readiness = None
        log(1, 'iPhone unplugged')
        return 'removed'

    def inject(self, kind, direction):
        status = {'stall': -errno.EPIPE, 'error': -errno.EPROTO}[kind]
        with self.lock:
            if not self.present:
                return 'not present'
            if direction == 'in' and self.in_waiting:
                self.stats['faultsFired'] += 1
                self.complete(self.in_waiting.popleft(), status, 0)
                return 'fired'
            self.faults[direction].append(status)
        return 'armed'

    def snapshot(self):
        with self.lock:
            return {**self.stats, 'present': self.present, 'configuration': self.config,
                    'claimed': sorted(set().union(*self.claims.values())), 'urbsInFlight': len(self.in_flight),
                    'emulatorConnected': self.emulator is not None, 'ioctls': dict(self.ioctl_counts)}

    # ---------------------------------------------------------------- URBs
    def complete(self, urb, status, actual, indata=None):
        if urb in self.in_flight:
            self.in_flight.remove(urb)
        urb.status, urb.actual, urb.indata = status, actual, indata
        self.completed.setdefault(urb.client, deque()).append(urb)
        if self.readiness is not None:
            self.readiness.set()

    def pump_in(self):
        while self.in_waiting and self.in_frames:
            urb = self.in_waiting.popleft()
            frame = self.in_frames.popleft()
            if len(frame) > urb.buflen:
                self.in_frames.appendleft(frame[urb.buflen:])
                frame = frame[:urb.buflen]
            self.stats['inTransfers'] += 1
            self.stats['inBytes'] += len(frame)
            self.complete(urb, 0, len(frame), frame)
        self.read_ahead.notify_all()

    def to_host(self, frame):
        with self.lock:
            if self.present:
                self.in_frames.append(frame)
                self.pump_in()

    def to_device(self, frame):
        self.stats['outTransfers'] += 1
        self.stats['outBytes'] += len(frame)
        message = struct.pack('<I', len(frame)) + frame
        if self.emulator is None:
            self.out_backlog.append(message)
            return
        try:
            self.emulator.sendall(message)
        except OSError as e:
            log(1, 'sending to the emulator failed:', e)

    # ---------------------------------------------------------------- EP0
    def control(self, request_type, request, value, index, length):
        """Returns (status, reply bytes or None)."""
        kind = (request_type >> 5) & 3
        if kind == 0:
            if request == 6:   # GET_DESCRIPTOR
                dtype, dindex = value >> 8, value & 0xFF
                if dtype == self.D.DT_DEVICE:
                    reply = self.D.device_descriptor()
                elif dtype == self.D.DT_CONFIG and dindex < self.D.NUM_CONFIGURATIONS:
                    reply = self.D.configurations()[dindex]
                elif dtype == self.D.DT_STRING:
                    reply = self.D.string_descriptor(dindex, self.args.serial)
                else:
                    reply = None
                return (-errno.EPIPE, None) if reply is None else (0, reply[:length])
            if request == 8:   # GET_CONFIGURATION
                return 0, bytes([self.config])[:length]
            if request == 0:   # GET_STATUS
                return 0, b'\0\0'[:length]
            if request == 9:   # SET_CONFIGURATION
                return (0, b'') if self.set_configuration(value & 0xFF) else (-errno.EPIPE, None)
            if request in (1, 3, 11):   # CLEAR_FEATURE, SET_FEATURE, SET_INTERFACE
                return 0, b''
            if request == 10:  # GET_INTERFACE
                return 0, b'\0'[:length]
        if kind == 2 and request == self.D.REQUEST_GET_MODE:
            self.stats['getMode'] += 1
            return 0, self.D.GET_MODE_REPLY[:length]
        if kind == 2 and request == self.D.REQUEST_SET_MODE:
            self.stats['setMode'] += 1
        log(2, 'control %02x %02x %04x %04x %d -> STALL' % (request_type, request, value, index, length))
        return -errno.EPIPE, None

    def set_configuration(self, value):
        if value < 0 or value > self.D.NUM_CONFIGURATIONS:
            return False
        self.config = value
        self.stats['setConfiguration'].append(value)
        # libusb in sysfs mode re-reads these after SETCONFIGURATION
        self.tb.set_attribute(SYSPATH_DEV, 'bConfigurationValue', ('%d\n' % value) if value else '')
        self.tb.set_attribute(SYSPATH_DEV, 'bNumInterfaces',
                              (' %d\n' % self.D.interface_count(value)) if value else '')
        log(1, 'configuration set to', value)
        return True

    # ---------------------------------------------------------------- ioctls (umockdev worker thread)
    def on_vanished(self, _handler, client):
        with self.lock:
            self.in_flight = [u for u in self.in_flight if u.client is not client]
            self.in_waiting = deque(u for u in self.in_waiting if u.client is not client)
            self.completed.pop(client, None)
            self.claims.pop(client, None)

    def on_ioctl(self, _handler, client):
        request = client.get_request()
        name = self.fs.IOCTL_NAMES.get(request, hex(request))
        self.ioctl_counts[name] = self.ioctl_counts.get(name, 0) + 1
        try:
            with self.lock:
                self.ioctl(client, name)
        except Exception:   # never leave a client hanging in its ioctl
            traceback.print_exc()
            client.complete(-1, errno.EIO)
        return True

    def u32_arg(self, arg):
        return struct.unpack('<I', bytes(arg.resolve(0, 4).retrieve()))[0]

    def ioctl(self, client, name):
        fs = self.fs
        arg = client.get_arg()
        if not self.present and name not in ('REAPURBNDELAY', 'REAPURB', 'DISCARDURB'):
            client.complete(-1, errno.ENODEV)
        elif name == 'GET_CAPABILITIES':
            caps = fs.CAPABILITIES | (fs.CAP_BULK_SCATTER_GATHER if self.args.bulk_sg else 0)
            arg.resolve(0, 4).update(0, struct.pack('<I', caps))
            client.complete(0, 0)
        elif name == 'CLAIMINTERFACE':
            self.claims.setdefault(client, set()).add(self.u32_arg(arg))
            client.complete(0, 0)
        elif name == 'RELEASEINTERFACE':
            self.claims.get(client, set()).discard(self.u32_arg(arg))
            client.complete(0, 0)
        elif name in ('CLEAR_HALT', 'RESETEP', 'RESET'):
            client.complete(0, 0)
        elif name == 'SETINTERFACE':
            client.complete(0, 0)
        elif name == 'SETCONFIGURATION':
            value = struct.unpack('<i', bytes(arg.resolve(0, 4).retrieve()))[0]
            ok = self.set_configuration(max(value, 0))
            client.complete(0 if ok else -1, 0 if ok else errno.EINVAL)
        elif name == 'GETDRIVER':
            client.complete(-1, errno.ENODATA)   # no kernel driver bound
        elif name == 'DISCONNECT_CLAIM':
            client.complete(0, 0)
        elif name == 'IOCTL':
            client.complete(-1, errno.ENODATA)   # USBDEVFS_DISCONNECT/CONNECT: there is no driver
        elif name == 'CONNECTINFO':
            arg.resolve(0, 8).update(0, struct.pack('<IB3x', DEVNUM, 0))
            client.complete(0, 0)
        elif name == 'GET_SPEED':
            client.complete(fs.USB_SPEED_HIGH, 0)
        elif name == 'CONTROL':
            self.sync_control(client, arg)
        elif name == 'SUBMITURB':
            self.submit(client, arg)
        elif name in ('REAPURBNDELAY', 'REAPURB'):
            self.reap(client, arg)
        elif name == 'DISCARDURB':
            self.discard(client, arg)
        else:
            log(1, 'unhandled ioctl', name)
            client.complete(-1, errno.ENOTTY)

    def sync_control(self, client, arg):
        ctrl = arg.resolve(0, self.fs.CTRL_SIZE)
        request_type, request, value, index, length, _timeout = struct.unpack('<BBHHHI', bytes(ctrl.retrieve())[:12])
        buf = ctrl.resolve(self.fs.CTRL_DATA, length) if length else None
        status, reply = self.control(request_type, request, value, index, length)
        if status < 0:
            client.complete(-1, -status)
        elif request_type & 0x80:
            if reply and buf is not None:
                buf.update(0, reply)
            client.complete(len(reply), 0)
        else:
            client.complete(length, 0)

    def submit(self, client, arg):
        fs, D = self.fs, self.D
        addr = struct.unpack('<Q', bytes(arg.retrieve()))[0]
        mem = arg.resolve(0, fs.URB_SIZE)
        raw = bytes(mem.retrieve())
        typ, ep = raw[0], raw[1]
        buflen = struct.unpack_from('<i', raw, fs.URB_BUFFER_LENGTH)[0]
        buf = mem.resolve(fs.URB_BUFFER, buflen) if buflen > 0 else None
        urb = Urb(client, addr, mem, buf, typ, ep, buflen)
        self.in_flight.append(urb)
        client.complete(0, 0)

        if typ == fs.URB_TYPE_CONTROL:
            setup = bytes(buf.retrieve())
            request_type, request, value, index, length = struct.unpack('<BBHHH', setup[:fs.SETUP_SIZE])
            status, reply = self.control(request_type, request, value, index, length)
            if status < 0:
                self.complete(urb, status, 0)
            elif request_type & 0x80:
                self.complete(urb, 0, len(reply), setup[:fs.SETUP_SIZE] + reply)
            else:
                self.complete(urb, 0, length)
        elif typ == fs.URB_TYPE_BULK and ep == D.MUX_OUT:
            if self.faults['out']:
                self.stats['faultsFired'] += 1
                self.complete(urb, self.faults['out'].popleft(), 0)
                return
            frame = bytes(buf.retrieve()) if buf is not None else b''
            self.complete(urb, 0, len(frame))
            self.to_device(frame)
        elif typ == fs.URB_TYPE_BULK and ep == D.MUX_IN:
            if self.faults['in']:
                self.stats['faultsFired'] += 1
                self.complete(urb, self.faults['in'].popleft(), 0)
                return
            self.in_waiting.append(urb)
            self.pump_in()
        elif not ep & 0x80:
            self.complete(urb, 0, buflen)   # other OUT endpoints swallow data
        # other IN endpoints (PTP, interrupt) never complete until discarded

    def reap(self, client, arg):
        queue = self.completed.get(client)
        if not queue:
            self.stats['reapEagain'] += 1
            if self.readiness is not None and not any(self.completed.values()):
                self.readiness.clear()
            gone = not self.present and not any(u.client is client for u in self.in_flight)
            client.complete(-1, errno.ENODEV if gone else errno.EAGAIN)
            return
        urb = queue.popleft()
        if urb.indata is not None and urb.buf is not None:
            urb.buf.update(0, urb.indata)
        urb.mem.update(self.fs.URB_STATUS, struct.pack('<i', urb.status))
        urb.mem.update(self.fs.URB_ACTUAL_LENGTH, struct.pack('<i', urb.actual))
        arg.resolve(0, 8).set_ptr(0, urb.mem)
        client.complete(0, 0)

    def discard(self, client, arg):
        addr = struct.unpack('<Q', bytes(arg.retrieve()))[0]
        for urb in self.in_flight:
            if urb.client is client and urb.addr == addr:
                if urb in self.in_waiting:
                    self.in_waiting.remove(urb)
                self.complete(urb, -errno.ENOENT, 0)
                client.complete(0, 0)
                return
        client.complete(-1, errno.EINVAL)

    # ---------------------------------------------------------------- sockets
    def serve_emulator(self, server):
        """Serve the (already listening) device socket forever, one emulator at a time."""
        while True:
            conn, _ = server.accept()
            with self.lock:
                self.emulator = conn
                while self.out_backlog:
                    conn.sendall(self.out_backlog.popleft())
            log(1, 'device emulator connected')
            try:
                reader = conn.makefile('rb', buffering=1 << 20)
                while True:
                    with self.read_ahead:
                        while len(self.in_frames) > MAX_READ_AHEAD_FRAMES and self.present:
                            self.read_ahead.wait(0.1)
                    header = reader.read(4)
                    if len(header) < 4:
                        break
                    length = struct.unpack('<I', header)[0]
                    frame = reader.read(length) if length else b''
                    if len(frame) < length:
                        break
                    self.to_host(frame)
            except OSError as e:
                log(1, 'emulator socket error:', e)
            with self.lock:
                if self.emulator is conn:
                    self.emulator = None
            conn.close()
            log(1, 'device emulator disconnected')

def parse_args():
    ap = argparse.ArgumentParser(description='umockdev testbed with one emulated iPhone')
    ap.add_argument('--state-dir', help='directory for sockets and env.sh (default: a new temp dir, removed on exit)')
    ap.add_argument('--no-device', action='store_true', help='start with an empty bus; plug in later with "add"')
    ap.add_argument('--unconfigured', action='store_true', help='plug in with bConfigurationValue 0 (as the udev rule leaves it)')
    ap.add_argument('--no-fifo-poll', dest='fifo_poll', action='store_false', help='plain-file device node (libusb busy-polls)')
    ap.add_argument('--bulk-sg', action='store_true',
                    help='offer USBDEVFS_CAP_BULK_SCATTER_GATHER: libusb sends each bulk transfer as one URB '
                         '(like an xHCI host) instead of 16 KiB pieces')
    ap.add_argument('--serial', default=None, help='USB serial number string')
    ap.add_argument('--exit-with-parent', action='store_true', help='clean up and exit when the parent process dies')
    ap.add_argument('-v', '--verbose', action='count', default=1)
    return ap.parse_args()


def main():
    global VERBOSITY
    if PRELOAD not in os.environ.get('LD_PRELOAD', ''):
        # uevents are built with libudev inside this process, which sees the fake /sys only when preloaded
        os.environ['LD_PRELOAD'] = PRELOAD
        os.execv(sys.executable, [sys.executable] + sys.argv)
    args = parse_args()
    VERBOSITY = args.verbose
    sys.path.insert(0, HERE)
    import gi
    gi.require_version('UMockdev', '1.0')
    from gi.repository import GLib, UMockdev
    import iphone
    import usbdevfs
    if args.serial is None:
        args.serial = iphone.DEFAULT_SERIAL

    own_state_dir = args.state_dir is None
    state_dir = tempfile.mkdtemp(prefix='muxd-usbtb-') if own_state_dir else args.state_dir
    os.makedirs(state_dir, exist_ok=True)
    try:
        phone = EmulatedIPhone(args, UMockdev, usbdevfs, iphone)
    except Exception:
        if own_state_dir:
            shutil.rmtree(state_dir, ignore_errors=True)
        raise
    parent = os.getppid()
    cleaned = threading.Lock()

    def cleanup_and_exit(code=0):
        if not cleaned.acquire(blocking=False):
            return
        for r in phone.old_readiness + ([phone.readiness] if phone.readiness else []):
            r.close()
        shutil.rmtree(phone.root, ignore_errors=True)
        if own_state_dir:
            shutil.rmtree(state_dir, ignore_errors=True)
        else:
            for name in ('device.sock', 'ctl.sock', 'env.sh'):
                try:
                    os.unlink(os.path.join(state_dir, name))
                except OSError:
                    pass
        os._exit(code)

    def watch_parent():
        while os.getppid() == parent:
            time.sleep(0.5)
        log(1, 'parent process gone; exiting')
        cleanup_and_exit(0)

    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, sig, lambda: cleanup_and_exit(0))

    try:
        if not args.no_device:
            phone.add(unconfigured=args.unconfigured)
        dev_sock = os.path.join(state_dir, 'device.sock')
        ctl_sock = os.path.join(state_dir, 'ctl.sock')
        env = {'LD_PRELOAD': PRELOAD, 'UMOCKDEV_DIR': phone.root}
        with open(os.path.join(state_dir, 'env.sh'), 'w') as f:
            f.write(''.join('export %s=%s\n' % kv for kv in env.items()))
        # Bound here, before READY: a command or an emulator may connect the moment READY is read.
        dev_server = listen_unix(dev_sock, 1)
        ctl_server = listen_unix(ctl_sock, 4)
        threading.Thread(target=phone.serve_emulator, args=(dev_server,), daemon=True).start()
        threading.Thread(target=serve_control, args=(phone, ctl_server, cleanup_and_exit), daemon=True).start()
        if args.exit_with_parent:
            threading.Thread(target=watch_parent, daemon=True).start()
        print('READY ' + json.dumps({'root': phone.root, 'stateDir': state_dir, 'devSock': dev_sock,
                                     'ctlSock': ctl_sock, 'env': env}), flush=True)
    except Exception:   # never leave the umockdev root behind
        traceback.print_exc()
        cleanup_and_exit(1)
    GLib.MainLoop().run()


if __name__ == '__main__':
    main()
