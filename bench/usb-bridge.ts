/**
 * The bench's device process: one emulated iPhone behind a umockdev testbed's device socket.
 *
 *   node dist-bench/bench/usb-bridge.js --socket <testbed device.sock> [--udid U] [--phone default|ack-every]
 *
 * Framing (test/usb-emulation/testbed.py): `[u32 LE length][bytes]` both ways; host→device one
 * frame per bulk-OUT URB, device→host one frame per IN transfer. The bench starts this instead of
 * the emulator's own bridge so that both daemons face the very same device program, and so that
 * the device side costs as little CPU as possible (the machine has two cores that the daemon, the
 * testbed and this process share):
 *   - the source service (port 19) slices a precomputed copy of the {@link sourceByte} stream
 *     (its period is 65536) instead of computing every byte;
 *   - device→host frames are written with one header buffer per event-loop turn (cork/uncork),
 *     so the kernel sees one writev for everything the phone produced in that turn.
 * Phone behaviours: `--phone`, see bench/lib/phones.ts.
 * Exits when the socket closes.
 */
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { EmulatedIPhone } from '../src/emulator/index.js';
import { PHONES, isPhoneName } from './lib/phones.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function main(): void {
  const path = arg('--socket');
  if (path === undefined) {
    process.stderr.write('usage: usb-bridge --socket <path> [--udid U]\n');
    process.exit(2);
  }
  const udid = arg('--udid');
  const phoneName = arg('--phone') ?? 'default';
  if (!isPhoneName(phoneName)) {
    process.stderr.write(`usb-bridge: --phone must be one of ${Object.keys(PHONES).join(', ')}\n`);
    process.exit(2);
  }
  const faults = PHONES[phoneName];
  // Stock services: echo 7, discard 9, source 19 (whole packets), lockdownd.
  const phone = new EmulatedIPhone(udid === undefined ? { faults } : { udid, faults });
  const socket: Socket = connect(path);
  let corked = false;
  const uncork = (): void => {
    corked = false;
    socket.uncork();
  };
  phone.connect({
    sendToHost(transfer: Buffer): void {
      if (!corked) {
        corked = true;
        socket.cork();
        process.nextTick(uncork);
      }
      const header = Buffer.allocUnsafe(4);
      header.writeUInt32LE(transfer.length, 0);
      socket.write(header);
      socket.write(transfer);
    },
  });
  // Host→device frames: parse [len][bytes] without concatenating in the common case.
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const take = (n: number): Buffer => {
    const first = pending[0];
    if (first !== undefined && first.length >= n) {
      if (first.length === n) pending.shift();
      else pending[0] = first.subarray(n);
      pendingBytes -= n;
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const head = pending[0];
      if (head === undefined) break;
      const k = Math.min(head.length, n - filled);
      head.copy(out, filled, 0, k);
      filled += k;
      if (k === head.length) pending.shift();
      else pending[0] = head.subarray(k);
    }
    pendingBytes -= n;
    return out;
  };
  socket.on('data', (chunk: Buffer) => {
    pending.push(chunk);
    pendingBytes += chunk.length;
    for (;;) {
      if (pendingBytes < 4) return;
      const len = take(4).readUInt32LE(0);
      if (pendingBytes < len) {
        // put the header back: rare (frames are ≤ 16 KiB, reads are larger)
        const header = Buffer.allocUnsafe(4);
        header.writeUInt32LE(len, 0);
        pending = [header, ...pending];
        pendingBytes += 4;
        return;
      }
      phone.receive(take(len));
    }
  });
  socket.on('close', () => {
    phone.disconnect();
    process.exit(0);
  });
  socket.on('error', (err) => {
    process.stderr.write(`usb-bridge: ${err.message}\n`);
    process.exit(1);
  });
}

main();
