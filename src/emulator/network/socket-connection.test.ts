import { once } from 'node:events';
import { connect, createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { Service, ServiceCloseReason, ServiceConnection } from '../service.js';
import { ConnectionTracker } from './socket-connection.js';

interface Pair {
  readonly host: Socket;
  readonly phone: ServiceConnection;
  readonly closes: ServiceCloseReason[];
  readonly received: Buffer[];
}

let server: Server | undefined;
afterEach(() => {
  server?.close();
  server = undefined;
});

/** A phone-side service over a real loopback TCP connection; `behaviour` adds to the recording one. */
async function open(tracker: ConnectionTracker, behaviour: Partial<Service> = {}, resetOnClose = false): Promise<Pair> {
  const closes: ServiceCloseReason[] = [];
  const received: Buffer[] = [];
  let phone: ServiceConnection | undefined;
  const service: Service = {
    name: 'test',
    onOpen(conn) {
      phone = conn;
      behaviour.onOpen?.(conn);
    },
    onData(conn, data) {
      received.push(data);
      behaviour.onData?.(conn, data);
    },
    onClose(conn, reason) {
      closes.push(reason);
      behaviour.onClose?.(conn, reason);
    },
    ...(behaviour.onWritable === undefined ? {} : { onWritable: behaviour.onWritable }),
  };
  server = createServer({ pauseOnConnect: true }, (socket) => {
    tracker.serve(socket, service, { port: 7, resetOnClose });
    socket.resume();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const host = connect({ host: '127.0.0.1', port: typeof address === 'object' && address !== null ? address.port : 0 });
  await once(host, 'connect');
  while (phone === undefined) await new Promise((r) => setTimeout(r, 5));
  return { host, phone, closes, received };
}

function collect(socket: Socket): { data: () => Buffer; ended: Promise<'end' | 'reset'> } {
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  const ended = new Promise<'end' | 'reset'>((resolve) => {
    socket.on('end', () => {
      resolve('end');
    });
    socket.on('error', () => {
      resolve('reset');
    });
  });
  return { data: () => Buffer.concat(chunks), ended };
}

describe('a ServiceConnection over a TCP socket', () => {
  it('close() sends the queued bytes, then FIN; the service hears device-closed once', async () => {
    const tracker = new ConnectionTracker();
    const pair = await open(tracker);
    const host = collect(pair.host);
    pair.phone.write(Buffer.from('bye'));
    pair.phone.close();
    pair.phone.close();
    expect(pair.phone.open).toBe(false);
    expect(await host.ended).toBe('end');
    expect(host.data().toString()).toBe('bye');
    expect(pair.closes).toEqual(['device-closed']);
    pair.host.destroy();
  });

  it('resetOnClose ends with RST; the host end going away is host-reset', async () => {
    const tracker = new ConnectionTracker();
    const a = await open(tracker, {}, true);
    const hostA = collect(a.host);
    a.phone.close();
    expect(await hostA.ended).toBe('reset');
    const b = await open(tracker);
    b.host.end();
    await new Promise((r) => setTimeout(r, 50));
    expect(b.closes).toEqual(['host-reset']);
  });

  it('a service that throws resets its connection and is counted; nothing escapes', async () => {
    const tracker = new ConnectionTracker();
    const pair = await open(tracker, {
      onData() {
        throw new Error('crash');
      },
    });
    const host = collect(pair.host);
    pair.host.write('x');
    expect(await host.ended).toBe('reset');
    expect(pair.closes).toEqual(['device-closed']);
  });

  it('freeze holds what the phone writes and what the host sends; thaw delivers both ways in order', async () => {
    const tracker = new ConnectionTracker();
    const pair = await open(tracker, {
      onData(conn, data) {
        conn.write(data);
      },
    });
    const host = collect(pair.host);
    tracker.freeze();
    pair.phone.write(Buffer.from('A'));
    pair.host.write('B');
    await new Promise((r) => setTimeout(r, 100));
    expect(host.data().length).toBe(0);
    expect(pair.received).toEqual([]);
    expect(pair.phone.sendRoom).toBe(0);
    tracker.thaw();
    await new Promise((r) => setTimeout(r, 100));
    expect(host.data().toString()).toBe('AB');
    pair.host.destroy();
  });

  it('a close made while frozen reaches the wire only at thaw', async () => {
    const tracker = new ConnectionTracker();
    const pair = await open(tracker);
    const host = collect(pair.host);
    tracker.freeze();
    pair.phone.write(Buffer.from('last'));
    pair.phone.close();
    expect(pair.closes).toEqual(['device-closed']);
    const early = await Promise.race([host.ended, new Promise((r) => setTimeout(() => { r('nothing'); }, 150))]);
    expect(early).toBe('nothing');
    expect(tracker.size).toBe(1);
    tracker.thaw();
    expect(await host.ended).toBe('end');
    expect(host.data().toString()).toBe('last');
  });

  it('detachAll destroys every socket, lingering ones too; services hear link-gone', async () => {
    const tracker = new ConnectionTracker();
    const a = await open(tracker);
    const hostA = collect(a.host);
    a.phone.close(); // FIN sent; the host never closes its side: the socket lingers
    await hostA.ended;
    expect(tracker.size).toBe(1);
    const b = await open(tracker);
    tracker.detachAll();
    expect(b.closes).toEqual(['link-gone']);
    await new Promise((r) => setTimeout(r, 50));
    expect(tracker.size).toBe(0);
    a.host.destroy();
    b.host.destroy();
  });

  it('an endless source is fed as the socket takes it, and stops when the host stops reading', async () => {
    const tracker = new ConnectionTracker();
    const chunk = Buffer.alloc(16 * 1024, 7);
    let produced = 0;
    const pair = await open(tracker, {
      onWritable(conn) {
        conn.write(chunk);
        produced += chunk.length;
      },
    });
    pair.host.pause();
    await new Promise((r) => setTimeout(r, 300));
    const stalled = produced;
    await new Promise((r) => setTimeout(r, 300));
    expect(produced).toBe(stalled); // nothing more once kernel buffers and the budget are full
    expect(pair.phone.queuedBytes).toBeLessThanOrEqual(256 * 1024 + chunk.length);
    let read = 0;
    pair.host.on('data', (c: Buffer) => {
      read += c.length;
    });
    pair.host.resume();
    await new Promise((r) => setTimeout(r, 200));
    expect(produced).toBeGreaterThan(stalled);
    expect(read).toBeGreaterThan(0);
    pair.host.destroy();
  });
});
