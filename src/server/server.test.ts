/**
 * MuxdServer + ClientSession over a real Unix socket, with the fake device directory and a
 * file-backed pair-record store in a temp dir.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { lstat, mkdtemp, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MuxdServer } from './server.js';
import { SocketPathOccupiedError } from './errors.js';
import { encodeFrame } from './framing.js';
import { encodeBinaryConnect, encodeBinaryListen, encodePlistRequest, swapPort } from './messages.js';
import { FilePairRecordStore } from '../pairrecords/index.js';
import { buildBinary, buildXml, parsePlist } from '../plist/index.js';
import type { PlistDict } from '../plist/index.js';
import { silentLogger } from '../log.js';
import { pino } from 'pino';
import { FakeDirectory } from '../../test/support/fake-directory.js';
import { ConnectRefused, MuxdClient, MuxdClientClosedError } from '../../test/support/muxd-client.js';

let dir: string;
let path: string;
let directory: FakeDirectory;
let server: MuxdServer;

async function start(maxClients?: number): Promise<void> {
  server = new MuxdServer({
    directory,
    store: new FilePairRecordStore({ dir: join(dir, 'lockdown') }),
    log: silentLogger(),
    ...(maxClients === undefined ? {} : { maxClients }),
  });
  await server.listen({ kind: 'unix', path });
}

const client = (): Promise<MuxdClient> => MuxdClient.connect({ path });

function readAll(socket: Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.resume();
  return new Promise((resolve) => socket.once('close', () => { resolve(Buffer.concat(chunks)); }));
}

async function until(check: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'muxd-server-'));
  path = join(dir, 'usbmuxd');
  directory = new FakeDirectory();
});

afterEach(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

describe('listening socket', () => {
  it('creates the socket with mode 0666, replaces a stale socket, refuses a regular file', async () => {
    // A stale socket from a previous run: bound, then its server gone without unlinking.
    // A stale socket from a previous run: Node unlinks its own path on close, so bind elsewhere and move it.
    const stale = createServer();
    await new Promise<void>((r) => stale.listen(`${path}.old`, r));
    await rename(`${path}.old`, path);
    await new Promise((r) => stale.close(r));
    expect((await lstat(path)).isSocket()).toBe(true);
    await start();
    expect((await stat(path)).mode & 0o777).toBe(0o666);
    await server.close();
    await writeFile(path, 'not a socket');
    const again = new MuxdServer({ directory, store: new FilePairRecordStore({ dir }), log: silentLogger() });
    await expect(again.listen({ kind: 'unix', path })).rejects.toBeInstanceOf(SocketPathOccupiedError);
  });

  it('applies mode and gid to the socket file', async () => {
    server = new MuxdServer({ directory, store: new FilePairRecordStore({ dir }), log: silentLogger() });
    const gid = process.getgid?.() ?? 0;
    await server.listen({ kind: 'unix', path, mode: 0o660, gid });
    const st = await stat(path);
    expect([st.mode & 0o777, st.gid]).toEqual([0o660, gid]);
  });

  it('calls identify once per client and logs its bindings', async () => {
    const seen: unknown[] = [];
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (line: string) => { lines.push(line); } });
    server = new MuxdServer({
      directory,
      store: new FilePairRecordStore({ dir }),
      log,
      identify: (socket) => {
        seen.push(socket.remoteAddress);
        return { bindings: { peer: 4242 }, connected: { cmdline: 'idevice_id -l' } };
      },
    });
    await server.listen({ kind: 'unix', path });
    const c = await client();
    await c.request({ MessageType: 'ListDevices' });
    await c.close();
    await until(() => lines.some((l) => l.includes('client closed')));
    expect(seen).toHaveLength(1);
    const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(parsed.find((l) => l['msg'] === 'client connected')).toMatchObject({ peer: 4242, cmdline: 'idevice_id -l' });
    // the bindings go on every line of the client, the connect fields on the connect line only
    const closed = parsed.find((l) => l['msg'] === 'client closed');
    expect(closed).toMatchObject({ peer: 4242 });
    expect(closed).not.toHaveProperty('cmdline');
  });

  it('limits clients: the one over maxClients is closed', async () => {
    await start(2);
    const a = await client();
    const b = await client();
    const c = await client();
    await c.closed();
    await until(() => server.clientCount === 2);
    expect((await a.request({ MessageType: 'ListDevices' })).reply.kind).toBe('plist');
    await a.close();
    await b.close();
    await until(() => server.clientCount === 0);
  });
});

describe('commands', () => {
  beforeEach(() => start());

  it('ListDevices lists visible devices only, as Attached dicts without a MessageType', async () => {
    directory.add();
    directory.add(undefined, false);
    const d3 = directory.add();
    const c = await client();
    const { frame, reply } = await c.request({ MessageType: 'ListDevices' }, { tag: 9 });
    expect(frame.tag).toBe(9);
    expect(frame.version).toBe(1);
    expect(reply.kind).toBe('plist');
    const list = reply.kind === 'plist' ? reply.dict['DeviceList'] : undefined;
    expect(Array.isArray(list) && list.map((d) => (d as PlistDict)['DeviceID'])).toEqual([1, 3]);
    expect(Array.isArray(list) && (list[1] as PlistDict)['Properties']).toMatchObject({ SerialNumber: d3.info.serial, ConnectionType: 'USB', DeviceID: 3 });
  });

  it('ReadBUID answers the stored BUID', async () => {
    const c = await client();
    const { reply } = await c.request({ MessageType: 'ReadBUID' });
    expect(reply.kind === 'plist' && reply.dict['BUID']).toMatch(/^[0-9A-F]{8}-/);
  });

  it('pair records: save (binary in, XML stored), read, delete, and the error Results', async () => {
    const c = await client();
    const id = '00008030-001A2B3C4D5E6F70';
    const res = async (m: PlistDict): Promise<unknown> => {
      const { reply } = await c.request(m);
      return reply.kind === 'result' ? reply.number : reply;
    };
    expect(await res({ MessageType: 'ReadPairRecord', PairRecordID: id })).toBe(2);
    expect(await res({ MessageType: 'ReadPairRecord' })).toBe(22);
    expect(await res({ MessageType: 'SavePairRecord', PairRecordID: id })).toBe(22);
    expect(await res({ MessageType: 'SavePairRecord', PairRecordID: id, PairRecordData: Buffer.from('short') })).toBe(22);
    expect(await res({ MessageType: 'SavePairRecord', PairRecordID: '../../etc/x', PairRecordData: buildXml({ a: 1 }) })).toBe(22);
    expect(await res({ MessageType: 'SavePairRecord', PairRecordID: id, PairRecordData: buildBinary({ HostID: 'H' }) })).toBe(0);
    const read = await c.request({ MessageType: 'ReadPairRecord', PairRecordID: id });
    const data = read.reply.kind === 'plist' ? read.reply.dict['PairRecordData'] : undefined;
    expect(Buffer.isBuffer(data) && data.toString().startsWith('<?xml')).toBe(true);
    expect(Buffer.isBuffer(data) && parsePlist(data)).toEqual({ HostID: 'H' });
    expect(await res({ MessageType: 'DeletePairRecord', PairRecordID: id })).toBe(0);
    expect(await res({ MessageType: 'DeletePairRecord', PairRecordID: id })).toBe(2);
    expect(await res({ MessageType: 'DeletePairRecord' })).toBe(22);
  });

  it('SavePairRecord with a matching DeviceID (hidden device too) raises Paired; a mismatch does not', async () => {
    const hidden = directory.add(undefined, false);
    const other = directory.add();
    const c = await client();
    await c.request({ MessageType: 'SavePairRecord', PairRecordID: hidden.info.serial, PairRecordData: buildXml({ a: 1 }), DeviceID: hidden.id });
    await c.request({ MessageType: 'SavePairRecord', PairRecordID: hidden.info.serial, PairRecordData: buildXml({ a: 1 }), DeviceID: other.id });
    await c.request({ MessageType: 'SavePairRecord', PairRecordID: hidden.info.serial, PairRecordData: buildXml({ a: 1 }) });
    expect(directory.pairedCalls).toEqual([hidden.id]);
  });

  it('bad input gets a Result with the request tag: version 6, type 1, MessageType 1, malformed plist 1', async () => {
    const c = await client();
    const r = async (frame: Buffer): Promise<[number, unknown]> => {
      const { frame: f, reply } = await c.request(frame);
      return [f.tag, reply.kind === 'result' ? reply.number : reply];
    };
    expect(await r(encodeFrame(7, 3, 11))).toEqual([11, 6]);
    expect(await r(encodeFrame(0, 9, 12))).toEqual([12, 1]);
    // A fresh connection is binary until its first type-8 message, even a malformed one.
    expect((await c.request(encodeFrame(9, 3, 10))).frame.version).toBe(0);
    const malformed = await c.request(encodeFrame(1, 8, 14, Buffer.from('<plist><dict><key>')));
    expect([malformed.frame.version, malformed.frame.message, malformed.frame.tag, malformed.reply]).toEqual([1, 8, 14, { kind: 'result', number: 1 }]);
    expect(await r(encodeFrame(1, 8, 15, buildXml({ NoMessageType: 1 })))).toEqual([15, 1]);
    expect(await r(encodePlistRequest(13, { MessageType: 'Nope' }))).toEqual([13, 1]);
    // still in command state
    expect((await c.request({ MessageType: 'ListDevices' })).reply.kind).toBe('plist');
  });

  it('pipelined requests in one write are answered in order', async () => {
    directory.add();
    const c = await client();
    c.send(Buffer.concat([
      encodePlistRequest(1, { MessageType: 'ReadBUID' }),
      encodePlistRequest(2, { MessageType: 'ListDevices' }),
      encodePlistRequest(3, { MessageType: 'ReadPairRecord', PairRecordID: 'f'.repeat(40) }),
      encodePlistRequest(4, { MessageType: 'ListListeners' }),
    ]));
    const tags = [];
    for (let i = 0; i < 4; i++) tags.push((await c.readFrame()).tag);
    expect(tags).toEqual([1, 2, 3, 4]);
  });

  it('a client that pipelines requests without reading replies is throttled, then answered in full', async () => {
    // A second server whose identify hook hands us the daemon-side socket.
    await server.close();
    let daemonSide: Socket | undefined;
    server = new MuxdServer({
      directory,
      store: new FilePairRecordStore({ dir }),
      log: silentLogger(),
      identify: (socket) => {
        daemonSide = socket;
        return {};
      },
    });
    await server.listen({ kind: 'unix', path });
    const c = await client();
    const count = 12_000; // ~4 MB of requests, ~3 MB of replies
    const request = encodePlistRequest(1, { MessageType: 'ListListeners' });
    c.socket.pause();
    for (let i = 0; i < count; i++) c.send(request);
    let peak = 0;
    for (let t = 0; t < 40; t++) {
      await new Promise((r) => setTimeout(r, 50));
      peak = Math.max(peak, daemonSide?.writableLength ?? 0);
    }
    // Replies held by the daemon stay within the backlog limit plus one reply.
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThan(1024 * 1024 + 1024);
    c.socket.resume();
    for (let i = 0; i < count; i++) expect((await c.readFrame()).tag).toBe(1);
  });

  it('frames shorter than 16 or longer than 65536 close the client', async () => {
    const short = await client();
    short.send(Buffer.from('08000000010000000800000001000000', 'hex'));
    await short.closed();
    const long = await client();
    const header = Buffer.alloc(16);
    header.writeUInt32LE(65537, 0);
    long.send(header);
    await long.closed();
    await expect(long.readFrame()).rejects.toBeInstanceOf(MuxdClientClosedError);
  });
});

describe('Listen', () => {
  beforeEach(() => start());

  it('Result 0, one Attached per visible device, then live events in order; input closes', async () => {
    const d1 = directory.add();
    directory.add(undefined, false);
    const c = await client();
    const events = c.listen();
    const seen: string[] = [];
    const next = async (): Promise<void> => {
      const { value } = await events.next();
      if (value === undefined) throw new Error('listen ended');
      seen.push(`${value.kind}:${value.kind === 'result' || value.kind === 'plist' ? '' : value.deviceId}`);
    };
    await next();
    const d3 = directory.add();
    directory.markPaired(d3.id);
    directory.remove(d1);
    await next();
    await next();
    await next();
    expect(seen).toEqual(['attached:1', 'attached:3', 'paired:3', 'detached:1']);
    c.send(encodePlistRequest(5, { MessageType: 'ListDevices' }));
    await c.closed();
  });

  it('a listener that stops reading is closed once its backlog passes the limit', async () => {
    const c = await client();
    const events = c.listen();
    void events.next();
    await until(() => server.clientCount === 1);
    c.socket.pause();
    // Each Attached is ~700 bytes: 8000 of them overflow kernel buffers plus the 1 MiB limit.
    for (let i = 0; i < 8000 && server.clientCount === 1; i++) directory.add();
    await until(() => server.clientCount === 0);
  });

  it('a request pipelined behind Listen in the same write closes the listener, as one sent later does', async () => {
    const c = await client();
    c.send(Buffer.concat([encodePlistRequest(1, { MessageType: 'Listen' }), encodePlistRequest(2, { MessageType: 'ListDevices' })]));
    await until(() => server.clientCount === 0);
  });

  it('binary listener gets DEVICE_ADD/REMOVE/PAIRED in version 0', async () => {
    const d1 = directory.add();
    const c = await client();
    c.send(encodeBinaryListen(1));
    const result = await c.readFrame();
    expect([result.version, result.message, result.body.readUInt32LE(0)]).toEqual([0, 1, 0]);
    const add = await c.readFrame();
    expect([add.version, add.message, add.length]).toEqual([0, 4, 284]);
    directory.markPaired(d1.id);
    directory.remove(d1);
    expect((await c.readFrame()).message).toBe(6);
    expect((await c.readFrame()).message).toBe(5);
  });

  it('ListListeners shows listeners with their identity and the requester number in ID String', async () => {
    const l = await client();
    l.send(encodePlistRequest(1, { MessageType: 'Listen', ProgName: 'watcher', kLibUSBMuxVersion: 3, BundleID: 'org.x' }));
    await l.readFrame();
    const q = await client();
    const { reply } = await q.request({ MessageType: 'ListListeners', ProgName: 'asker' });
    expect(reply.kind === 'plist' && reply.dict['ListenerList']).toEqual([
      { Blacklisted: false, BundleID: 'org.x', ConnType: 0, 'ID String': '1-watcher', ProgName: 'watcher', kLibUSBMuxVersion: 3 },
    ]);
  });
});

describe('a request that fails by a bug', () => {
  beforeEach(() => start());

  it('closes only its client; the daemon answers the next one', async () => {
    const dev = directory.add();
    const original = directory.list.bind(directory);
    let broken = true;
    directory.list = () => {
      if (broken) throw new TypeError('bug while listing');
      return original();
    };
    const victim = await client();
    victim.send(encodePlistRequest(1, { MessageType: 'ListDevices' }));
    await expect(victim.readFrame()).rejects.toBeInstanceOf(MuxdClientClosedError);
    broken = false;
    const next = await client();
    const { reply } = await next.request({ MessageType: 'ListDevices' });
    expect(reply.kind === 'plist' && (reply.dict['DeviceList'] as PlistDict[]).map((d) => d['DeviceID'])).toEqual([dev.id]);
  });
});

describe('Connect', () => {
  beforeEach(() => start());

  it('Result 0 then a raw tunnel both ways; bytes sent with Connect reach the device first', async () => {
    const dev = directory.add();
    const c = await client();
    const socket = await c.connectDevice(dev.id, 62078, { payload: Buffer.from('early') });
    const conn = dev.connections[0]!;
    expect(conn.remotePort).toBe(62078);
    socket.write('late');
    await until(() => conn.writtenBytes.toString() === 'earlylate');
    const got = new Promise<Buffer>((resolve) => socket.once('data', resolve));
    socket.resume();
    await conn.deliver(Buffer.from('from phone'));
    expect((await got).toString()).toBe('from phone');
  });

  it('plist PortNumber arrives byte-swapped; binary CONNECT in network order', async () => {
    const dev = directory.add();
    const c = await client();
    c.send(encodeFrame(1, 8, 1, buildXml({ MessageType: 'Connect', DeviceID: dev.id, PortNumber: swapPort(22) })));
    expect((await c.readReply()).reply).toEqual({ kind: 'result', number: 0 });
    const b = await client();
    b.send(encodeBinaryConnect(1, dev.id, 22));
    const { frame, reply } = await b.readReply();
    expect([frame.version, reply]).toEqual([0, { kind: 'result', number: 0 }]);
    expect(dev.connections.map((x) => x.remotePort)).toEqual([22, 22]);
  });

  it('refused → 3, gone → 2, timeout → 3, unknown device → 2, no PortNumber → 1, no DeviceID → 2; client stays in command state', async () => {
    const dev = directory.add();
    const c = await client();
    const refusal = async (m: PlistDict): Promise<number> => {
      const { reply } = await c.request(m);
      return reply.kind === 'result' ? reply.number : -1;
    };
    dev.behaviour = 'refuse';
    expect(await refusal({ MessageType: 'Connect', DeviceID: dev.id, PortNumber: swapPort(7) })).toBe(3);
    dev.behaviour = 'gone';
    expect(await refusal({ MessageType: 'Connect', DeviceID: dev.id, PortNumber: swapPort(7) })).toBe(2);
    dev.behaviour = 'timeout';
    expect(await refusal({ MessageType: 'Connect', DeviceID: dev.id, PortNumber: swapPort(7) })).toBe(3);
    expect(await refusal({ MessageType: 'Connect', DeviceID: 99, PortNumber: swapPort(7) })).toBe(2);
    expect(await refusal({ MessageType: 'Connect', DeviceID: dev.id })).toBe(1);
    expect(await refusal({ MessageType: 'Connect', PortNumber: 7 })).toBe(2);
    dev.behaviour = 'accept';
    await expect(c.connectDevice(dev.id, 7)).resolves.toBeDefined();
    await expect((await client()).connectDevice(99, 7)).rejects.toEqual(new ConnectRefused(2));
  });

  it('client closing while connecting: the connection is reset when it arrives', async () => {
    const dev = directory.add();
    dev.behaviour = 'hang';
    const c = await client();
    c.send(encodePlistRequest(1, { MessageType: 'Connect', DeviceID: dev.id, PortNumber: swapPort(7) }));
    await until(() => dev.pending.length === 1);
    await c.close();
    await until(() => server.clientCount === 0);
    const conn = dev.open(7);
    dev.pending[0]!.resolve(conn);
    await until(() => conn.resetCount === 1);
  });

  it('device reset ends the client after queued bytes; client close finishes the connection (end, not reset)', async () => {
    const dev = directory.add();
    const a = await (await client()).connectDevice(dev.id, 7);
    const connA = dev.connections[0]!;
    const all = readAll(a);
    void connA.deliver(Buffer.alloc(100_000, 1));
    connA.close('device-reset');
    expect((await all).length).toBe(100_000);

    const b = await (await client()).connectDevice(dev.id, 7);
    const connB = dev.connections[1]!;
    b.destroy();
    await until(() => connB.endCount === 1);
    expect(connB.resetCount).toBe(0);
  });

  it('backpressure: a full connection pauses the client socket until onWritable', async () => {
    const dev = directory.add();
    const s = await (await client()).connectDevice(dev.id, 7);
    const conn = dev.connections[0]!;
    conn.accepting = false;
    s.write('x');
    await until(() => conn.written.length === 1);
    s.write('y');
    await new Promise((r) => setTimeout(r, 50));
    expect(conn.written.length).toBe(1); // paused: 'y' waits in the kernel
    conn.accepting = true;
    conn.sink?.onWritable();
    await until(() => conn.writtenBytes.toString() === 'xy');
  });

  it('close() resets tunnels and closes every client', async () => {
    const dev = directory.add();
    const s = await (await client()).connectDevice(dev.id, 7);
    const idle = await client();
    const closedS = new Promise((r) => s.once('close', r));
    await server.close();
    await closedS;
    await idle.closed();
    expect(dev.connections[0]!.resetCount).toBe(1);
    expect(server.clientCount).toBe(0);
  });
});
