import { once } from 'node:events';
import { createServer, connect as netConnect } from 'node:net';
import type { Server, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../log.js';
import { buildBinary, buildXml } from '../plist/index.js';
import type { PlistDict } from '../plist/index.js';
import { NotificationProxyGoneError } from './errors.js';
import { NOTIFICATION_REQUEST_HOST_BUID, NOTIFICATION_REQUEST_PAIR, NotificationProxyClient } from './notification-proxy.js';
import { parsePlistMessage, PlistFrameDecoder } from '../lockdown/index.js';

function frame(body: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(body.length, 0);
  return Buffer.concat([h, body]);
}

let server: Server | undefined;
const sockets: Socket[] = [];
afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
  server?.close();
});

/** A proxy stand-in: records what we send, and lets the test push messages. */
async function setup(): Promise<{ phone: Socket; seen: PlistDict[]; events: string[]; client: NotificationProxyClient; gone: Promise<Error> }> {
  const seen: PlistDict[] = [];
  const phoneP = new Promise<Socket>((resolve) => {
    server = createServer((sock) => {
      const d = new PlistFrameDecoder();
      sock.on('data', (c: Buffer) => { for (const b of d.push(c)) seen.push(parsePlistMessage(b)); });
      sock.on('error', () => undefined);
      resolve(sock);
    });
  });
  server!.listen(0, '127.0.0.1');
  await once(server!, 'listening');
  const addr = server!.address();
  if (addr === null || typeof addr === 'string') throw new Error('no address');
  const sock = netConnect(addr.port, '127.0.0.1');
  sockets.push(sock);
  await once(sock, 'connect');
  const events: string[] = [];
  let goneResolve: (e: Error) => void = () => undefined;
  const gone = new Promise<Error>((r) => { goneResolve = r; });
  const client = new NotificationProxyClient(sock, {
    onNotification: (n) => events.push(n),
    onGone: (e) => { events.push('gone'); goneResolve(e); },
  }, silentLogger());
  return { phone: await phoneP, seen, events, client, gone };
}

const until = async (cond: () => boolean): Promise<void> => {
  const deadline = Date.now() + 2000;
  while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
};

describe('NotificationProxyClient', () => {
  it('subscribes with ObserveNotification and relays notifications (XML and binary)', async () => {
    const { phone, seen, events, client } = await setup();
    client.observe(NOTIFICATION_REQUEST_PAIR);
    client.observe(NOTIFICATION_REQUEST_HOST_BUID);
    await until(() => seen.length === 2);
    expect(seen).toEqual([
      { Command: 'ObserveNotification', Name: 'com.apple.mobile.lockdown.request_pair' },
      { Command: 'ObserveNotification', Name: 'com.apple.mobile.lockdown.request_host_buid' },
    ]);
    phone.write(frame(buildXml({ Command: 'RelayNotification', Name: NOTIFICATION_REQUEST_HOST_BUID })));
    phone.write(frame(buildBinary({ Command: 'RelayNotification', Name: NOTIFICATION_REQUEST_PAIR })));
    await until(() => events.length === 2);
    expect(events).toEqual([NOTIFICATION_REQUEST_HOST_BUID, NOTIFICATION_REQUEST_PAIR]);
  });

  it('reports ProxyDeath once as gone', async () => {
    const { phone, events, gone } = await setup();
    phone.write(frame(buildXml({ Command: 'ProxyDeath' })));
    expect(await gone).toBeInstanceOf(NotificationProxyGoneError);
    await new Promise((r) => setTimeout(r, 20));
    expect(events).toEqual(['gone']);
  });

  it('treats an empty name as gone', async () => {
    const { phone, gone } = await setup();
    phone.write(frame(buildXml({ Command: 'RelayNotification', Name: '' })));
    expect((await gone).message).toMatch(/empty name/);
  });

  it('reports the connection ending as gone', async () => {
    const { phone, gone } = await setup();
    phone.end();
    expect(await gone).toMatchObject({ code: 'MUXD_ERR_NOTIFICATION_PROXY_GONE' });
  });

  it('close() says Shutdown and reports nothing', async () => {
    const { seen, events, client } = await setup();
    client.close();
    client.close();
    await until(() => seen.length === 1);
    expect(seen).toEqual([{ Command: 'Shutdown' }]);
    await new Promise((r) => setTimeout(r, 20));
    expect(events).toEqual([]);
  });
});
