/**
 * A client's end of a tunnel, end to end: MuxdServer on a real Unix socket, the mux engine and an
 * emulated iPhone in process. A client that writes and then ends (`cat file | inetcat PORT`, a
 * forwarder passing on its own client's EOF) must see every byte it wrote reach the phone before the
 * RST, and a client that only shut down its writing side still gets the phone's answer.
 *
 * The reproduction of issue 16: a phone advertising a 128 KiB window, sending 16 KiB packets and
 * ACKing each data packet; the client writes 1 MiB to discard (9) and ends. Before the fix the
 * phone received 1 015 734 of 1 048 576 bytes in 2 of 3 runs (the tunnel reset on the client's EOF,
 * dropping what was window-limited or tail-held).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Device, DeviceRegistry } from '../../src/devices/index.js';
import { createDiscardService, createVirtualDevice, defaultServices, DISCARD_PORT, ECHO_PORT } from '../../src/emulator/index.js';
import type { FaultKnobs, Service, VirtualDevice } from '../../src/emulator/index.js';
import { silentLogger } from '../../src/log.js';
import { FilePairRecordStore } from '../../src/pairrecords/index.js';
import { MuxdServer } from '../../src/server/index.js';
import { MuxdClient } from '../support/muxd-client.js';
import { muxDevices } from '../support/mux-devices.js';

/** Bytes the phone's discard service had taken when each of its connections closed, and why. */
interface DiscardRecord {
  bytes: number;
  closedWith?: string;
}

interface Rig {
  readonly registry: DeviceRegistry;
  readonly server: MuxdServer;
  readonly path: string;
  readonly vd: VirtualDevice;
  readonly device: Device;
  readonly discards: DiscardRecord[];
}

let tmp: string;
let rig: Rig | undefined;

/** The issue's phone: 128 KiB window, 16 KiB packets, an ACK for each data packet at once. */
const ISSUE_PHONE: Partial<FaultKnobs> = { window: 128 * 1024, maxPacket: 16 * 1024, ackDelayMs: 0 };

async function start(faults: Partial<FaultKnobs>, endTimeoutMs?: number): Promise<Rig> {
  const { registry, mux } = muxDevices(endTimeoutMs === undefined ? {} : { endTimeoutMs });
  const path = join(tmp, 'usbmuxd');
  const server = new MuxdServer({ directory: registry, store: new FilePairRecordStore({ dir: join(tmp, 'lockdown') }), log: silentLogger() });
  await server.listen({ kind: 'unix', path });
  // A discard service that records, per connection, how much it had when the host closed it.
  const discards: DiscardRecord[] = [];
  const records = new WeakMap<object, DiscardRecord>();
  const stock = createDiscardService({ discardBytes: 0 } as Parameters<typeof createDiscardService>[0]);
  const discard: Service = {
    name: stock.name,
    onOpen(conn) {
      const record: DiscardRecord = { bytes: 0 };
      records.set(conn, record);
      discards.push(record);
    },
    onData(conn, data) {
      const record = records.get(conn);
      if (record !== undefined) record.bytes += data.length;
    },
    onClose(conn, reason) {
      const record = records.get(conn);
      if (record !== undefined) record.closedWith = reason;
    },
  };
  const udid = '00008030-00AA00BB00CC00DD';
  const vd = createVirtualDevice({ emulator: { udid, faults, services: new Map([...defaultServices(udid, { discardBytes: 0 } as never), [DISCARD_PORT, discard]]) } });
  const attached = new Promise<Device>((resolve) => registry.once('attached', resolve));
  mux.addDevice(vd.transport, vd.info);
  return { registry, server, path, vd, device: await attached, discards };
}

/** Everything the socket delivers until the daemon ends it (after `delayMs` of not reading). */
function readToEnd(socket: Socket, delayMs = 0): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    socket.on('data', (b: Buffer) => chunks.push(b));
    socket.once('end', () => {
      resolve(Buffer.concat(chunks));
    });
    socket.once('error', reject);
    setTimeout(() => {
      socket.resume();
    }, delayMs);
  });
}

/** The RST crosses the in-memory link after the daemon ended the client: wait for the phone to see it. */
async function until(check: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

const allClosed = (r: Rig): boolean => r.discards.every((d) => d.closedWith !== undefined);

async function tunnel(r: Rig, port: number): Promise<Socket> {
  return (await MuxdClient.connect({ path: r.path })).connectDevice(r.device.id, port);
}

beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'muxd-eof-'));
});

afterEach(async () => {
  await rig?.server.close();
  await rig?.registry.shutdown();
  rig = undefined;
  await rm(tmp, { recursive: true, force: true });
});

describe('a client that writes and then ends', () => {
  it('1 MiB to discard, then end, three times: the phone gets every byte, and only then the RST', async () => {
    rig = await start(ISSUE_PHONE);
    for (let run = 0; run < 3; run++) {
      const s = await tunnel(rig, DISCARD_PORT);
      const closed = readToEnd(s);
      s.end(randomBytes(1 << 20));
      expect((await closed).length).toBe(0);
    }
    const r = rig;
    await until(() => allClosed(r));
    expect(rig.discards).toEqual([
      { bytes: 1 << 20, closedWith: 'host-reset' },
      { bytes: 1 << 20, closedWith: 'host-reset' },
      { bytes: 1 << 20, closedWith: 'host-reset' },
    ]);
  });

  it('the same through a phone with a 16 KiB window that ACKs late (bytes wait for window and for ACKs)', async () => {
    rig = await start({ window: 16 * 1024, maxPacket: 4096, ackDelayMs: 20 });
    const s = await tunnel(rig, DISCARD_PORT);
    const closed = readToEnd(s);
    s.end(randomBytes(300_000));
    await closed;
    const r = rig;
    await until(() => allClosed(r));
    expect(rig.discards).toEqual([{ bytes: 300_000, closedWith: 'host-reset' }]);
  });

  it('a phone that never ACKs is reset anyway once endTimeoutMs passes without progress', async () => {
    rig = await start({ ...ISSUE_PHONE, withholdAcks: true }, 300);
    const s = await tunnel(rig, DISCARD_PORT);
    const closed = readToEnd(s);
    const t0 = Date.now();
    s.end(randomBytes(64 * 1024));
    await closed;
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    const r = rig;
    await until(() => allClosed(r));
    expect(rig.discards).toEqual([{ bytes: 64 * 1024, closedWith: 'host-reset' }]);
  });
});

describe('a client that shuts down its writing side and still reads', () => {
  for (const delayMs of [0, 500]) {
    it(`gets the echo of all 1 MiB it wrote (reading ${delayMs === 0 ? 'at once' : `after ${delayMs} ms`})`, async () => {
      rig = await start(ISSUE_PHONE);
      const s = await tunnel(rig, ECHO_PORT);
      s.pause();
      const back = readToEnd(s, delayMs);
      const data = randomBytes(1 << 20);
      s.end(data);
      expect((await back).equals(data)).toBe(true);
      const vd = rig.vd;
      await until(() => vd.emulator.stats.rstIn === 1);
    });
  }

  it('a request in command mode, then EOF: the reply still comes, then the daemon ends the socket', async () => {
    rig = await start(ISSUE_PHONE);
    const c = await MuxdClient.connect({ path: rig.path });
    const reply = c.request({ MessageType: 'ReadBUID' });
    c.socket.end();
    const { reply: r } = await reply;
    expect(r.kind === 'plist' && typeof r.dict['BUID']).toBe('string');
    await c.closed();
  });
});
