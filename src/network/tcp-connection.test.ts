import { once } from 'node:events';
import { createServer, connect as netConnect } from 'node:net';
import type { Server, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { CloseReason, ConnectionSink } from '../devices/index.js';
import { RX_HIGH_WATER, TcpDeviceConnection } from './tcp-connection.js';

const servers: Server[] = [];
const sockets: Socket[] = [];
afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const s of servers.splice(0)) s.close();
});

/** A connected pair: `phone` is the device's end, `conn` ours. */
async function pair(): Promise<{ phone: Socket; conn: TcpDeviceConnection; host: Socket }> {
  let phone: Socket | undefined;
  const server = createServer((s) => { phone = s; s.on('error', () => undefined); });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no address');
  const host = netConnect(addr.port, '127.0.0.1');
  sockets.push(host);
  await once(host, 'connect');
  while (phone === undefined) await new Promise((r) => setImmediate(r));
  sockets.push(phone);
  return { phone, conn: new TcpDeviceConnection(host, addr.port), host };
}

class Sink implements ConnectionSink {
  readonly chunks: Buffer[] = [];
  readonly held: (() => void)[] = [];
  closed: CloseReason | undefined;
  writable = 0;
  dataAfterClose = false;
  constructor(private readonly hold = false) {}
  onData(payload: Buffer, done: () => void): void {
    if (this.closed !== undefined) this.dataAfterClose = true;
    this.chunks.push(payload);
    if (this.hold) this.held.push(done);
    else done();
  }
  onWritable(): void { this.writable++; }
  onClose(reason: CloseReason): void { this.closed = reason; }
  get bytes(): number { return this.chunks.reduce((n, c) => n + c.length, 0); }
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 2));
  expect(cond()).toBe(true);
}

describe('TcpDeviceConnection', () => {
  it('keeps what the phone sent before attach, delivers everything in order, then device-reset after its FIN', async () => {
    const { phone, conn } = await pair();
    const data = Buffer.alloc(300_000, 7);
    for (let i = 0; i < data.length; i++) data[i] = i & 0xff;
    phone.end(data);
    await new Promise((r) => setTimeout(r, 20));
    const sink = new Sink();
    conn.attach(sink);
    await until(() => sink.closed !== undefined);
    expect(sink.closed).toBe('device-reset');
    expect(Buffer.concat(sink.chunks).equals(data)).toBe(true);
    expect(sink.dataAfterClose).toBe(false);
  });

  it('a sink that does not consume stops the reads past the high-water mark; consuming resumes them', async () => {
    const { phone, conn, host } = await pair();
    const sink = new Sink(true);
    conn.attach(sink);
    const total = 8 * RX_HIGH_WATER;
    phone.write(Buffer.alloc(total, 1));
    await until(() => sink.bytes > RX_HIGH_WATER);
    await new Promise((r) => setTimeout(r, 50));
    expect(host.isPaused()).toBe(true);
    expect(sink.bytes).toBeLessThan(RX_HIGH_WATER + 70_000);
    while (sink.bytes < total) {
      for (const done of sink.held.splice(0)) done();
      await new Promise((r) => setTimeout(r, 2));
    }
    expect(sink.bytes).toBe(total);
  });

  it('write answers false when the phone does not read, and onWritable follows when it does', async () => {
    const { phone, conn } = await pair();
    const sink = new Sink();
    conn.attach(sink);
    phone.pause();
    let writes = 0;
    while (conn.write(Buffer.alloc(64 * 1024)) && writes < 10_000) writes++;
    expect(writes).toBeLessThan(10_000);
    phone.resume();
    await until(() => sink.writable === 1);
  });

  it('end(): every byte written reaches the phone, then its end', async () => {
    const { phone, conn } = await pair();
    conn.attach(new Sink());
    const got: Buffer[] = [];
    phone.on('data', (c: Buffer) => got.push(c));
    const ended = once(phone, 'end');
    const chunk = Buffer.alloc(1 << 20, 3);
    conn.write(chunk);
    conn.end();
    await ended;
    expect(Buffer.concat(got).equals(chunk)).toBe(true);
  });

  it('end(): a half-closed client still gets the phone\'s reply, then local-end when the phone closes', async () => {
    const { phone, conn } = await pair();
    const sink = new Sink();
    conn.attach(sink);
    phone.on('data', () => undefined);
    phone.once('end', () => { phone.end(Buffer.alloc(200_000, 9)); });
    conn.write(Buffer.from('request'));
    conn.end();
    expect(conn.write(Buffer.from('late'))).toBe(false);
    await until(() => sink.closed !== undefined);
    expect(sink.closed).toBe('local-end');
    expect(sink.bytes).toBe(200_000);
  });

  it('end(true): nobody reads any more, so it closes (local-end) once our bytes are out', async () => {
    const { phone, conn } = await pair();
    const sink = new Sink();
    conn.attach(sink);
    const got: Buffer[] = [];
    phone.on('data', (c: Buffer) => got.push(c));
    const phoneEnded = once(phone, 'end');
    conn.write(Buffer.alloc(300_000, 4));
    conn.end(true);
    await until(() => sink.closed !== undefined);
    expect(sink.closed).toBe('local-end');
    await phoneEnded;
    expect(Buffer.concat(got).length).toBe(300_000);
  });

  it('reset(): the phone sees a reset, the sink local-reset; drop(): device-gone', async () => {
    for (const [act, reason] of [[(c: TcpDeviceConnection) => { c.reset(); }, 'local-reset'], [(c: TcpDeviceConnection) => { c.drop(); }, 'device-gone']] as const) {
      const { phone, conn } = await pair();
      const sink = new Sink();
      conn.attach(sink);
      const err = once(phone, 'error');
      act(conn);
      expect(sink.closed).toBe(reason);
      expect(((await err)[0] as NodeJS.ErrnoException).code).toBe('ECONNRESET');
      expect(conn.write(Buffer.from('late'))).toBe(true);
    }
  });

  it('a phone that resets is device-reset, once', async () => {
    const { phone, conn } = await pair();
    const sink = new Sink();
    let closes = 0;
    conn.attach({ onData: (p, d) => { sink.onData(p, d); }, onWritable: () => undefined, onClose: (r) => { closes++; sink.onClose(r); } });
    phone.resetAndDestroy();
    await until(() => closes > 0);
    await new Promise((r) => setTimeout(r, 20));
    expect(closes).toBe(1);
    expect(sink.closed).toBe('device-reset');
  });
});
