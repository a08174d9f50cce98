/**
 * The lockdown client against a small lockdownd stand-in on a real TCP socket (test only): plain
 * requests, binary replies, errors, timeouts, and StartSession → TLS (node:tls server with the
 * device certificate, checking our host certificate) → StopSession → plain text again.
 */
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { createServer, connect as netConnect } from 'node:net';
import type { Server, Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../log.js';
import { buildBinary, buildXml } from '../plist/index.js';
import type { PlistDict } from '../plist/index.js';
import { LockdownClosedError, LockdownError, LockdownProtocolError, LockdownTimeoutError, LockdownTlsError } from './errors.js';
import { LockdownClient } from './lockdown-client.js';
import { generatePairRecord } from '../preflight/pair-record.js';
import type { NewPairRecord } from '../preflight/pair-record.js';
import { parsePlistMessage, PlistFrameDecoder } from './plist-framing.js';

const deviceKeys = generateKeyPairSync('rsa', { modulusLength: 2048 });
const devicePrivateKeyPem = deviceKeys.privateKey.export({ type: 'pkcs1', format: 'pem' });
let paired: NewPairRecord;
let stranger: NewPairRecord;

beforeAll(async () => {
  const devicePublicKey = Buffer.from(deviceKeys.publicKey.export({ type: 'pkcs1', format: 'pem' }));
  [paired, stranger] = await Promise.all([
    generatePairRecord({ devicePublicKey, systemBuid: 'BUID' }),
    generatePairRecord({ devicePublicKey, systemBuid: 'BUID' }),
  ]);
});

function frame(body: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(body.length, 0);
  return Buffer.concat([h, body]);
}

/** Forwards to the TCP socket without ever ending it, so TLS can come and go (server side). */
class Carrier extends Duplex {
  constructor(private readonly sock: Socket) { super(); }
  override _read(): void { this.sock.resume(); }
  override _write(c: Buffer, _e: BufferEncoding, cb: (e?: Error | null) => void): void { this.sock.write(c, cb); }
  override _final(cb: () => void): void { cb(); }
}

interface FakeOptions {
  /** Answer in binary plists. */
  binary?: boolean;
  /** Requests that get no answer at all. */
  silent?: Set<string>;
  /** Send a close_notify back after StopSession's reply, as some peers do. */
  alertAfterStop?: boolean;
  /** Present this certificate (for the same device key) instead of the paired record's. */
  deviceCertificate?: Buffer;
}

/** A lockdownd stand-in: one connection at a time, knows `paired` only. */
class FakeLockdownd {
  readonly server: Server;
  readonly seen: PlistDict[] = [];
  peerCertMatched: boolean | undefined;
  constructor(private readonly opts: FakeOptions = {}) {
    this.server = createServer((sock) => { this.serve(sock); });
  }
  async listen(): Promise<number> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    const a = this.server.address();
    if (a === null || typeof a === 'string') throw new Error('no address');
    return a.port;
  }
  private serve(sock: Socket): void {
    let decoder = new PlistFrameDecoder();
    let tls: TLSSocket | undefined;
    let carrier: Carrier | undefined;
    const reply = (msg: PlistDict): void => {
      const body = this.opts.binary === true ? buildBinary(msg) : buildXml(msg);
      (tls ?? sock).write(frame(body));
    };
    const onBytes = (chunk: Buffer): void => {
      for (const body of decoder.push(chunk)) {
        const req = parsePlistMessage(body);
        this.seen.push(req);
        const name = typeof req['Request'] === 'string' ? req['Request'] : '';
        if (this.opts.silent?.has(name) === true) continue;
        switch (name) {
          case 'QueryType': reply({ Request: name, Type: 'com.apple.mobile.lockdown' }); break;
          case 'GetValue':
            if (req['Key'] === 'ProductVersion') reply({ Request: name, Key: 'ProductVersion', Value: '17.5' });
            else reply({ Request: name, Error: 'MissingValue' });
            break;
          case 'SetValue': reply({ Request: name }); break;
          case 'Pair': reply({ Request: name, EscrowBag: Buffer.from('bag') }); break;
          case 'StartService': reply({ Request: name, Service: req['Service'] ?? '', Port: 49152 }); break;
          case 'Unsolicited': reply({ Request: name }); reply({ Request: 'Extra' }); break;
          case 'WrongEcho': reply({ Request: 'Other' }); break;
          case 'StartSession':
            if (req['HostID'] !== paired.hostId && req['HostID'] !== stranger.hostId) { reply({ Request: name, Error: 'InvalidHostID' }); break; }
            reply({ Request: name, SessionID: 'S1', EnableSessionSSL: true });
            sock.off('data', onBytes);
            carrier = new Carrier(sock);
            sock.on('data', (c: Buffer) => carrier?.push(c));
            tls = new TLSSocket(carrier, {
              isServer: true,
              cert: this.opts.deviceCertificate ?? paired.record['DeviceCertificate'] as Buffer,
              key: devicePrivateKeyPem,
              requestCert: true,
              rejectUnauthorized: true,
              ca: [paired.record['RootCertificate'] as Buffer],
            });
            tls.on('secure', () => {
              const peer = tls?.getPeerX509Certificate();
              this.peerCertMatched = peer?.raw.equals(new X509Certificate(paired.record['HostCertificate'] as Buffer).raw);
              // Like Node's TLS servers: the handshake completes, then a refused client is dropped.
              if (this.peerCertMatched !== true) sock.destroy();
            });
            tls.on('error', () => { sock.destroy(); });
            tls.on('data', onBytes);
            break;
          case 'StopSession': {
            reply({ Request: name });
            const t = tls;
            tls = undefined;
            decoder = new PlistFrameDecoder();
            sock.removeAllListeners('data');
            // Wait for the client's close_notify, then speak plain text again.
            sock.once('data', () => {
              t?.destroy();
              if (this.opts.alertAfterStop === true) sock.write(Buffer.from('150303001a' + '00'.repeat(26), 'hex'));
              sock.on('data', onBytes);
            });
            break;
          }
          default: reply({ Request: name, Error: 'InvalidRequest' });
        }
      }
    };
    sock.on('data', onBytes);
    sock.on('error', () => undefined);
  }
  async close(): Promise<void> {
    this.server.close();
    await new Promise((r) => setImmediate(r));
  }
}

const sockets: Socket[] = [];
let fake: FakeLockdownd | undefined;
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await fake?.close();
  fake = undefined;
});

async function client(opts: FakeOptions = {}, timeoutMs = 2000): Promise<{ lockdown: LockdownClient; fake: FakeLockdownd }> {
  fake = new FakeLockdownd(opts);
  const port = await fake.listen();
  const sock = netConnect(port, '127.0.0.1');
  sockets.push(sock);
  await once(sock, 'connect');
  return { lockdown: new LockdownClient(sock, { log: silentLogger(), timeoutMs }), fake };
}

function creds(r: NewPairRecord): { hostId: string; systemBuid: string; cert: Buffer; key: Buffer } {
  return { hostId: r.hostId, systemBuid: 'BUID', cert: r.record['HostCertificate'] as Buffer, key: r.record['HostPrivateKey'] as Buffer };
}

describe('LockdownClient, plain requests', () => {
  it('labels requests "usbmuxd" and reads XML and binary replies', async () => {
    for (const binary of [false, true]) {
      const { lockdown, fake: f } = await client({ binary });
      expect(await lockdown.queryType()).toBe('com.apple.mobile.lockdown');
      expect(await lockdown.getValue('ProductVersion')).toBe('17.5');
      await lockdown.setValue('UntrustedHostBUID', 'BUID');
      expect(f.seen[0]).toEqual({ Label: 'usbmuxd', Request: 'QueryType' });
      expect(f.seen[2]).toEqual({ Label: 'usbmuxd', Request: 'SetValue', Key: 'UntrustedHostBUID', Value: 'BUID' });
      lockdown.close();
      await f.close();
    }
  });

  it('turns an Error reply into LockdownError with the string', async () => {
    const { lockdown } = await client();
    const err = await lockdown.getValue('Nope').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LockdownError);
    expect((err as LockdownError).lockdownError).toBe('MissingValue');
    expect((err as LockdownError).code).toBe('MUXD_ERR_LOCKDOWN_ERROR');
    // The connection is still usable after a lockdown-level error.
    expect(await lockdown.queryType()).toBe('com.apple.mobile.lockdown');
  });

  it('serializes concurrent requests in order', async () => {
    const { lockdown } = await client();
    const [a, b, c] = await Promise.all([lockdown.queryType(), lockdown.getValue('ProductVersion'), lockdown.queryType()]);
    expect([a, b, c]).toEqual(['com.apple.mobile.lockdown', '17.5', 'com.apple.mobile.lockdown']);
  });

  it('times out a round trip, resets, and fails later requests as closed', async () => {
    const { lockdown } = await client({ silent: new Set(['QueryType']) }, 100);
    await expect(lockdown.queryType()).rejects.toBeInstanceOf(LockdownTimeoutError);
    expect(lockdown.closed).toBe(true);
    await expect(lockdown.getValue('ProductVersion')).rejects.toBeInstanceOf(LockdownTimeoutError);
  });

  it('treats an unsolicited message or a wrong echo as a protocol error', async () => {
    const { lockdown } = await client();
    await lockdown.request('Unsolicited');
    await expect(lockdown.queryType()).rejects.toBeInstanceOf(LockdownProtocolError);
    const second = await client();
    await expect(second.lockdown.request('WrongEcho')).rejects.toBeInstanceOf(LockdownProtocolError);
  });

  it('fails a pending request when the device closes', async () => {
    const { lockdown } = await client({ silent: new Set(['QueryType']) });
    const p = lockdown.queryType();
    await new Promise((r) => setTimeout(r, 20));
    sockets[0]!.destroy();
    // Our own socket destroyed: the pending request fails as closed, not as a timeout.
    await expect(p).rejects.toBeInstanceOf(LockdownClosedError);
  });

  it('sends Pair with PairRecord, ProtocolVersion 2 and ExtendedPairingErrors, returns the EscrowBag', async () => {
    const { lockdown, fake: f } = await client();
    const bag = await lockdown.pair(paired.pairRequestRecord);
    expect(bag?.toString()).toBe('bag');
    expect(f.seen[0]).toMatchObject({ Request: 'Pair', ProtocolVersion: '2', PairingOptions: { ExtendedPairingErrors: true } });
    expect(Object.keys(f.seen[0]!['PairRecord'] as PlistDict)).not.toContain('HostPrivateKey');
  });

  it('StartService returns the port', async () => {
    const { lockdown } = await client();
    expect(await lockdown.startService('com.apple.mobile.insecure_notification_proxy')).toEqual({ port: 49152, enableServiceSsl: false });
  });
});

describe('LockdownClient, sessions', () => {
  it('StartSession → TLS with our host certificate → requests under TLS → StopSession → plain again', async () => {
    for (const alertAfterStop of [false, true]) {
      const { lockdown, fake: f } = await client({ alertAfterStop });
      const s = await lockdown.startSession(creds(paired));
      expect(s).toEqual({ sessionId: 'S1', tls: true });
      expect(lockdown.inSession).toBe(true);
      expect(f.peerCertMatched).toBe(true);
      expect(await lockdown.getValue('ProductVersion')).toBe('17.5');
      await lockdown.stopSession();
      expect(lockdown.inSession).toBe(false);
      expect(await lockdown.queryType()).toBe('com.apple.mobile.lockdown');
      expect(f.seen.map((m) => m['Request'])).toEqual(['StartSession', 'GetValue', 'StopSession', 'QueryType']);
      expect(f.seen[0]).toMatchObject({ HostID: paired.hostId, SystemBUID: 'BUID' });
      lockdown.close();
      await f.close();
    }
  });

  it('with a pinned device certificate: the right one passes, any other fails the handshake', async () => {
    const pinned = { ...creds(paired), peerCertificate: paired.record['DeviceCertificate'] as Buffer };
    const good = await client();
    expect(await good.lockdown.startSession(pinned)).toEqual({ sessionId: 'S1', tls: true });
    good.lockdown.close();
    await good.fake.close();
    // An impostor with a certificate of its own (here: one for the same key, made by another host).
    const bad = await client({ deviceCertificate: stranger.record['DeviceCertificate'] as Buffer });
    const err = await bad.lockdown.startSession(pinned).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LockdownTlsError);
    expect((err as Error).message).toMatch(/certificate other than/);
    expect(bad.lockdown.closed).toBe(true);
    const garbled = await client();
    await expect(garbled.lockdown.startSession({ ...pinned, peerCertificate: Buffer.from('not a PEM') })).rejects.toThrow(/does not parse/);
  });

  it('InvalidHostID is a LockdownError, not a TLS error', async () => {
    const { lockdown } = await client();
    const err = await lockdown.startSession({ ...creds(paired), hostId: 'UNKNOWN' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LockdownError);
    expect((err as LockdownError).lockdownError).toBe('InvalidHostID');
  });

  it('a host certificate the phone refuses after the handshake fails as LockdownTlsError', async () => {
    // Node's TLS server completes the handshake and then drops a refused client: the first
    // request under TLS is where the client learns it.
    const { lockdown } = await client();
    const err = await lockdown.startSession(creds(stranger)).then(() => lockdown.getValue('ProductVersion')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LockdownTlsError);
    expect((err as LockdownTlsError).code).toBe('MUXD_ERR_LOCKDOWN_TLS');
    expect(lockdown.closed).toBe(true);
  });

  it('a device that never answers the handshake fails as LockdownTlsError within the timeout', async () => {
    fake = new FakeLockdownd();
    const server = createServer((sock) => {
      sock.once('data', () => {
        sock.write(frame(buildXml({ Request: 'StartSession', SessionID: 'S', EnableSessionSSL: true })));
        // …and then silence: the ClientHello is never answered.
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const addr = server.address();
    if (addr === null || typeof addr === 'string') throw new Error('no address');
    const sock = netConnect(addr.port, '127.0.0.1');
    sockets.push(sock);
    await once(sock, 'connect');
    const lockdown = new LockdownClient(sock, { log: silentLogger(), timeoutMs: 150 });
    const t0 = Date.now();
    await expect(lockdown.startSession(creds(paired))).rejects.toBeInstanceOf(LockdownTlsError);
    expect(Date.now() - t0).toBeLessThan(1000);
    server.close();
  });
});
