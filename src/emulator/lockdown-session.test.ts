import { once } from 'node:events';
import { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import type { TLSSocket } from 'node:tls';
import plist from 'plist';
import type { PlistObject } from 'plist';
import { beforeAll, describe, expect, it } from 'vitest';
import { FakeServiceConnection } from './fake-connection.js';
import { makeHostPairRecord, pairRequest } from './host-records.js';
import type { HostPairRecord } from './host-records.js';
import { LockdownResponder, frameLockdownMessage } from './lockdown.js';
import { LockdownFrameReader } from './lockdown-frames.js';
import { LockdownConnection, PHONE_TLS_CIPHERS } from './lockdown-session.js';
import { Pairing } from './pairing.js';
import { LOCKDOWN_PORT } from './services.js';

const UDID = '00008030-001A2B3C4D5E802E';

/** Collects lockdown messages from a byte stream; `next()` waits for the following one. */
class MessageQueue {
  private readonly messages: Record<string, unknown>[] = [];
  bad: string | undefined;
  private waiter: ((m: Record<string, unknown>) => void) | undefined;
  readonly reader = new LockdownFrameReader({
    onMessage: (m) => {
      if (this.waiter === undefined) this.messages.push(m);
      else {
        const w = this.waiter;
        this.waiter = undefined;
        w(m);
      }
    },
    onBad: (reason) => {
      this.bad = reason; // e.g. a TLS alert the phone sent before its reset
    },
  });

  next(ms = 3000): Promise<Record<string, unknown>> {
    const ready = this.messages.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error('no reply'));
      }, ms);
      this.waiter = (m) => {
        clearTimeout(timer);
        resolve(m);
      };
    });
  }
}

/** The host end of one lockdown connection: plain replies to `plain`, TLS bytes to a pipe. */
class Wire {
  readonly conn: FakeServiceConnection;
  readonly lockdown: LockdownConnection;
  readonly plain = new MessageQueue();
  private pipe: Duplex | undefined;

  constructor(readonly responder: LockdownResponder) {
    this.conn = new FakeServiceConnection(
      LOCKDOWN_PORT,
      (data) => {
        if (this.pipe === undefined) this.plain.reader.push(Buffer.from(data));
        else this.pipe.push(Buffer.from(data));
      },
      () => {
        // The RST arrives after whatever the phone sent before it (a TLS alert).
        const pipe = this.pipe;
        setTimeout(() => pipe?.destroy(new Error('connection reset by the phone')), 20);
      },
    );
    this.lockdown = new LockdownConnection(this.conn, responder);
  }

  send(bytes: Buffer): void {
    this.lockdown.onData(bytes);
  }

  request(message: PlistObject): Promise<Record<string, unknown>> {
    this.send(frameLockdownMessage(message));
    return this.plain.next();
  }

  /** A TLS client (the host) over this connection, presenting `cert`/`key`. */
  async startTls(cert: string, key: string, extra: { maxVersion?: 'TLSv1.2' | 'TLSv1.3'; minVersion?: 'TLSv1.2' | 'TLSv1.3' } = {}): Promise<{ socket: TLSSocket; queue: MessageQueue }> {
    const pipe = new Duplex({
      read() {
        // pushed by the phone
      },
      write: (chunk: Buffer, _enc, cb) => {
        if (this.pipe === pipe) this.send(Buffer.from(chunk));
        cb();
      },
    });
    this.pipe = pipe;
    const socket = tlsConnect({ socket: pipe, cert, key, rejectUnauthorized: false, ciphers: PHONE_TLS_CIPHERS, ...extra });
    const queue = new MessageQueue();
    socket.on('data', (d: Buffer) => {
      queue.reader.push(d);
    });
    await once(socket, 'secureConnect');
    return { socket, queue };
  }

  /** Back to plain text: the TLS client is cut off from the wire. */
  endTls(): void {
    this.pipe = undefined;
  }
}

async function pairedResponder(record: (key: string) => HostPairRecord): Promise<{ responder: LockdownResponder; host: HostPairRecord }> {
  const pairing = new Pairing({ mode: 'setup' });
  const responder = new LockdownResponder({ udid: UDID, pairing });
  const host = record(pairing.deviceKey.publicPem);
  expect(responder.answer(pairRequest(host))).toMatchObject({ Request: 'Pair' });
  expect(pairing.lastRejection).toBeUndefined();
  expect(pairing.isPairedWith(host.hostId)).toBe(true);
  return Promise.resolve({ responder, host });
}

describe('lockdown session: StartSession → TLS → StopSession → plain text', () => {
  let responder: LockdownResponder;
  let host: HostPairRecord;

  beforeAll(async () => {
    ({ responder, host } = await pairedResponder((key) => makeHostPairRecord(key)));
  });

  it('answers lockdown requests inside TLS, then plain text again after StopSession and a close_notify', async () => {
    const wire = new Wire(responder);
    const started = await wire.request({ Request: 'StartSession', HostID: host.hostId, SystemBUID: host.systemBuid });
    expect(started).toMatchObject({ Request: 'StartSession', EnableSessionSSL: true });
    expect(typeof started['SessionID']).toBe('string');
    expect(wire.lockdown.state).toBe('TLS_HANDSHAKE');

    const { socket, queue } = await wire.startTls(host.hostCertificatePem, host.hostPrivateKeyPem);
    expect(socket.getProtocol()).toBe('TLSv1.2');
    expect(wire.lockdown.state).toBe('SESSION');
    expect(wire.lockdown.negotiated).toMatch(/^TLSv1\.2 /);

    socket.write(frameLockdownMessage({ Request: 'GetValue', Domain: 'com.apple.disk_usage', Key: 'TotalDiskCapacity' }));
    expect(await queue.next()).toEqual({ Request: 'GetValue', Domain: 'com.apple.disk_usage', Key: 'TotalDiskCapacity', Value: 128_000_000_000 });
    socket.write(frameLockdownMessage({ Request: 'StartSession', HostID: host.hostId }));
    expect(await queue.next()).toEqual({ Request: 'StartSession', Error: 'SessionActive' });
    socket.write(frameLockdownMessage({ Request: 'SetValue', Domain: 'com.apple.disk_usage', Key: 'Extra', Value: 1 }));
    expect(await queue.next()).toEqual({ Request: 'SetValue', Key: 'Extra' });

    socket.write(frameLockdownMessage({ Request: 'StopSession', SessionID: started['SessionID'] as string }));
    expect(await queue.next()).toEqual({ Request: 'StopSession' });
    expect(wire.lockdown.state).toBe('PLAIN');
    // libimobiledevice's SSL_shutdown: a close_notify record, then plain text on the same connection.
    socket.end();
    await once(socket, 'finish');
    wire.endTls();
    expect(wire.lockdown.droppedTlsRecords).toBe(1);
    expect(await wire.request({ Request: 'GetValue', Key: 'DeviceName' })).toEqual({ Request: 'GetValue', Key: 'DeviceName', Value: 'Virtual iPhone' });
    expect(await wire.request({ Request: 'Goodbye' })).toEqual({ Request: 'Goodbye', Result: 'Success' });
    expect(wire.conn.closed).toBe(false);
    expect(responder.pairing.stats.tlsHandshakes).toBeGreaterThanOrEqual(1);
  });

  it('a second session on the same connection works after StopSession', async () => {
    const wire = new Wire(responder);
    for (let round = 0; round < 2; round++) {
      const started = await wire.request({ Request: 'StartSession', HostID: host.hostId, SystemBUID: host.systemBuid });
      const { socket, queue } = await wire.startTls(host.hostCertificatePem, host.hostPrivateKeyPem);
      socket.write(frameLockdownMessage({ Request: 'StopSession', SessionID: started['SessionID'] as string }));
      expect(await queue.next()).toEqual({ Request: 'StopSession' });
      wire.endTls();
      socket.destroy();
    }
    expect(await wire.request({ Request: 'QueryType' })).toMatchObject({ Type: 'com.apple.mobile.lockdown' });
  });

  it("accepts the record's root certificate as the client certificate (what libimobiledevice 1.3.0 presents)", async () => {
    const wire = new Wire(responder);
    await wire.request({ Request: 'StartSession', HostID: host.hostId, SystemBUID: host.systemBuid });
    const { queue, socket } = await wire.startTls(host.rootCertificatePem, host.rootPrivateKeyPem);
    socket.write(frameLockdownMessage({ Request: 'QueryType' }));
    expect(await queue.next()).toMatchObject({ Type: 'com.apple.mobile.lockdown' });
    socket.destroy();
  });

  it("a client certificate that is not the host's resets the connection", async () => {
    const wire = new Wire(responder);
    const stranger = makeHostPairRecord(responder.pairing.deviceKey.publicPem, { bits: 1024 });
    const failures = responder.pairing.stats.tlsFailures;
    await wire.request({ Request: 'StartSession', HostID: host.hostId, SystemBUID: host.systemBuid });
    await expect(wire.startTls(stranger.hostCertificatePem, stranger.hostPrivateKeyPem)).rejects.toThrow(/reset by the phone/);
    expect(wire.conn.closed).toBe(true);
    expect(wire.lockdown.state).toBe('CLOSED');
    expect(wire.lockdown.resetReason).toMatch(/not the host's/);
    expect(responder.pairing.stats.tlsFailures).toBe(failures + 1);
  });

  it('refuses TLS 1.3-only clients: the phone speaks TLS 1.0–1.2 like a real one', async () => {
    const wire = new Wire(responder);
    await wire.request({ Request: 'StartSession', HostID: host.hostId, SystemBUID: host.systemBuid });
    await expect(wire.startTls(host.hostCertificatePem, host.hostPrivateKeyPem, { minVersion: 'TLSv1.3' })).rejects.toThrow();
    expect(wire.conn.closed).toBe(true);
  });

  it('non-TLS bytes after StartSession reset that connection and throw nothing', async () => {
    const wire = new Wire(responder);
    await wire.request({ Request: 'StartSession', HostID: host.hostId, SystemBUID: host.systemBuid });
    wire.send(frameLockdownMessage({ Request: 'QueryType' }));
    for (let i = 0; i < 50 && !wire.conn.closed; i++) await new Promise((r) => setTimeout(r, 10));
    expect(wire.conn.closed).toBe(true);
    expect(wire.lockdown.resetReason).toMatch(/^TLS/);
  });

  it('garbage inside an established session resets the connection', async () => {
    const wire = new Wire(responder);
    await wire.request({ Request: 'StartSession', HostID: host.hostId, SystemBUID: host.systemBuid });
    const { socket } = await wire.startTls(host.hostCertificatePem, host.hostPrivateKeyPem);
    wire.endTls(); // the client stops reading; raw junk goes to the phone
    wire.send(Buffer.from('17030300ff' + 'ab'.repeat(255), 'hex'));
    for (let i = 0; i < 50 && !wire.conn.closed; i++) await new Promise((r) => setTimeout(r, 10));
    expect(wire.lockdown.resetReason).toMatch(/^TLS: /);
    expect(wire.conn.closed).toBe(true);
    socket.destroy();
  });

  it('in plain text before any session, a TLS record is garbage: reset', async () => {
    const wire = new Wire(responder);
    wire.send(Buffer.from('15030300020100', 'hex'));
    await Promise.resolve();
    expect(wire.conn.closed).toBe(true);
  });

  it('StartSession for an unknown or forgotten host: InvalidHostID; stale certificates: the handshake fails', async () => {
    const pairing = new Pairing({ mode: 'setup' });
    const own = new LockdownResponder({ udid: UDID, pairing });
    const h = makeHostPairRecord(pairing.deviceKey.publicPem, { bits: 1024 });
    own.answer(pairRequest(h));
    pairing.invalidateSessionCertificates(h.hostId);
    const wire = new Wire(own);
    expect(await wire.request({ Request: 'StartSession', HostID: h.hostId, SystemBUID: h.systemBuid })).toMatchObject({ EnableSessionSSL: true });
    await expect(wire.startTls(h.hostCertificatePem, h.hostPrivateKeyPem)).rejects.toThrow(/handshake failure|alert/i);
    expect(pairing.stats.tlsFailures).toBe(1);
    expect(wire.conn.closed).toBe(true);

    expect(pairing.forgetHost(h.hostId)).toBe(true);
    const again = new Wire(own);
    expect(await again.request({ Request: 'StartSession', HostID: h.hostId, SystemBUID: h.systemBuid })).toEqual({ Request: 'StartSession', Error: 'InvalidHostID' });
    expect(again.lockdown.state).toBe('PLAIN');
  });

  it('SHA-1 signed certificates (older libimobiledevice) still give a session', async () => {
    const { responder: r, host: h } = await pairedResponder((key) => makeHostPairRecord(key, { digest: 'sha1', bits: 1024 }));
    const wire = new Wire(r);
    await wire.request({ Request: 'StartSession', HostID: h.hostId, SystemBUID: h.systemBuid });
    const { socket, queue } = await wire.startTls(h.hostCertificatePem, h.hostPrivateKeyPem);
    socket.write(frameLockdownMessage({ Request: 'GetValue', Key: 'ProductVersion' }));
    expect(await queue.next()).toMatchObject({ Value: '17.5' });
    socket.destroy();
  });

  it('replies in a session are XML plists', async () => {
    const wire = new Wire(responder);
    await wire.request({ Request: 'StartSession', HostID: host.hostId, SystemBUID: host.systemBuid });
    const { socket } = await wire.startTls(host.hostCertificatePem, host.hostPrivateKeyPem);
    const raw = new Promise<Buffer>((resolve) => socket.once('data', resolve));
    socket.write(frameLockdownMessage({ Request: 'QueryType' }));
    const body = (await raw).subarray(4).toString('utf8');
    expect(plist.parse(body)).toEqual({ Request: 'QueryType', Type: 'com.apple.mobile.lockdown' });
    socket.destroy();
  });
});
