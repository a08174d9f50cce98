/**
 * Differential, with a phone: what a tunnel does when its client ends, in usbmuxd 1.1.1 and in
 * ours, each daemon on its own umockdev testbed with the emulated iPhone (128 KiB window, 16 KiB
 * packets, an ACK for each data packet). Both directions:
 *
 *   - client → phone: the client writes 1 MiB to discard (9) and ends. Every byte must reach the
 *     phone before the RST. usbmuxd 1.1.1 never holds client bytes it has not sent (it reads the
 *     client only as far as the phone's window allows), so the RST after the EOF truncates nothing.
 *   - phone → client: the client writes 1 MiB to echo (7), shuts down its writing side and reads the
 *     echo. usbmuxd tears the connection down as soon as it reads the EOF: a client that reads at
 *     once happens to get everything, one that starts reading 1.5 s later gets what the socket
 *     buffers held. Ours keeps the connection open, both ways, until the phone has acknowledged the
 *     last byte and gone quiet (src/mux/connection.ts), so both readers get all of it: an intended
 *     difference.
 *
 * The phone's byte counts come from the emulator bridge's closing stats line. Needs root for the
 * reference's private mount namespace (CI is root). Not in MUXD_HW mode (two daemons, one phone).
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256 } from '../support/clients.js';
import type { RunningDaemon } from '../support/daemon.js';
import { firstListedDeviceId } from '../support/daemon.js';
import { MuxdClient } from '../support/muxd-client.js';
import { hardwareMode, startUsbStack, stopUsbStack } from '../support/usb-testbed.js';
import type { UsbStack } from '../support/usb-testbed.js';

const MIB = 1 << 20;
const RUNS = 3;
const LATE_READ_MS = 1500;

interface Outcome {
  /** What the phone's discard service received over RUNS uploads of 1 MiB each. */
  readonly discarded: number;
  /** Per run: did the client that read at once get the whole echo back (and how much)? */
  readonly eagerEcho: readonly number[];
  readonly eagerEchoIntact: boolean;
  /** How much of the echo a client that starts reading LATE_READ_MS after its EOF gets. */
  readonly lateEcho: number;
}

/** Everything the tunnel delivers until the daemon ends it, reading from `delayMs` on. */
function readToEnd(socket: Socket, delayMs: number): Promise<Buffer> {
  socket.pause();
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    socket.on('data', (b: Buffer) => chunks.push(b));
    socket.once('close', () => {
      resolve(Buffer.concat(chunks));
    });
    socket.once('error', reject);
    setTimeout(() => {
      socket.resume();
    }, delayMs);
  });
}

async function writeThenEnd(d: RunningDaemon, id: number, port: number, data: Buffer, readDelayMs: number): Promise<Buffer> {
  const s = await (await MuxdClient.connect({ path: d.socketPath })).connectDevice(id, port);
  const back = readToEnd(s, readDelayMs);
  s.end(data);
  return back;
}

async function measure(kind: 'ours' | 'reference'): Promise<Outcome> {
  let stack: UsbStack | undefined;
  const eagerEcho: number[] = [];
  let eagerEchoIntact = true;
  let lateEcho = -1;
  try {
    stack = await startUsbStack(kind);
    const daemon = stack.daemon;
    const id = await firstListedDeviceId(daemon.socketPath);
    for (let run = 0; run < RUNS; run++) {
      const data = randomBytes(MIB);
      const back = await writeThenEnd(daemon, id, 7, data, 0);
      eagerEcho.push(back.length);
      if (sha256(back) !== sha256(data)) eagerEchoIntact = false;
    }
    lateEcho = (await writeThenEnd(daemon, id, 7, randomBytes(MIB), LATE_READ_MS)).length;
    for (let run = 0; run < RUNS; run++) {
      expect((await writeThenEnd(daemon, id, 9, randomBytes(MIB), 0)).length).toBe(0);
    }
    // The client saw its end after the daemon's RST went out; give the last OUT transfers time to
    // reach the bridge before it is stopped and reports.
    await new Promise((r) => setTimeout(r, 500));
  } finally {
    await stopUsbStack(stack);
  }
  const bridge = stack.bridge;
  const stats = /"discardBytes":(\d+)/.exec(bridge.logs());
  if (stats?.[1] === undefined) throw new Error(`no stats line from the emulator bridge:\n${bridge.logs()}`);
  return { discarded: Number(stats[1]), eagerEcho, eagerEchoIntact, lateEcho };
}

describe.skipIf(hardwareMode())('differential: a client that writes and then ends (usbmuxd 1.1.1 and ours, emulated iPhone under umockdev)', () => {
  let reference: Promise<Outcome>;
  let ours: Promise<Outcome>;
  beforeAll(() => {
    // One after the other: each moves a few MiB through USB emulation, and the machine is small.
    reference = measure('reference');
    ours = reference.catch(() => undefined).then(() => measure('ours'));
    reference.catch(() => undefined);
    ours.catch(() => undefined);
  });
  afterAll(async () => {
    await Promise.allSettled([reference, ours]);
  });

  it('reference: 1 MiB to discard then end, 3 times: the phone gets all 3 MiB (it sends each read before reading on)', async () => {
    expect((await reference).discarded).toBe(RUNS * MIB);
  });
  it('ours: the same, all 3 MiB (bytes accepted before the EOF go out before the RST)', async () => {
    expect((await ours).discarded).toBe(RUNS * MIB);
  });

  it(`reference: a client that half-closes and reads only after ${LATE_READ_MS} ms gets part of the echo (teardown at the EOF)`, async () => {
    const r = await reference;
    expect(r.lateEcho).toBeGreaterThan(0);
    expect(r.lateEcho).toBeLessThan(MIB);
  });
  it(`ours (intended difference): it gets the whole echo (the connection stays open until the phone is done)`, async () => {
    expect((await ours).lateEcho).toBe(MIB);
  });

  it('ours: a half-closed client reading at once gets the whole echo every time (usbmuxd 1.1.1 did here, by timing)', async () => {
    const o = await ours;
    expect(o.eagerEcho).toEqual(Array.from({ length: RUNS }, () => MIB));
    expect(o.eagerEchoIntact).toBe(true);
    // Recorded, not required of the reference: its outcome depends on which poll event comes first.
    console.info(`usbmuxd 1.1.1, half-closed client reading at once: ${(await reference).eagerEcho.join(', ')} of ${MIB} bytes`);
  });
});
