import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../log.js';
import type { ConnectionSink, DeviceConnection } from '../devices/index.js';
import { Tunnel } from './tunnel.js';

/** A connection that takes everything and remembers its sink. */
class FakeConnection implements DeviceConnection {
  readonly localPort = 1;
  readonly remotePort = 19;
  written: Buffer[] = [];
  /** The `more` hint of each write. */
  more: boolean[] = [];
  resets = 0;
  ends = 0;
  /** The readerGone argument of each end(). */
  endArgs: boolean[] = [];
  sink: ConnectionSink | undefined;
  write(chunk: Buffer, more = false): boolean {
    this.written.push(chunk);
    this.more.push(more);
    return true;
  }
  end(readerGone = false): void {
    this.ends++;
    this.endArgs.push(readerGone);
  }
  reset(): void {
    this.resets++;
  }
  attach(sink: ConnectionSink): void {
    this.sink = sink;
  }
}

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/** A connected Unix socket pair: the daemon's accepted end and the client's end. */
async function socketPair(): Promise<{ daemonEnd: Socket; clientEnd: Socket }> {
  const dir = mkdtempSync(join(tmpdir(), 'muxd-tunnel-'));
  const path = join(dir, 's.sock');
  const server: Server = createServer({ allowHalfOpen: true }); // as MuxdServer makes them
  await new Promise<void>((resolve) => server.listen(path, resolve));
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  const clientEnd = createConnection(path);
  const daemonEnd = await accepted;
  cleanups.push(() => {
    clientEnd.destroy();
    daemonEnd.destroy();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { daemonEnd, clientEnd };
}

describe('Tunnel, device → client', () => {
  it('payloads delivered in one tick go out corked together, in order, and each done runs once written', async () => {
    const { daemonEnd, clientEnd } = await socketPair();
    const conn = new FakeConnection();
    const tunnel = new Tunnel(daemonEnd, conn, silentLogger());
    tunnel.start([]);
    let dones = 0;
    const done = (): void => {
      dones++;
    };
    tunnel.onData(Buffer.from('one,'), done);
    tunnel.onData(Buffer.from('two,'), done);
    tunnel.onData(Buffer.from('three'), done);
    expect(daemonEnd.writableCorked).toBe(1); // held until this tick's work is done
    expect(dones).toBe(0);
    const received: Buffer[] = [];
    clientEnd.on('data', (b: Buffer) => received.push(b));
    await new Promise((r) => setTimeout(r, 50));
    expect(daemonEnd.writableCorked).toBe(0);
    expect(dones).toBe(3);
    expect(Buffer.concat(received).toString()).toBe('one,two,three');
  });

  it('a payload delivered in a later tick is corked and flushed again', async () => {
    const { daemonEnd, clientEnd } = await socketPair();
    const tunnel = new Tunnel(daemonEnd, new FakeConnection(), silentLogger());
    tunnel.start([]);
    const received: Buffer[] = [];
    clientEnd.on('data', (b: Buffer) => received.push(b));
    tunnel.onData(Buffer.from('a'), () => undefined);
    await new Promise((r) => setImmediate(r));
    expect(daemonEnd.writableCorked).toBe(0);
    tunnel.onData(Buffer.from('b'), () => undefined);
    expect(daemonEnd.writableCorked).toBe(1);
    await new Promise((r) => setTimeout(r, 50));
    expect(Buffer.concat(received).toString()).toBe('ab');
  });
});

describe('Tunnel, client → device', () => {
  it('tells the connection more follows only after a read that filled the 64 KiB read buffer', async () => {
    const { daemonEnd, clientEnd } = await socketPair();
    const conn = new FakeConnection();
    new Tunnel(daemonEnd, conn, silentLogger()).start([]);
    const total = 200 * 1024 + 7;
    clientEnd.end(Buffer.alloc(total, 1));
    await new Promise<void>((resolve) => daemonEnd.once('end', resolve));
    expect(conn.written.reduce((n, b) => n + b.length, 0)).toBe(total);
    expect(conn.written.length).toBeGreaterThan(1);
    expect(conn.more).toEqual(conn.written.map((chunk) => chunk.length === 64 * 1024));
    expect(conn.more.at(-1)).toBe(false); // the last read emptied the socket: its tail is not held
  });
});

describe('Tunnel, after the device side ended', () => {
  it('a client that reads what is queued gets every byte, then the end', async () => {
    const { daemonEnd, clientEnd } = await socketPair();
    const conn = new FakeConnection();
    const tunnel = new Tunnel(daemonEnd, conn, silentLogger(), 200);
    tunnel.start([]);
    const payload = Buffer.alloc(4 * 1024 * 1024, 0x5a);
    tunnel.onData(payload, () => undefined);
    tunnel.onClose('device-reset');
    const received: Buffer[] = [];
    clientEnd.on('data', (b: Buffer) => received.push(b));
    await new Promise((r) => clientEnd.once('end', r));
    expect(Buffer.concat(received).equals(payload)).toBe(true);
  });

  it('a client that reads nothing is dropped after the linger time, not kept forever', async () => {
    const { daemonEnd, clientEnd } = await socketPair();
    const tunnel = new Tunnel(daemonEnd, new FakeConnection(), silentLogger(), 200);
    tunnel.start([]);
    clientEnd.pause(); // never reads: the kernel buffers fill and the daemon's queue stays
    tunnel.onData(Buffer.alloc(8 * 1024 * 1024), () => undefined);
    tunnel.onClose('device-reset');
    const t0 = Date.now();
    await new Promise((r) => daemonEnd.once('close', r));
    expect(daemonEnd.destroyed).toBe(true);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(150); // not at once: it lingered first
  });
});

describe('Tunnel, after the client ended', () => {
  it('a half-close finishes the connection (end, never reset); the device\'s bytes still reach the client, then local-end ends it', async () => {
    const { daemonEnd, clientEnd } = await socketPair();
    const conn = new FakeConnection();
    const tunnel = new Tunnel(daemonEnd, conn, silentLogger());
    tunnel.start([]);
    const received: Buffer[] = [];
    clientEnd.on('data', (b: Buffer) => received.push(b));
    const ended = new Promise((r) => clientEnd.once('end', r));
    clientEnd.end('last words');
    await new Promise<void>((resolve) => daemonEnd.once('end', resolve));
    await new Promise((r) => setImmediate(r));
    expect(Buffer.concat(conn.written).toString()).toBe('last words');
    expect([conn.ends, conn.resets]).toEqual([1, 0]);
    let done = 0;
    tunnel.onData(Buffer.from('the reply'), () => done++);
    tunnel.onData(Buffer.from(', all of it'), () => done++);
    tunnel.onClose('local-end');
    await ended;
    expect(Buffer.concat(received).toString()).toBe('the reply, all of it');
    expect(done).toBe(2);
    expect(conn.ends).toBe(1);
  });

  it('a client gone entirely (destroyed) still finishes: the device\'s bytes are dropped but each done runs', async () => {
    const { daemonEnd, clientEnd } = await socketPair();
    const conn = new FakeConnection();
    const tunnel = new Tunnel(daemonEnd, conn, silentLogger());
    daemonEnd.on('error', () => undefined); // MuxdServer installs one: writing to a closed peer fails (EPIPE)
    tunnel.start([]);
    clientEnd.destroy();
    await new Promise((r) => daemonEnd.once('end', r)); // its EOF: a close looks like a half-close
    expect([conn.endArgs, conn.resets]).toEqual([[false], 0]);
    let done = 0;
    tunnel.onData(Buffer.from('nobody reads this'), () => done++);
    await new Promise((r) => daemonEnd.once('close', r)); // the write failed: now the socket is gone
    expect([conn.endArgs, conn.resets]).toEqual([[false, true], 0]); // nobody reads: no wait for the device
    tunnel.onData(Buffer.from('nor this'), () => done++);
    await new Promise((r) => setTimeout(r, 20));
    expect(done).toBe(2); // the ack still advances, so the device is never stuck behind a closed window
    tunnel.onClose('local-end');
  });

  it('destroy() (daemon shutdown) resets, even while finishing', async () => {
    const { daemonEnd, clientEnd } = await socketPair();
    const conn = new FakeConnection();
    const tunnel = new Tunnel(daemonEnd, conn, silentLogger());
    tunnel.start([]);
    clientEnd.end();
    await new Promise<void>((resolve) => daemonEnd.once('end', resolve));
    tunnel.destroy();
    expect([conn.ends, conn.resets]).toEqual([1, 1]);
    expect(daemonEnd.destroyed).toBe(true);
  });
});
