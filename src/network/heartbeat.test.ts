import { once } from 'node:events';
import { createServer, connect as netConnect } from 'node:net';
import type { Server, Socket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../log.js';
import { buildBinary, buildXml } from '../plist/index.js';
import type { PlistDict } from '../plist/index.js';
import { parsePlistMessage, PlistFrameDecoder } from '../lockdown/index.js';
import { DEFAULT_INTERVAL_S, HeartbeatClient } from './heartbeat.js';
import type { HeartbeatEnd } from './heartbeat.js';

function frame(dict: PlistDict, binary = false): Buffer {
  const body = binary ? buildBinary(dict) : buildXml(dict);
  const h = Buffer.alloc(4);
  h.writeUInt32BE(body.length, 0);
  return Buffer.concat([h, body]);
}

const servers: Server[] = [];
const sockets: Socket[] = [];
afterEach(() => {
  vi.useRealTimers();
  for (const s of sockets.splice(0)) s.destroy();
  for (const s of servers.splice(0)) s.close();
});

/** A phone's heartbeat service: the test drives it through `phone`. */
async function pair(): Promise<{ phone: Socket; polos: PlistDict[]; client: Socket }> {
  const polos: PlistDict[] = [];
  let phone: Socket | undefined;
  const server = createServer((s) => {
    phone = s;
    const decoder = new PlistFrameDecoder();
    s.on('data', (c: Buffer) => { for (const b of decoder.push(c)) polos.push(parsePlistMessage(b)); });
    s.on('error', () => undefined);
  });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no address');
  const client = netConnect(addr.port, '127.0.0.1');
  sockets.push(client);
  await once(client, 'connect');
  while (phone === undefined) await new Promise((r) => setImmediate(r));
  sockets.push(phone);
  return { phone, polos, client };
}

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 400 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  expect(cond()).toBe(true);
}

describe('HeartbeatClient', () => {
  it('answers each Marco with Polo (XML or binary) and takes the Interval the phone asks for', async () => {
    const { phone, polos, client } = await pair();
    const ends: HeartbeatEnd[] = [];
    const beats: number[] = [];
    const hb = new HeartbeatClient(client, { log: silentLogger(), onEnd: (w) => ends.push(w), onBeat: (i) => beats.push(i) });
    hb.start();
    expect(hb.deadlineMs).toBe(DEFAULT_INTERVAL_S * 1000 + 10_000);
    phone.write(frame({ Command: 'Marco', Interval: 10, SupportsSleepyTime: true }));
    phone.write(frame({ Command: 'Marco', Interval: 3, SupportsSleepyTime: true }, true));
    await until(() => polos.length === 2);
    expect(polos).toEqual([{ Command: 'Polo' }, { Command: 'Polo' }]);
    expect(beats).toEqual([10, 3]);
    expect(hb.deadlineMs).toBe(3000 + 5000);
    expect(ends).toEqual([]);
    hb.stop();
    expect(ends).toEqual(['stopped']);
  });

  it('a phone that misses its deadline is lost: timeout, once', async () => {
    const { phone, client } = await pair();
    const ends: HeartbeatEnd[] = [];
    const hb = new HeartbeatClient(client, { log: silentLogger(), onEnd: (w) => ends.push(w), graceMs: () => 50 });
    hb.start();
    phone.write(frame({ Command: 'Marco', Interval: 1 }));
    // 1 s + 50 ms grace; the first Marco re-armed it.
    await until(() => ends.length === 1);
    expect(ends).toEqual(['timeout']);
    expect(hb.beats).toBe(1);
  });

  it('SleepyTime, a closed connection and a message it does not understand each end it', async () => {
    for (const [send, want] of [
      [(p: Socket) => p.write(frame({ Command: 'SleepyTime' })), 'sleepy'],
      [(p: Socket) => p.destroy(), 'closed'],
      [(p: Socket) => p.write(frame({ Hello: 'world' })), 'protocol'],
      [(p: Socket) => p.write(Buffer.from('00000010' + 'ff'.repeat(16), 'hex')), 'closed'],
    ] as const) {
      const { phone, client } = await pair();
      const ends: HeartbeatEnd[] = [];
      const hb = new HeartbeatClient(client, { log: silentLogger(), onEnd: (w) => ends.push(w) });
      hb.start();
      send(phone);
      await until(() => ends.length > 0);
      expect(ends).toEqual([want]);
      hb.stop();
      expect(ends).toEqual([want]);
    }
  });

  it('an absurd Interval is clamped (a hostile phone cannot park the deadline for days)', async () => {
    const { phone, client } = await pair();
    const beats: number[] = [];
    const hb = new HeartbeatClient(client, { log: silentLogger(), onEnd: () => undefined, onBeat: (i) => beats.push(i) });
    hb.start();
    phone.write(frame({ Command: 'Marco', Interval: 10 ** 9 }));
    phone.write(frame({ Command: 'Marco', Interval: 0 }));
    await until(() => beats.length === 2);
    expect(beats).toEqual([300, 1]);
    hb.stop();
  });

  it('firstBeat: resolves at the first Marco; rejects (HeartbeatSilentError) on silence or an end before it', async () => {
    const a = await pair();
    const hb = new HeartbeatClient(a.client, { log: silentLogger(), onEnd: () => undefined });
    hb.start();
    const first = hb.firstBeat(2000);
    a.phone.write(frame({ Command: 'Marco', Interval: 1, SupportsSleepyTime: true }));
    await first;
    await hb.firstBeat(10); // already beaten: at once
    expect(hb.ended).toBeUndefined();
    hb.stop();
    expect(hb.ended).toBe('stopped');

    const b = await pair();
    const silent = new HeartbeatClient(b.client, { log: silentLogger(), onEnd: () => undefined });
    silent.start();
    await expect(silent.firstBeat(50)).rejects.toMatchObject({ code: 'MUXD_ERR_HEARTBEAT_SILENT' });
    silent.stop();

    const c = await pair();
    const closing = new HeartbeatClient(c.client, { log: silentLogger(), onEnd: () => undefined });
    closing.start();
    const waiting = closing.firstBeat(2000);
    c.phone.destroy();
    await expect(waiting).rejects.toMatchObject({ code: 'MUXD_ERR_HEARTBEAT_SILENT', message: expect.stringContaining('closed') as unknown });
    await expect(closing.firstBeat(10)).rejects.toMatchObject({ code: 'MUXD_ERR_HEARTBEAT_SILENT' });
  });
});
