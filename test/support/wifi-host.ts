/**
 * A host's side of a Wi-Fi phone, for tests that talk to the emulated network phone directly
 * (without the daemon): a trusted pairing for a phone, lockdown over any byte stream with the
 * daemon's own client, a TLS client that pins the phone's certificate to the pair record, and a
 * plist message stream for services (the heartbeat).
 */
import { X509Certificate, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import type { TLSSocket } from 'node:tls';
import { makeHostPairRecord } from '../../src/emulator/host-records.js';
import type { HostPairRecord } from '../../src/emulator/host-records.js';
import { generateDeviceKey } from '../../src/emulator/pair-request.js';
import type { DeviceKey } from '../../src/emulator/pair-request.js';
import type { PairedHost, PhoneIdentity } from '../../src/emulator/pairing.js';
import { silentLogger } from '../../src/log.js';
import type { PlistDict } from '../../src/plist/index.js';
import { LockdownClient } from '../../src/lockdown/lockdown-client.js';
import { PlistFrameDecoder, encodePlistFrame, parsePlistMessage } from '../../src/lockdown/plist-framing.js';

/** The phone's TLS: TLS 1.0–1.2, SHA-1 certificates allowed (as the daemon's client). */
const CLIENT_TLS = { ciphers: 'DEFAULT:@SECLEVEL=0', minVersion: 'TLSv1', maxVersion: 'TLSv1.2' } as const;

export interface Pairing {
  readonly deviceKey: DeviceKey;
  readonly record: HostPairRecord;
  /** What the phone keeps of this host. */
  readonly host: PairedHost;
  /** The phone's identity with just this host. */
  readonly identity: Required<PhoneIdentity>;
}

/**
 * A phone key and one host it trusts (host keys of `bits`, 1024 by default: tests only), with
 * Wi-Fi connections on unless `wifiConnections` is false.
 */
export function makePairing(options: { readonly deviceKey?: DeviceKey; readonly bits?: number; readonly wifiConnections?: boolean } = {}): Pairing {
  const deviceKey = options.deviceKey ?? generateDeviceKey();
  const record = makeHostPairRecord(deviceKey.publicPem, { bits: options.bits ?? 1024 });
  const host: PairedHost = {
    hostId: record.hostId,
    systemBuid: record.systemBuid,
    hostCertificate: new X509Certificate(record.hostCertificatePem).raw,
    rootCertificate: new X509Certificate(record.rootCertificatePem).raw,
    deviceCertificatePem: record.deviceCertificatePem,
    escrowBag: randomBytes(32),
    sessionCertificatesValid: true,
  };
  return { deviceKey, record, host, identity: { deviceKey, hosts: [host], wifiConnections: options.wifiConnections ?? true } };
}

/** The pair record a host keeps for this pairing (the file usbmuxd writes), with WiFiMACAddress when given. */
export function pairRecordOf(pairing: Pairing, wifiMac?: string): PlistDict {
  const r = pairing.record;
  return {
    DeviceCertificate: Buffer.from(r.deviceCertificatePem),
    HostCertificate: Buffer.from(r.hostCertificatePem),
    HostPrivateKey: Buffer.from(r.hostPrivateKeyPem),
    RootCertificate: Buffer.from(r.rootCertificatePem),
    RootPrivateKey: Buffer.from(r.rootPrivateKeyPem),
    HostID: r.hostId,
    SystemBUID: r.systemBuid,
    EscrowBag: pairing.host.escrowBag,
    ...(wifiMac === undefined ? {} : { WiFiMACAddress: wifiMac }),
  };
}

/** The daemon's lockdown client over `stream` (a TCP socket to 62078, or a relay to one). */
export function lockdownOver(stream: Duplex, timeoutMs = 5000): LockdownClient {
  return new LockdownClient(stream, { log: silentLogger(), timeoutMs });
}

/** StartSession through `client` with the record (TLS on the same stream, not pinned). */
export async function startSession(client: LockdownClient, record: HostPairRecord): Promise<void> {
  await client.startSession({
    hostId: record.hostId,
    systemBuid: record.systemBuid,
    cert: Buffer.from(record.hostCertificatePem),
    key: Buffer.from(record.hostPrivateKeyPem),
  });
}

export class PinMismatchError extends Error {}

/**
 * TLS as the host over `socket` with the record's host certificate; the phone's certificate must
 * be the record's DeviceCertificate (rejects with PinMismatchError otherwise).
 */
export async function pinnedTls(socket: Duplex, record: HostPairRecord): Promise<TLSSocket> {
  const tls = tlsConnect({ socket, cert: record.hostCertificatePem, key: record.hostPrivateKeyPem, rejectUnauthorized: false, checkServerIdentity: () => undefined, ...CLIENT_TLS });
  await once(tls, 'secureConnect');
  const peer = tls.getPeerX509Certificate();
  const pinned = new X509Certificate(record.deviceCertificatePem);
  if (peer === undefined || !peer.raw.equals(pinned.raw)) {
    tls.destroy();
    throw new PinMismatchError('the phone did not show the DeviceCertificate of the pair record');
  }
  return tls;
}

/**
 * Plain lockdown up to StartSession on `socket`, then a pinned TLS handshake on it: what a host
 * that proves a Wi-Fi phone's identity does. Resolves with the session's TLS socket.
 */
export async function pinnedSession(socket: Duplex, record: HostPairRecord): Promise<PlistStream> {
  const plain = new PlistStream(socket);
  plain.send({ Label: 'test', Request: 'StartSession', HostID: record.hostId, SystemBUID: record.systemBuid });
  const reply = await plain.next();
  if (reply['EnableSessionSSL'] !== true) throw new Error(`StartSession: ${JSON.stringify(reply)}`);
  plain.detach();
  return new PlistStream(await pinnedTls(socket, record));
}

/** Lockdown-framed plist messages over a stream: send(), and next() for the following one. */
export class PlistStream {
  private readonly decoder = new PlistFrameDecoder();
  private readonly queue: PlistDict[] = [];
  private waiter: { resolve: (m: PlistDict) => void; reject: (e: Error) => void } | undefined;
  private ended: Error | undefined;
  private readonly onData = (chunk: Buffer): void => {
    for (const body of this.decoder.push(chunk)) {
      const message = parsePlistMessage(body);
      const w = this.waiter;
      this.waiter = undefined;
      if (w === undefined) this.queue.push(message);
      else w.resolve(message);
    }
  };
  private readonly onEnd = (): void => {
    this.ended ??= new Error('stream ended');
    this.waiter?.reject(this.ended);
    this.waiter = undefined;
  };

  constructor(readonly stream: Duplex) {
    stream.on('data', this.onData);
    stream.on('end', this.onEnd);
    stream.on('close', this.onEnd);
    stream.on('error', (err) => {
      this.ended ??= err;
      this.onEnd();
    });
  }

  /** Stop reading this stream (a TLS layer takes it over). */
  detach(): void {
    this.stream.off('data', this.onData);
    this.stream.off('end', this.onEnd);
    this.stream.off('close', this.onEnd);
  }

  send(message: PlistDict): void {
    this.stream.write(encodePlistFrame(message));
  }

  /** The next message; rejects when none comes within `ms` or the stream ends. */
  next(ms = 5000): Promise<PlistDict> {
    const ready = this.queue.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    if (this.ended !== undefined) return Promise.reject(this.ended);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error(`no message within ${ms} ms`));
      }, ms);
      this.waiter = {
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
    });
  }

  /** Messages already received and not taken. */
  get pending(): number {
    return this.queue.length;
  }
}
