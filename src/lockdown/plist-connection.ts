/**
 * One plist-framed conversation with a device service over a byte stream (a DeviceDuplex or a
 * socket), with lockdown's trick of switching the SAME connection to TLS and back:
 *
 *            startTls() (handshake as TLS client)         stopTls() (close_notify, detach)
 *   [ plain ] ───────────────────────────────▶ [ tls ] ─────────────────────────────────▶ [ plain ]
 *      │  raw bytes → frame decoder               │  raw bytes → TlsCarrier → TLSSocket       │
 *      │  messages → raw                          │  → frame decoder; messages → TLSSocket     │
 *      └──────────── any failure: close(err) ─────┴──────────▶ [ closed ] (raw destroyed = RST)
 *
 * node:tls reads and writes through a TlsCarrier, a small Duplex that forwards to the raw stream
 * but never ends or destroys it, so the TLS layer can be dropped while the connection lives on.
 * Errors during the handshake (refused certificate, peer closed) and TLS alerts later are
 * LockdownTlsError; an ordinary end of the connection is LockdownClosedError.
 *
 * After stopTls a peer may still answer our close_notify with its own: a TLS alert record where a
 * 4-byte length is expected. Such a record (0x15 0x03 …, a length no lockdown message can have)
 * is skipped once instead of being taken for a giant frame.
 */
import { X509Certificate } from 'node:crypto';
import { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import type { TLSSocket } from 'node:tls';
import type { Logger } from '../log.js';
import type { PlistDict } from '../plist/index.js';
import { LockdownClosedError, LockdownTlsError, DeviceStreamError } from './errors.js';
import { encodePlistFrame, parsePlistMessage, PlistFrameDecoder } from './plist-framing.js';

export interface PlistConnectionHandler {
  /** One message from the device. */
  onMessage(message: PlistDict): void;
  /** The connection is over (called once); `err` says why. */
  onClose(err: Error): void;
}

export interface TlsCredentials {
  /** PEM of our (host) certificate. */
  readonly cert: Buffer;
  /** PEM of its private key. */
  readonly key: Buffer;
  /**
   * PEM of the certificate the device must present (the pair record's DeviceCertificate). Without
   * it any certificate is accepted, which is enough on a cable; on a network, where anybody can
   * claim to be the phone, it is what proves the peer holds the device's key.
   */
  readonly peerCertificate?: Buffer | undefined;
}

/** OpenSSL's security level 0: phones and old records may still use SHA-1 or small keys. */
const TLS_CIPHERS = 'DEFAULT:@SECLEVEL=0';
const TLS_ALERT = 0x15;
const TLS_RECORD_HEADER = 5;

function ignore(): void {
  // deliberately empty
}

/** Why the device's certificate is not the expected one, or undefined when it is (or none is expected). */
function peerMismatch(socket: TLSSocket, expected: Buffer | undefined): string | undefined {
  if (expected === undefined) return undefined;
  let want: Buffer;
  try {
    want = new X509Certificate(expected).raw;
  } catch {
    return 'the pair record\'s DeviceCertificate does not parse';
  }
  const got = socket.getPeerX509Certificate();
  if (got === undefined) return 'the device presented no certificate';
  return got.raw.equals(want) ? undefined : 'the device presented a certificate other than its pair record\'s DeviceCertificate';
}

/** A Duplex that hands node:tls the raw stream's bytes without ever ending or destroying it. */
class TlsCarrier extends Duplex {
  private readonly raw: Duplex;

  constructor(raw: Duplex) {
    super({ allowHalfOpen: true });
    this.raw = raw;
  }

  override _read(): void {
    this.raw.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.raw.destroyed || this.raw.writableEnded) cb(new LockdownClosedError('connection closed under TLS'));
    else this.raw.write(chunk, cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    cb();
  }
}

export class PlistConnection {
  private readonly raw: Duplex;
  private readonly handler: PlistConnectionHandler;
  private readonly log: Logger;
  private readonly decoder: PlistFrameDecoder;
  private carrier: TlsCarrier | undefined;
  private tls: TLSSocket | undefined;
  /** The TLS handshake is in progress: every failure is a TLS failure. */
  private handshakeFailed: ((err: Error) => void) | undefined;
  /**
   * TLS is up but nothing has come through it yet. A peer that checks our certificate only after
   * the handshake (Node's TLS servers do) refuses it by closing now: that is a TLS failure too.
   */
  private tlsUnproven = false;
  /** Just left TLS: a TLS alert record may precede the next plain message. */
  private skipAlert = false;
  private alertBytes: Buffer | undefined;
  private closed = false;

  constructor(raw: Duplex, handler: PlistConnectionHandler, log: Logger, maxMessageBytes?: number) {
    this.raw = raw;
    this.handler = handler;
    this.log = log;
    this.decoder = new PlistFrameDecoder(maxMessageBytes);
    raw.on('data', this.onRawData);
    raw.on('end', this.onRawEnd);
    raw.on('error', this.onRawError);
    raw.on('close', this.onRawEnd);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  get isTls(): boolean {
    return this.tls !== undefined;
  }

  /** Send one message (over TLS while a session is on). */
  send(message: PlistDict): void {
    if (this.closed) throw new LockdownClosedError('connection already closed');
    const frame = encodePlistFrame(message);
    if (this.tls !== undefined) this.tls.write(frame);
    else this.raw.write(frame);
  }

  /**
   * Handshake as TLS client with our certificate. The device's certificate is checked only against
   * `credentials.peerCertificate` when given (byte for byte: there is no CA or name to check).
   */
  startTls(credentials: TlsCredentials, timeoutMs: number): Promise<void> {
    if (this.closed) return Promise.reject(new LockdownClosedError('connection already closed'));
    if (this.tls !== undefined) return Promise.reject(new LockdownTlsError('TLS is already on'));
    const carrier = new TlsCarrier(this.raw);
    this.carrier = carrier;
    const socket = tlsConnect({
      socket: carrier,
      cert: credentials.cert,
      key: credentials.key,
      rejectUnauthorized: false,
      checkServerIdentity: () => undefined,
      ciphers: TLS_CIPHERS,
      minVersion: 'TLSv1',
      // 1.2: a refused client certificate then fails the handshake itself (in 1.3 it would only
      // show on the first read); every lockdownd since iOS 5 speaks it.
      maxVersion: 'TLSv1.2',
    });
    this.tls = socket;
    socket.on('error', this.onTlsError);
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { fail(new LockdownTlsError(`TLS handshake did not finish within ${timeoutMs} ms`)); }, timeoutMs);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        this.handshakeFailed = undefined;
        reject(err);
        this.close(err);
      };
      this.handshakeFailed = fail;
      socket.once('secureConnect', () => {
        const mismatch = peerMismatch(socket, credentials.peerCertificate);
        if (mismatch !== undefined) {
          fail(new LockdownTlsError(mismatch));
          return;
        }
        clearTimeout(timer);
        this.handshakeFailed = undefined;
        this.tlsUnproven = true;
        socket.on('data', this.onTlsBytes);
        socket.on('end', this.onTlsEnd);
        this.log.debug({ protocol: socket.getProtocol(), cipher: socket.getCipher().name }, 'lockdown TLS session up');
        resolve();
      });
    });
  }

  /** Leave TLS: send close_notify (as libimobiledevice does), then speak plain text again. */
  async stopTls(timeoutMs: number): Promise<void> {
    const socket = this.tls;
    const carrier = this.carrier;
    if (socket === undefined || carrier === undefined) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      carrier.once('finish', () => { clearTimeout(timer); resolve(); });
      socket.end();
    });
    this.dropTls();
    if (this.closed) throw new LockdownClosedError('connection closed while leaving TLS');
    this.skipAlert = true;
    this.raw.resume();
  }

  /** Tear everything down (a reset of the underlying connection). Idempotent; `onClose` runs once. */
  close(err: Error = new LockdownClosedError('connection closed')): void {
    if (this.closed) return;
    this.closed = true;
    if (this.tlsUnproven && err instanceof LockdownClosedError) {
      err = new LockdownTlsError('the device ended the connection right after the TLS handshake (certificate refused?)', { cause: err });
    }
    this.dropTls();
    this.raw.off('data', this.onRawData);
    this.raw.destroy();
    this.handler.onClose(err);
  }

  private dropTls(): void {
    const socket = this.tls;
    const carrier = this.carrier;
    this.tls = undefined;
    this.carrier = undefined;
    if (socket !== undefined) {
      socket.off('data', this.onTlsBytes);
      this.tlsUnproven = false;
      socket.off('end', this.onTlsEnd);
      // A dropped socket's late errors (a write racing the destroy) concern nobody any more.
      socket.off('error', this.onTlsError);
      socket.on('error', ignore);
      socket.destroy();
    }
    carrier?.destroy();
  }

  private readonly onRawData = (chunk: Buffer): void => {
    const carrier = this.carrier;
    if (carrier !== undefined) {
      if (!carrier.push(chunk)) this.raw.pause();
      return;
    }
    if (this.skipAlert) {
      const rest = this.skipTlsAlert(chunk);
      if (rest === undefined) return;
      chunk = rest;
    }
    this.onPlainBytes(chunk);
  };

  /** The bytes after a leading TLS alert record, or undefined while more bytes are needed. */
  private skipTlsAlert(chunk: Buffer): Buffer | undefined {
    const bytes = this.alertBytes === undefined ? chunk : Buffer.concat([this.alertBytes, chunk]);
    if (bytes[0] !== TLS_ALERT) {
      this.skipAlert = false;
      this.alertBytes = undefined;
      return bytes;
    }
    if (bytes.length < TLS_RECORD_HEADER || bytes.length < TLS_RECORD_HEADER + bytes.readUInt16BE(3)) {
      this.alertBytes = bytes;
      return undefined;
    }
    this.skipAlert = false;
    this.alertBytes = undefined;
    this.log.debug('skipped the TLS alert the device sent after StopSession');
    return bytes.subarray(TLS_RECORD_HEADER + bytes.readUInt16BE(3));
  }

  private readonly onPlainBytes = (chunk: Buffer): void => {
    if (this.closed) return;
    let bodies: Buffer[];
    try {
      bodies = this.decoder.push(chunk);
    } catch (err) {
      this.close(err instanceof Error ? err : new LockdownClosedError(String(err)));
      return;
    }
    for (const body of bodies) {
      // onMessage may have closed us (a protocol error found by the handler).
      if (this.isClosed) return;
      let message: PlistDict;
      try {
        message = parsePlistMessage(body);
      } catch (err) {
        this.close(err instanceof Error ? err : new LockdownClosedError(String(err)));
        return;
      }
      this.handler.onMessage(message);
    }
  };

  private readonly onTlsBytes = (chunk: Buffer): void => {
    this.tlsUnproven = false;
    this.onPlainBytes(chunk);
  };

  private readonly onTlsError = (err: Error): void => {
    if (this.closed) return;
    const fail = this.handshakeFailed;
    if (fail !== undefined) {
      fail(new LockdownTlsError(`TLS handshake failed: ${err.message}`, { cause: err }));
      return;
    }
    this.close(new LockdownTlsError(`TLS session failed: ${err.message}`, { cause: err }));
  };

  private readonly onTlsEnd = (): void => {
    this.close(new LockdownClosedError('the device ended the TLS session'));
  };

  private readonly onRawEnd = (): void => {
    if (this.closed) return;
    const err = new LockdownClosedError('the device closed the connection');
    const fail = this.handshakeFailed;
    if (fail !== undefined) fail(new LockdownTlsError('the device closed the connection during the TLS handshake', { cause: err }));
    else this.close(err);
  };

  private readonly onRawError = (err: Error): void => {
    if (this.closed) return;
    const wrapped = err instanceof DeviceStreamError || err instanceof LockdownClosedError
      ? new LockdownClosedError(`connection failed: ${err.message}`, { cause: err })
      : err;
    const fail = this.handshakeFailed;
    if (fail !== undefined) fail(new LockdownTlsError('the connection failed during the TLS handshake', { cause: wrapped }));
    else this.close(wrapped);
  };
}
