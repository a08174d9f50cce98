/**
 * The daemon's client side end to end: MuxdServer over a REAL Unix socket and a REAL TCP loopback
 * socket, the real device directory and mux engine and emulated iPhones on in-memory transports
 * (echo 7, discard 9, source 19, lockdownd 62078).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MuxdServer } from '../../src/server/index.js';
import type { ListenTarget } from '../../src/server/index.js';
import { encodeFrame } from '../../src/server/framing.js';
import { encodeBinaryConnect, encodeBinaryListen, encodePlistRequest, swapPort } from '../../src/server/messages.js';
import type { Reply } from '../../src/server/messages.js';
import type { Device, DeviceRegistry } from '../../src/devices/index.js';
import { muxDevices } from '../support/mux-devices.js';
import { FilePairRecordStore } from '../../src/pairrecords/index.js';
import { buildBinary, parsePlist } from '../../src/plist/index.js';
import { createVirtualDevice, ECHO_PORT, LOCKDOWN_PORT, SOURCE_PORT, sourceBytes } from '../../src/emulator/index.js';
import type { VirtualDevice } from '../../src/emulator/index.js';
import { silentLogger } from '../../src/log.js';
import { ConnectRefused, MuxdClient, MuxdClientClosedError } from '../support/muxd-client.js';
import type { MuxdTarget } from '../support/muxd-client.js';

interface Harness {
  readonly registry: DeviceRegistry;
  readonly server: MuxdServer;
  readonly target: MuxdTarget;
  readonly devices: VirtualDevice[];
  plug(udid?: string): Promise<{ vd: VirtualDevice; device: Device }>;
  client(): Promise<MuxdClient>;
}

let tmp: string;
let h: Harness;

async function harness(kind: 'unix' | 'tcp'): Promise<Harness> {
  const { registry, mux } = muxDevices();
  const server = new MuxdServer({ directory: registry, store: new FilePairRecordStore({ dir: join(tmp, 'lockdown') }), log: silentLogger() });
  const listen: ListenTarget = kind === 'unix' ? { kind: 'unix', path: join(tmp, 'usbmuxd') } : { kind: 'tcp', host: '127.0.0.1', port: 0 };
  await server.listen(listen);
  const target: MuxdTarget = kind === 'unix' ? { path: join(tmp, 'usbmuxd') } : { host: '127.0.0.1', port: (server.address() as AddressInfo).port };
  const devices: VirtualDevice[] = [];
  return {
    registry,
    server,
    target,
    devices,
    async plug(udid) {
      const vd = createVirtualDevice(udid === undefined ? {} : { emulator: { udid } });
      devices.push(vd);
      const attached = new Promise<Device>((resolve) => {
        const on = (d: Device): void => {
          if (d.info.serial !== vd.info.serial) return;
          registry.off('attached', on);
          resolve(d);
        };
        registry.on('attached', on);
      });
      mux.addDevice(vd.transport, vd.info);
      return { vd, device: await attached };
    },
    client: () => MuxdClient.connect(target),
  };
}

function read(socket: Socket, n: number, timeoutMs = 5000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`read ${got} of ${n} bytes`));
    }, timeoutMs);
    const onData = (c: Buffer): void => {
      chunks.push(c);
      got += c.length;
      if (got >= n) {
        cleanup();
        const all = Buffer.concat(chunks);
        if (all.length > n) socket.unshift(all.subarray(n));
        resolve(all.subarray(0, n));
      }
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.pause();
    };
    socket.on('data', onData);
    socket.resume();
  });
}

async function until(check: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function result(reply: Reply): number {
  if (reply.kind !== 'result') throw new Error(`expected a Result, got ${JSON.stringify(reply)}`);
  return reply.number;
}

beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'muxd-int-'));
});

afterEach(async () => {
  await h.server.close();
  await h.registry.shutdown();
  await rm(tmp, { recursive: true, force: true });
});

describe.each(['unix', 'tcp'] as const)('over a real %s socket', (kind) => {
  beforeEach(async () => {
    h = await harness(kind);
  });

  it('ListDevices, ReadBUID, ListListeners and the pair-record commands', async () => {
    const { vd, device } = await h.plug();
    const c = await h.client();
    const list = (await c.request({ MessageType: 'ListDevices' })).reply;
    expect(list.kind === 'plist' && list.dict['DeviceList']).toEqual([{
      MessageType: 'Attached',
      DeviceID: device.id,
      Properties: {
        ConnectionSpeed: 480000000, ConnectionType: 'USB', DeviceID: device.id, LocationID: vd.info.locationId,
        ProductID: vd.info.productId, SerialNumber: vd.info.serial, USBSerialNumber: vd.info.usbSerial,
      },
    }]);
    const buid = (await c.request({ MessageType: 'ReadBUID' })).reply;
    expect(buid.kind === 'plist' && buid.dict['BUID']).toMatch(/^[0-9A-F]{8}(-[0-9A-F]{4}){3}-[0-9A-F]{12}$/);
    const udid = vd.info.serial;
    expect(result((await c.request({ MessageType: 'ReadPairRecord', PairRecordID: udid })).reply)).toBe(2);
    expect(result((await c.request({ MessageType: 'SavePairRecord', PairRecordID: udid, PairRecordData: buildBinary({ HostID: 'h' }), DeviceID: device.id })).reply)).toBe(0);
    const rec = (await c.request({ MessageType: 'ReadPairRecord', PairRecordID: udid })).reply;
    const data = rec.kind === 'plist' ? rec.dict['PairRecordData'] : undefined;
    expect(Buffer.isBuffer(data) && parsePlist(data)).toEqual({ HostID: 'h' });
    expect(result((await c.request({ MessageType: 'DeletePairRecord', PairRecordID: udid })).reply)).toBe(0);
    expect(result((await c.request({ MessageType: 'DeletePairRecord', PairRecordID: udid })).reply)).toBe(2);
    const listeners = (await c.request({ MessageType: 'ListListeners' })).reply;
    expect(listeners.kind === 'plist' && listeners.dict['ListenerList']).toEqual([]);
  });

  it('Connect to echo: raw tunnel, and bytes in the same write as Connect reach the device', async () => {
    const { device } = await h.plug();
    const c = await h.client();
    const tunnel = await c.connectDevice(device.id, ECHO_PORT, { payload: Buffer.from('hello in the same write') });
    expect((await read(tunnel, 23)).toString()).toBe('hello in the same write');
    const big = Buffer.alloc(300_000, 0x5a);
    tunnel.write(big);
    expect((await read(tunnel, big.length)).equals(big)).toBe(true);
  });

  it('plist Connect to lockdownd: PortNumber 32498 on the wire means port 62078', async () => {
    const { vd, device } = await h.plug();
    expect(swapPort(LOCKDOWN_PORT)).toBe(32498);
    const c = await h.client();
    const opened = vd.emulator.stats.connectionsOpened;
    const { frame, reply } = await c.request({ MessageType: 'Connect', DeviceID: device.id, PortNumber: 32498 }, { tag: 77 });
    expect([frame.tag, frame.version, result(reply)]).toEqual([77, 1, 0]);
    expect(vd.emulator.stats.connectionsOpened).toBe(opened + 1);
  });

  it('Connect to a closed port → Result 3 and the client may retry; unknown DeviceID → 2', async () => {
    const { device } = await h.plug();
    const c = await h.client();
    await expect(c.connectDevice(device.id, 1234)).rejects.toEqual(new ConnectRefused(3));
    await expect(c.connectDevice(device.id + 100, ECHO_PORT)).rejects.toEqual(new ConnectRefused(2));
    const tunnel = await c.connectDevice(device.id, ECHO_PORT);
    tunnel.write('again');
    expect((await read(tunnel, 5)).toString()).toBe('again');
  });

  it('pipelined requests in one write, with tags and header version echoed', async () => {
    await h.plug();
    const c = await h.client();
    c.send(Buffer.concat([
      encodePlistRequest(101, { MessageType: 'ListDevices' }),
      encodeFrame(9, 8, 102), // unknown header version: Result 6, in the connection's (plist) dialect
      encodePlistRequest(103, { MessageType: 'ReadBUID' }),
      encodePlistRequest(104, { MessageType: 'Bogus' }),
    ]));
    const frames = [await c.readFrame(), await c.readFrame(), await c.readFrame(), await c.readFrame()];
    expect(frames.map((f) => [f.tag, f.version, f.message])).toEqual([[101, 1, 8], [102, 1, 8], [103, 1, 8], [104, 1, 8]]);
    expect(parsePlist(frames[1]!.body)).toEqual({ MessageType: 'Result', Number: 6 });
    expect(parsePlist(frames[3]!.body)).toEqual({ MessageType: 'Result', Number: 1 });
  });

  it('a binary (version 0) client: LISTEN with DEVICE_ADD, and CONNECT with the port in network order', async () => {
    const { device } = await h.plug();
    const l = await h.client();
    l.send(encodeBinaryListen(1));
    const ok = await l.readFrame();
    expect([ok.version, ok.message, ok.tag, ok.body.readUInt32LE(0)]).toEqual([0, 1, 1, 0]);
    const add = await l.readFrame();
    expect([add.version, add.message, add.length, add.body.readUInt32LE(0)]).toEqual([0, 4, 284, device.id]);
    const c = await h.client();
    c.send(Buffer.concat([encodeBinaryConnect(7, device.id, ECHO_PORT), Buffer.from('bin')]));
    const res = await c.readFrame();
    expect([res.version, res.message, res.tag, res.body.readUInt32LE(0)]).toEqual([0, 1, 7, 0]);
    expect((await read(c.takeSocket(), 3)).toString()).toBe('bin');
  });

  it('listeners see Attached, Paired and Detached in order', async () => {
    const first = await h.plug('00008030-0000000000000001');
    const l = await h.client();
    const events = l.listen();
    const seen: string[] = [];
    const next = async (): Promise<void> => {
      const r = await events.next();
      if (r.done === true) throw new Error('listener closed');
      const v = r.value;
      seen.push(v.kind === 'result' || v.kind === 'plist' ? v.kind : `${v.kind}:${v.deviceId}`);
    };
    await next();
    const second = await h.plug('00008030-0000000000000002');
    const c = await h.client();
    await c.request({ MessageType: 'SavePairRecord', PairRecordID: second.vd.info.serial, PairRecordData: buildBinary({ a: 1 }), DeviceID: second.device.id });
    first.vd.unplug();
    await next();
    await next();
    await next();
    expect(seen).toEqual([`attached:${first.device.id}`, `attached:${second.device.id}`, `paired:${second.device.id}`, `detached:${first.device.id}`]);
  });

  it('a client killed mid-tunnel produces an RST at the phone', async () => {
    const { vd, device } = await h.plug();
    const tunnel = await (await h.client()).connectDevice(device.id, ECHO_PORT);
    tunnel.write('x');
    expect((await read(tunnel, 1)).toString()).toBe('x');
    const before = vd.emulator.stats.rstIn;
    tunnel.destroy();
    await until(() => vd.emulator.stats.rstIn === before + 1);
    await until(() => vd.emulator.openConnections.length === 0);
  });

  it('frames < 16 or > 64 KiB close that client only; garbage does not disturb another tunnel', async () => {
    const { device } = await h.plug();
    const tunnel = await (await h.client()).connectDevice(device.id, ECHO_PORT);
    const short = await h.client();
    short.send(Buffer.from('0c000000010000000800000001000000', 'hex'));
    await short.closed();
    const long = await h.client();
    const header = Buffer.alloc(16);
    header.writeUInt32LE(65537, 0);
    long.send(header);
    await long.closed();
    await expect(long.readFrame()).rejects.toBeInstanceOf(MuxdClientClosedError);
    const garbage = await h.client();
    garbage.send(Buffer.from('\x10\x00\x00\x00 garbage garbage garbage garbage'));
    tunnel.write('still fine');
    expect((await read(tunnel, 10)).toString()).toBe('still fine');
  });

  it('a listener that sends anything is closed', async () => {
    await h.plug();
    const l = await h.client();
    const events = l.listen();
    await events.next();
    l.send(encodePlistRequest(2, { MessageType: 'ListDevices' }));
    await l.closed();
  });
});

describe('flow control (unix)', () => {
  beforeEach(async () => {
    h = await harness('unix');
  });

  it('a slow-reading tunnel client keeps daemon-side buffering bounded while the source keeps sending', async () => {
    const { vd, device } = await h.plug();
    const tunnel = await (await h.client()).connectDevice(device.id, SOURCE_PORT);
    // Read a little, then stop reading entirely.
    const head = await read(tunnel, 10_000);
    expect(head.equals(sourceBytes(0, 10_000))).toBe(true);
    await sleep(300);
    const stalledAt = vd.emulator.stats.tcpBytesOut;
    await sleep(300);
    const later = vd.emulator.stats.tcpBytesOut;
    // The device is throttled: nothing more is sent while nobody reads.
    expect(later).toBe(stalledAt);
    // What the daemon holds is what the device sent minus what the client read minus what
    // sits in the kernel socket buffers: sent - read is bounded by window + socket buffers.
    const unread = later - 10_000;
    expect(unread).toBeLessThan(131_072 + 2 * 1024 * 1024);
    console.info(`slow reader: device sent ${later} bytes, client read 10000, unread ${unread}`);
    // Resume: the stream continues intact from where it stopped.
    const rest = await read(tunnel, unread + 50_000);
    expect(rest.equals(sourceBytes(10_000, unread + 50_000))).toBe(true);
  });
});
