/**
 * The TCP listener's access checks over real loopback sockets: TLS with client certificates
 * (certificates made by openssl in a temp dir: a CA, a server, a client of that CA, a client of
 * another CA), the --tcp-allow list, and the per-user share of loopback TCP clients (their uid
 * read from /proc/net/tcp; `nobody` runs as a child process, so that part needs root).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect as netConnect } from 'node:net';
import type { Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { loadPeerCredentials } from '../../src/daemon/peer-credentials.js';
import { FilePairRecordStore } from '../../src/pairrecords/index.js';
import { MuxdServer } from '../../src/server/index.js';
import type { ListenTarget, ServerOptions } from '../../src/server/index.js';
import { FrameDecoder } from '../../src/server/framing.js';
import { decodeReply, encodePlistRequest } from '../../src/server/messages.js';
import { FakeDirectory } from '../support/fake-directory.js';
import { makeCertificate } from '../support/test-certs.js';
import { ClientProcess } from '../support/uid-clients.js';

let dir: string;
const pem: Record<string, Buffer> = {};
let server: MuxdServer | undefined;
let lines: string[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'muxd-tcp-'));
  const made = {
    ca: makeCertificate(dir, 'ca', 'test CA'),
    'other-ca': makeCertificate(dir, 'other-ca', 'someone else'),
    server: makeCertificate(dir, 'server', 'usbmuxd-ts', 'ca'),
    client: makeCertificate(dir, 'client', 'farm-runner-7', 'ca'),
    stranger: makeCertificate(dir, 'stranger', 'stranger', 'other-ca'),
  };
  for (const [name, cert] of Object.entries(made)) {
    pem[`${name}.pem`] = cert.pem;
    pem[`${name}.key`] = cert.key;
  }
}, 30_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function start(target: Omit<Extract<ListenTarget, { kind: 'tcp' }>, 'kind' | 'host' | 'port'>, extra: Partial<ServerOptions> = {}): Promise<number> {
  lines = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => { lines.push(line); } });
  const s = new MuxdServer({ directory: new FakeDirectory(), store: new FilePairRecordStore({ dir: join(dir, 'lockdown') }), log, ...extra });
  server = s;
  await s.listen({ kind: 'tcp', host: '127.0.0.1', port: 0, ...target });
  const address = s.address();
  if (typeof address !== 'object' || address === null) throw new Error('no address');
  return address.port;
}

/** Sends ListDevices on `socket` once connected; resolves 'answered' on a reply frame, 'closed' if the daemon closes first. */
function listDevices(socket: Socket, connectEvent: 'connect' | 'secureConnect'): Promise<'answered' | 'closed'> {
  return new Promise((resolve) => {
    const decoder = new FrameDecoder(1 << 20);
    socket.on('error', () => undefined);
    socket.once(connectEvent, () => socket.write(encodePlistRequest(1, { MessageType: 'ListDevices' })));
    socket.on('data', (chunk: Buffer) => {
      decoder.push(chunk);
      const frame = decoder.read();
      if (frame !== undefined && decodeReply(frame).kind === 'plist') {
        resolve('answered');
        socket.destroy();
      }
    });
    socket.once('close', () => { resolve('closed'); });
  });
}

const tlsTo = (port: number, who?: 'client' | 'stranger'): Socket => tlsConnect({
  host: '127.0.0.1', port, ca: pem['ca.pem'], checkServerIdentity: () => undefined,
  ...(who === undefined ? {} : { cert: pem[`${who}.pem`], key: pem[`${who}.key`] }),
});

describe('TLS with client certificates', () => {
  const tls = (): { cert: Buffer; key: Buffer; ca: Buffer } => ({ cert: pem['server.pem'] ?? Buffer.alloc(0), key: pem['server.key'] ?? Buffer.alloc(0), ca: pem['ca.pem'] ?? Buffer.alloc(0) });

  it('a client with a certificate of the CA is served, and logged with its certificate name', async () => {
    const port = await start({ tls: tls() });
    expect(await listDevices(tlsTo(port, 'client'), 'secureConnect')).toBe('answered');
    expect(lines.some((l) => l.includes('client connected') && l.includes('"cert":"farm-runner-7"'))).toBe(true);
  });

  it('no certificate, a certificate of another CA, or plain TCP: closed before any request is read', async () => {
    const port = await start({ tls: tls() });
    expect(await listDevices(tlsTo(port), 'secureConnect')).toBe('closed');
    expect(await listDevices(tlsTo(port, 'stranger'), 'secureConnect')).toBe('closed');
    expect(await listDevices(netConnect({ host: '127.0.0.1', port }), 'connect')).toBe('closed');
    expect(lines.some((l) => l.includes('client connected'))).toBe(false);
    expect(lines.some((l) => l.includes('TLS client') && l.includes('refused'))).toBe(true);
  });
});

describe('--tcp-allow', () => {
  it('a client outside every block is closed at accept; inside one it is served', async () => {
    let port = await start({ allow: [{ address: '192.0.2.0', prefix: 24, family: 'ipv4' }, { address: 'fd00::', prefix: 8, family: 'ipv6' }] });
    expect(await listDevices(netConnect({ host: '127.0.0.1', port }), 'connect')).toBe('closed');
    expect(lines.some((l) => l.includes('is outside --tcp-allow'))).toBe(true);
    await server?.close();
    port = await start({ allow: [{ address: '127.0.0.0', prefix: 8, family: 'ipv4' }] });
    expect(await listDevices(netConnect({ host: '127.0.0.1', port }), 'connect')).toBe('answered');
  });
});

describe.skipIf(process.getuid?.() !== 0)('loopback TCP clients share the table per user', () => {
  it('nobody over TCP holds at most its share (uid from /proc/net/tcp)', async () => {
    const { lookup } = await loadPeerCredentials();
    const port = await start({}, { maxClients: 8, ...(lookup === undefined ? {} : { peerCredentials: lookup }) });
    const attacker = ClientProcess.start(65534, { mode: 'hold', path: { host: '127.0.0.1', port }, count: 10, bytes: '00' });
    try {
      expect((await attacker.next()).open).toBe(6);
      expect(server?.clientCountOf(65534)).toBe(6);
      expect(await listDevices(netConnect({ host: '127.0.0.1', port }), 'connect')).toBe('answered');
    } finally {
      attacker.stop();
    }
  }, 30_000);
});
