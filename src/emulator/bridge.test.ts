import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../log.js';
import { FrameReader, encodeFrame, loadIdentity, parseBridgeArgs, runBridge } from './bridge.js';
import { makeHostPairRecord, pairRequest } from './host-records.js';
import { HEADER_V2, TcpFlag, decodeTcpHeader, encodeSetup, encodeTcp, encodeVersion } from './codec.js';
import { ECHO_PORT } from './services.js';

const dirs: string[] = [];
const servers: Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A stand-in for the harness: a Unix socket server handing us the emulator's connection. */
async function harness(): Promise<{ path: string; accepted: Promise<Socket> }> {
  const dir = mkdtempSync(join(tmpdir(), 'emu-bridge-'));
  dirs.push(dir);
  const path = join(dir, 'device.sock');
  let accept: (s: Socket) => void = () => undefined;
  const accepted = new Promise<Socket>((resolve) => (accept = resolve));
  const server = createServer((s) => {
    accept(s);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return { path, accepted };
}

/** Collects device→host frames from the harness side of the socket. */
function frames(socket: Socket): { next(): Promise<Buffer> } {
  const queue: Buffer[] = [];
  const waiters: ((b: Buffer) => void)[] = [];
  const reader = new FrameReader((f) => {
    const copy = Buffer.from(f);
    const w = waiters.shift();
    if (w) w(copy);
    else queue.push(copy);
  });
  socket.on('data', (d: Buffer) => {
    reader.push(d);
  });
  return {
    next: () => {
      const f = queue.shift();
      return f ? Promise.resolve(f) : new Promise((resolve) => waiters.push(resolve));
    },
  };
}

describe('FrameReader', () => {
  it('cuts [u32 LE length][bytes] frames at every split offset, ZLP frames included', () => {
    const stream = Buffer.concat([encodeFrame(Buffer.from('abc')), encodeFrame(Buffer.alloc(0)), encodeFrame(Buffer.from('defgh'))]);
    expect(encodeFrame(Buffer.from('abc'))).toEqual(Buffer.from('03000000616263', 'hex'));
    for (let at = 0; at <= stream.length; at++) {
      const out: string[] = [];
      const r = new FrameReader((f) => out.push(f.toString()));
      r.push(stream.subarray(0, at));
      r.push(stream.subarray(at));
      expect(out, `split at ${at}`).toEqual(['abc', '', 'defgh']);
    }
  });
});

describe('runBridge', () => {
  it('serves the mux protocol over the framed socket and resolves when the harness closes it', async () => {
    const { path, accepted } = await harness();
    const bridge = runBridge({ socketPath: path, log: silentLogger(), emulator: { udid: 'BRIDGE-UDID' } });
    const socket = await accepted;
    const inbox = frames(socket);
    // VERSION split across two socket writes and frames: the bridge must reassemble both layers
    const version = encodeFrame(encodeVersion({ major: 2, minor: 0, padding: 0 }));
    socket.write(version.subarray(0, 6));
    await new Promise((r) => setTimeout(r, 10));
    socket.write(version.subarray(6));
    expect((await inbox.next()).toString('hex')).toBe('0000000000000014000000020000000000000000');
    socket.write(encodeFrame(encodeSetup({ txSeq: 0, rxSeq: 0xffff })));
    socket.write(encodeFrame(encodeTcp({ sport: 3, dport: ECHO_PORT, seq: 0, ack: 0, flags: TcpFlag.SYN, window: 131072 }, Buffer.alloc(0), { txSeq: 1, rxSeq: 0 })));
    expect(decodeTcpHeader(await inbox.next(), HEADER_V2)?.flags).toBe(TcpFlag.SYN | TcpFlag.ACK);
    socket.write(encodeFrame(encodeTcp({ sport: 3, dport: ECHO_PORT, seq: 1, ack: 1, flags: TcpFlag.ACK, window: 131072 }, Buffer.from('over the wire'), { txSeq: 2, rxSeq: 0 })));
    const echo = await inbox.next();
    expect(echo.subarray(HEADER_V2 + 20).toString()).toBe('over the wire');
    expect(bridge.emulator.udid).toBe('BRIDGE-UDID');
    socket.end();
    await expect(bridge.closed).resolves.toBeUndefined();
    expect(bridge.emulator.state).toBe('DETACHED');
  });

  it('stop() closes the socket and resolves', async () => {
    const { path, accepted } = await harness();
    const bridge = runBridge({ socketPath: path, log: silentLogger() });
    await accepted;
    bridge.stop();
    await expect(bridge.closed).resolves.toBeUndefined();
  });

  it('rejects with BridgeSocketError when the socket cannot be reached', async () => {
    const bridge = runBridge({ socketPath: join(tmpdir(), 'no-such-dir-emu', 'x.sock'), log: silentLogger() });
    await expect(bridge.closed).rejects.toMatchObject({ code: 'MUXD_ERR_BRIDGE_SOCKET' });
  });
});

describe('runBridge with a state file', () => {
  it('writes the phone identity (0600) on close; a bridge started from it is the same phone with the same hosts', async () => {
    const { path, accepted } = await harness();
    const statePath = join(dirs[dirs.length - 1] ?? tmpdir(), 'phone.json');
    expect(loadIdentity(statePath)).toEqual({}); // no file yet: a new phone
    const first = runBridge({ socketPath: path, log: silentLogger(), statePath, emulator: { trust: { mode: 'setup' } } });
    const host = makeHostPairRecord(first.emulator.pairing.deviceKey.publicPem, { bits: 1024 });
    expect(first.emulator.pairing.pair(pairRequest(host))['Error']).toBeUndefined();
    (await accepted).end();
    await first.closed;
    expect(statSync(statePath).mode & 0o777).toBe(0o600);

    const identity = loadIdentity(statePath);
    if (typeof identity === 'string') throw new Error(identity);
    const again = harness();
    const { path: path2, accepted: accepted2 } = await again;
    const second = runBridge({ socketPath: path2, log: silentLogger(), emulator: { identity } });
    expect(second.emulator.pairing.deviceKey.publicPem).toBe(first.emulator.pairing.deviceKey.publicPem);
    expect(second.emulator.pairing.isPairedWith(host.hostId)).toBe(true);
    expect(second.emulator.pairing.startSession(host.hostId)).toMatchObject({ host: { hostId: host.hostId, systemBuid: host.systemBuid } });
    (await accepted2).end();
    await second.closed;
  });

  it('writes the identity again whenever it changes (a host paired, the Wi-Fi switch), not only on close', async () => {
    const { path, accepted } = await harness();
    const statePath = join(dirs[dirs.length - 1] ?? tmpdir(), 'phone.json');
    const bridge = runBridge({ socketPath: path, log: silentLogger(), statePath, emulator: { trust: { mode: 'setup' } } });
    const host = makeHostPairRecord(bridge.emulator.pairing.deviceKey.publicPem, { bits: 1024 });
    bridge.emulator.pairing.pair(pairRequest(host));
    const paired = loadIdentity(statePath);
    if (typeof paired === 'string') throw new Error(paired);
    expect(paired.hosts?.map((h) => h.hostId)).toEqual([host.hostId]);
    expect(paired.wifiConnections).toBe(false);
    bridge.emulator.pairing.setWifiConnections(true);
    expect(loadIdentity(statePath)).toMatchObject({ wifiConnections: true });
    (await accepted).end();
    await bridge.closed;
  });

  it('a malformed state file is reported, not thrown', () => {
    const dir = mkdtempSync(join(tmpdir(), 'emu-state-'));
    dirs.push(dir);
    const file = join(dir, 'bad.json');
    writeFileSync(file, '{"version":1,"devicePrivateKeyPem":"nope","hosts":[]}');
    expect(loadIdentity(file)).toMatch(/devicePrivateKeyPem/);
    writeFileSync(file, 'not json');
    expect(loadIdentity(file)).toMatch(/not JSON/);
  });
});

describe('parseBridgeArgs', () => {
  it('reads --socket, --udid, --protocol-version and --window', () => {
    expect(parseBridgeArgs(['--socket', '/s', '--udid', 'U', '--protocol-version', '1', '--window', '65536'], {})).toEqual({
      socketPath: '/s',
      emulator: { udid: 'U', protocolVersion: 1, faults: { window: 65536 }, trust: { mode: 'auto' } },
    });
    expect(parseBridgeArgs([], { MUXD_EMU_SOCKET: '/env' })).toEqual({ socketPath: '/env', emulator: { trust: { mode: 'auto' } } });
  });

  it('reads --trust and --auto-tap-ms (default: auto)', () => {
    expect(parseBridgeArgs(['--socket', '/s', '--trust', 'deny', '--auto-tap-ms', '50'], {})).toEqual({
      socketPath: '/s',
      emulator: { trust: { mode: 'deny', autoTapMs: 50 } },
    });
    expect(parseBridgeArgs(['--socket', '/s'], { MUXD_EMU_TRUST: 'wait' })).toMatchObject({ emulator: { trust: { mode: 'wait' } } });
    expect(parseBridgeArgs(['--socket', '/s', '--trust', 'maybe'], {})).toMatch(/--trust must be one of auto, wait, deny, password, setup/);
    expect(parseBridgeArgs(['--socket', '/s', '--auto-tap-ms', '-1'], {})).toMatch(/auto-tap-ms/);
    expect(parseBridgeArgs(['--socket', '/s', '--state', '/p.json'], {})).toMatchObject({ statePath: '/p.json' });
    expect(parseBridgeArgs(['--socket', '/s'], { MUXD_EMU_STATE: '/e.json' })).toMatchObject({ statePath: '/e.json' });
  });

  it('returns a message for bad arguments', () => {
    expect(parseBridgeArgs([], {})).toMatch(/--socket/);
    expect(parseBridgeArgs(['--socket', '/s', '--protocol-version', '3'], {})).toMatch(/protocol-version/);
    expect(parseBridgeArgs(['--socket', '/s', '--window', 'x'], {})).toMatch(/window/);
    expect(parseBridgeArgs(['--bogus'], {})).toMatch(/bogus/);
  });
});
