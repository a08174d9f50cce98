/**
 * Fair shares of a real MuxdServer on a Unix socket, against the attacks of issue 13 that one
 * local user can make on everyone else (see bench/fair-shares.ts for the figures on the real
 * daemon):
 *
 * - the client table: `nobody` (a child process with uid 65534, its credentials read with
 *   SO_PEERCRED as the daemon does) tries to hold every slot with half-frames; other users and root
 *   still get in. Needs root (skipped otherwise).
 * - deadlines: silent clients, half frames and slowloris drips are closed; a client between
 *   requests only after the idle timeout; listeners and tunnels never.
 * - unread output: a command client that never reads its replies is closed; all clients' unread
 *   bytes stay within the budget (the biggest holders go); a listener that never reads is closed
 *   while a reading one gets every event.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { chmod, mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { loadPeerCredentials } from '../../src/daemon/peer-credentials.js';
import { FilePairRecordStore } from '../../src/pairrecords/index.js';
import { buildXml } from '../../src/plist/index.js';
import { MuxdServer } from '../../src/server/index.js';
import type { ServerOptions } from '../../src/server/index.js';
import { encodeFrame } from '../../src/server/framing.js';
import { encodePlistRequest } from '../../src/server/messages.js';
import { FakeDirectory } from '../support/fake-directory.js';
import { MuxdClient } from '../support/muxd-client.js';
import { ClientProcess } from '../support/uid-clients.js';

const NOBODY = 65534;
const isRoot = process.getuid?.() === 0;

let dir: string;
let path: string;
let directory: FakeDirectory;
let server: MuxdServer | undefined;
/** The server's log lines (JSON). */
let lines: string[];

type Extra = Omit<ServerOptions, 'directory' | 'store' | 'log'>;

async function start(extra: Extra = {}): Promise<MuxdServer> {
  lines = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => { lines.push(line); } });
  server = new MuxdServer({ directory, store: new FilePairRecordStore({ dir: join(dir, 'lockdown') }), log, ...extra });
  await server.listen({ kind: 'unix', path });
  return server;
}

const closedWith = (code: string): number => lines.filter((l) => l.includes('closing client') && l.includes(`"code":"${code}"`)).length;

async function until(check: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function rawClient(): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    socket.once('connect', () => { resolve(socket); });
    socket.once('error', reject);
  });
}

/** ms from now until the daemon closes `socket` (the socket must be flowing to see the EOF). */
function closeTime(socket: Socket): Promise<number> {
  const t0 = Date.now();
  socket.on('error', () => undefined);
  socket.resume();
  return new Promise((resolve) => socket.once('close', () => { resolve(Date.now() - t0); }));
}

const listDevices = encodePlistRequest(1, { MessageType: 'ListDevices' });

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'muxd-shares-'));
  await chmod(dir, 0o755); // other users' clients reach the socket
  path = join(dir, 'usbmuxd');
  directory = new FakeDirectory();
});

afterEach(async () => {
  await server?.close();
  server = undefined;
  await rm(dir, { recursive: true, force: true });
});

describe.skipIf(!isRoot)('the client table is shared between users', () => {
  it('nobody holds at most its share; another user and root still get in, root into the reserved slots too', async () => {
    const credentials = await loadPeerCredentials();
    expect(credentials.lookup, 'koffi / SO_PEERCRED available').toBeDefined();
    if (credentials.lookup === undefined) return;
    // 16 slots: 12 per user (3/4), 1 kept for root (1/32, at least 1).
    const s = await start({ maxClients: 16, peerCredentials: credentials.lookup });
    const half = encodeFrame(1, 8, 1, Buffer.alloc(100)).subarray(0, 8).toString('hex');
    const attacker = ClientProcess.start(NOBODY, { mode: 'hold', path, count: 20, bytes: half });
    try {
      const held = await attacker.next();
      expect(held.open).toBe(12);
      expect(s.clientCountOf(NOBODY)).toBe(12);
      expect(lines.some((l) => l.includes('client limit of this user reached') && l.includes('"uid":65534'))).toBe(true);
      const request = listDevices.toString('hex');
      const other = await ClientProcess.start(1, { mode: 'probe', path, tries: 3, request }).next();
      expect(other.ok).toBe(3);
      // uid 1 takes 3 more: 15 held, the 16th slot is root's alone.
      const second = ClientProcess.start(1, { mode: 'hold', path, count: 3, bytes: half });
      try {
        expect((await second.next()).open).toBe(3);
        const third = await ClientProcess.start(2, { mode: 'probe', path, tries: 1, request }).next();
        expect(third.ok).toBe(0);
        const root = await MuxdClient.connect({ path });
        expect((await root.request({ MessageType: 'ListDevices' })).reply.kind).toBe('plist');
        await root.close();
      } finally {
        second.stop();
      }
    } finally {
      attacker.stop();
    }
    await until(() => s.clientCount === 0);
  }, 30_000);
});

describe('deadlines in command state', () => {
  const requestTimeoutMs = 300;
  const idleTimeoutMs = 900;
  beforeEach(() => start({ requestTimeoutMs, idleTimeoutMs }));

  it('a client that says nothing, one that sends half a header, and one that sends a header and no body are closed after the request timeout', async () => {
    const silent = await rawClient();
    const half = await rawClient();
    half.write(listDevices.subarray(0, 8));
    const header = await rawClient();
    header.write(listDevices.subarray(0, 16));
    // After a first request, a header alone must not pass for idleness either.
    const second = await MuxdClient.connect({ path });
    await second.request({ MessageType: 'ListDevices' });
    second.send(listDevices.subarray(0, 16));
    const t0 = Date.now();
    const times = await Promise.all([closeTime(silent), closeTime(half), closeTime(header), second.closed().then(() => Date.now() - t0)]);
    for (const ms of times) {
      expect(ms).toBeGreaterThanOrEqual(requestTimeoutMs - 20);
      expect(ms).toBeLessThan(requestTimeoutMs + 2000);
    }
    expect(closedWith('MUXD_ERR_REQUEST_TIMEOUT')).toBe(4);
    expect(closedWith('MUXD_ERR_CLIENT_IDLE')).toBe(0);
  });

  it('a frame dripped a byte at a time is closed within the request timeout of its first byte, though bytes keep coming', async () => {
    const slow = await rawClient();
    const frame = encodePlistRequest(1, { MessageType: 'ListDevices', Pad: 'x'.repeat(200) });
    let at = 0;
    const drip = setInterval(() => {
      if (at < frame.length && !slow.destroyed) slow.write(frame.subarray(at, ++at));
    }, 20);
    const ms = await closeTime(slow);
    clearInterval(drip);
    expect(at).toBeLessThan(frame.length);
    expect(ms).toBeLessThan(requestTimeoutMs + 2000);
    expect(closedWith('MUXD_ERR_REQUEST_TIMEOUT')).toBe(1);
  });

  it('between requests a client may wait the idle timeout, not only the request timeout', async () => {
    const c = await MuxdClient.connect({ path });
    const t0 = Date.now();
    await c.request({ MessageType: 'ListDevices' });
    await sleep(requestTimeoutMs * 2);
    expect((await c.request({ MessageType: 'ListDevices' })).reply.kind).toBe('plist');
    await c.closed();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(requestTimeoutMs * 2 + idleTimeoutMs - 20);
    expect(closedWith('MUXD_ERR_CLIENT_IDLE')).toBe(1);
  });

  it('listeners and tunnels are never closed for silence', async () => {
    const device = directory.add();
    const listener = await MuxdClient.connect({ path });
    const events = listener.listen();
    expect((await events.next()).value).toMatchObject({ kind: 'attached' });
    const tunnelClient = await MuxdClient.connect({ path });
    const tunnel = await tunnelClient.connectDevice(device.id, 22);
    await sleep(idleTimeoutMs + requestTimeoutMs * 2);
    directory.remove(device);
    expect((await events.next()).value).toMatchObject({ kind: 'detached' });
    tunnel.write('still here');
    await until(() => device.connections[0]?.writtenBytes.toString() === 'still here');
    expect(lines.filter((l) => l.includes('closing client'))).toEqual([]);
    tunnel.destroy();
    await listener.close();
  });
});

describe('unread output is bounded', () => {
  /** A pair record of `bytes` data, saved in the store's directory. */
  async function bigRecord(bytes: number): Promise<string> {
    const id = 'F'.repeat(40);
    await mkdir(join(dir, 'lockdown'), { recursive: true });
    await writeFile(join(dir, 'lockdown', `${id}.plist`), buildXml({ HostID: 'test', Filler: Buffer.alloc(bytes, 0x41) }));
    return id;
  }

  it('a client that pipelines requests and never reads is closed as a slow reader; a reading client gets every reply', async () => {
    const s = await start({ maxReplyBacklogBytes: 256 * 1024 });
    const id = await bigRecord(48 * 1024);
    const read = encodePlistRequest(1, { MessageType: 'ReadPairRecord', PairRecordID: id });
    const hog = await rawClient();
    hog.pause();
    hog.on('error', () => undefined);
    hog.write(Buffer.concat(Array<Buffer>(64).fill(read)));
    const reader = await MuxdClient.connect({ path });
    for (let n = 0; n < 20; n++) expect((await reader.request({ MessageType: 'ReadPairRecord', PairRecordID: id })).reply.kind).toBe('plist');
    await until(() => closedWith('MUXD_ERR_SLOW_READER') === 1);
    await reader.close();
    await until(() => s.clientCount === 0);
    expect(s.unreadBytes).toBe(0);
    hog.destroy();
  });

  it('all clients\' unread bytes stay within the budget: the biggest holders are closed', async () => {
    const budget = 512 * 1024;
    const s = await start({ maxTotalBacklogBytes: budget });
    const id = await bigRecord(60 * 1024);
    const read = encodePlistRequest(1, { MessageType: 'ReadPairRecord', PairRecordID: id });
    const hogs: Socket[] = [];
    let peak = 0;
    for (let n = 0; n < 6; n++) {
      const hog = await rawClient();
      hog.pause();
      hog.on('error', () => undefined);
      // ~1.1 MiB of replies asked for; the daemon stops reading this client at 1 MiB unread.
      hog.write(Buffer.concat(Array<Buffer>(14).fill(read)));
      hogs.push(hog);
      for (let t = 0; t < 20; t++) {
        peak = Math.max(peak, s.unreadBytes);
        await sleep(10);
      }
    }
    await until(() => closedWith('MUXD_ERR_SLOW_READER') >= 4);
    // Within the budget, give or take the one reply whose write took it over.
    expect(peak).toBeLessThanOrEqual(budget + 100 * 1024);
    expect(s.unreadBytes).toBeLessThanOrEqual(budget);
    const c = await MuxdClient.connect({ path });
    expect((await c.request({ MessageType: 'ListDevices' })).reply.kind).toBe('plist');
    await c.close();
    for (const hog of hogs) hog.destroy();
  });

  it('a listener that never reads is closed; a reading listener gets every event', async () => {
    const s = await start({ maxListenerBacklogBytes: 64 * 1024 });
    const device = directory.add();
    const deaf = await rawClient();
    deaf.on('error', () => undefined);
    deaf.write(encodePlistRequest(1, { MessageType: 'Listen' }));
    await until(() => lines.filter((l) => l.includes('client listening')).length === 1);
    deaf.pause();
    const listener = await MuxdClient.connect({ path });
    const events = listener.listen();
    expect((await events.next()).value).toMatchObject({ kind: 'attached' });
    const count = 4000;
    let received = 0;
    const reading = (async () => {
      while (received < count) {
        const event = await events.next();
        if (event.done === true) break;
        received++;
      }
    })();
    for (let n = 0; n < count; n += 100) {
      for (let k = 0; k < 100; k++) directory.markPaired(device.id);
      await new Promise((r) => setImmediate(r));
    }
    await reading;
    expect(received).toBe(count);
    expect(closedWith('MUXD_ERR_LISTENER_OVERFLOW')).toBe(1);
    await until(() => s.clientCount === 1);
    await listener.close();
    deaf.destroy();
  }, 30_000);
});
