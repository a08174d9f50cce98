/**
 * One lockdownd connection on the phone (port 62078): plain-text requests, and after
 * StartSession the same connection carries TLS, with the phone as the TLS server.
 *
 *             StartSession OK (reply in plain text)          handshake done, the client's
 *   [ PLAIN ] ------------------------------------> [ TLS_HANDSHAKE ] ---certificate is the host's--> [ SESSION ]
 *       ^                                                  |                                          |
 *       |                                                  | TLS error, wrong or no client            |
 *       |                                                  | certificate, stale session certificates  |
 *       |                                                  v                                          |
 *       |                                             [ CLOSED ] (RST) <--- TLS error, close_notify --+
 *       |                                                                                             |
 *       +---------------- StopSession OK (reply inside TLS): plain text again ------------------------+
 *
 * In PLAIN after a session, whole TLS records between messages are dropped: libimobiledevice sends
 * a close_notify after the StopSession reply and then continues in plain text (e.g. Goodbye).
 * Any input that breaks the framing (oversized or unparseable message, non-TLS bytes in a session,
 * a TLS record where a message must be) resets this one connection and never throws.
 *
 * The phone's TLS identity and its check of the client's certificate are in phone-tls.ts.
 */
import { TLSSocket } from 'node:tls';
import type { PlistObject } from 'plist';
import { LockdownResponder, frameLockdownMessage } from './lockdown.js';
import type { LockdownOptions, LockdownSession } from './lockdown.js';
import { LockdownFrameReader } from './lockdown-frames.js';
import type { Pairing } from './pairing.js';
import { clientCertificateProblem, phoneSecureContext } from './phone-tls.js';
import type { Service, ServiceConnection } from './service.js';
import { ConnectionDuplex } from './tls-duplex.js';

export type LockdownConnectionState = 'PLAIN' | 'TLS_HANDSHAKE' | 'SESSION' | 'CLOSED';

export { PHONE_TLS_CIPHERS, PHONE_TLS_MIN_VERSION, PHONE_TLS_MAX_VERSION } from './phone-tls.js';

/** A fatal TLS alert (handshake_failure), sent when the phone cannot start TLS for a stale host. */
const HANDSHAKE_FAILURE_ALERT = Buffer.from('15030100020228', 'hex');

interface TlsLeg {
  readonly carrier: ConnectionDuplex;
  readonly socket: TLSSocket;
  readonly reader: LockdownFrameReader;
}

export class LockdownConnection {
  private stateValue: LockdownConnectionState = 'PLAIN';
  private readonly plain: LockdownFrameReader;
  private session: LockdownSession | undefined;
  private leg: TlsLeg | undefined;
  /** Why the connection was reset (for tests). */
  resetReason: string | undefined;
  /** TLS version and cipher of the last handshake, e.g. "TLSv1.2 ECDHE-RSA-AES256-GCM-SHA384". */
  negotiated: string | undefined;
  /** TLS records dropped in plain text after a session (close_notify). */
  droppedTlsRecords = 0;

  constructor(
    private readonly conn: ServiceConnection,
    private readonly responder: LockdownResponder,
  ) {
    this.plain = new LockdownFrameReader({
      onMessage: (message) => {
        this.onPlainMessage(message);
      },
      onBad: (reason) => {
        this.reset(reason);
      },
      onTlsRecord: () => {
        this.droppedTlsRecords++;
      },
    });
  }

  get state(): LockdownConnectionState {
    return this.stateValue;
  }

  private get pairing(): Pairing {
    return this.responder.pairing;
  }

  onData(data: Buffer): void {
    switch (this.stateValue) {
      case 'PLAIN':
        this.plain.push(data);
        return;
      case 'TLS_HANDSHAKE':
      case 'SESSION':
        this.feedTls(data);
        return;
      case 'CLOSED':
        return;
    }
  }

  /** The mux connection ended: drop the TLS side without a word on the wire. */
  dispose(): void {
    this.stateValue = 'CLOSED';
    this.retireLeg();
  }

  private onPlainMessage(message: Record<string, unknown>): void {
    const reply = this.responder.answer(message, undefined);
    this.conn.write(frameLockdownMessage(reply));
    const started = this.responder.startedSession;
    if (started !== undefined && this.conn.open) this.startTls(started);
  }

  private startTls(session: LockdownSession): void {
    this.session = session;
    this.stateValue = 'TLS_HANDSHAKE';
    const rest = this.plain.detach();
    if (!session.host.sessionCertificatesValid) {
      // The phone's side of a stale record: the handshake cannot succeed.
      if (rest.length > 0) this.feedTls(rest);
      return;
    }
    const carrier = new ConnectionDuplex(this.conn);
    const socket = new TLSSocket(carrier, {
      isServer: true,
      secureContext: phoneSecureContext(session.host, this.pairing),
      requestCert: true,
      rejectUnauthorized: false,
    });
    const reader = new LockdownFrameReader({
      onMessage: (message) => {
        this.onSessionMessage(message);
      },
      onBad: (reason) => {
        this.reset(`in session: ${reason}`);
      },
    });
    const leg: TlsLeg = { carrier, socket, reader };
    this.leg = leg;
    socket.on('secure', () => {
      if (this.leg === leg) this.onSecure(leg);
    });
    socket.on('data', (data: Buffer) => {
      if (this.leg === leg && this.stateValue === 'SESSION') reader.push(data);
    });
    const onTlsError = (err: unknown): void => {
      if (this.leg !== leg) return;
      if (this.stateValue === 'TLS_HANDSHAKE') this.pairing.stats.tlsFailures++;
      this.reset(`TLS: ${err instanceof Error ? err.message : String(err)}`);
    };
    socket.on('error', onTlsError);
    // A server-side TLSSocket made without a tls.Server reports errors after the handshake (a bad
    // record MAC, garbage) only as the internal '_tlsError' event, never 'error'.
    socket.on('_tlsError', onTlsError);
    socket.on('end', () => {
      if (this.leg === leg) this.reset('TLS close_notify inside the session');
    });
    if (rest.length > 0) this.feedTls(rest);
  }

  private feedTls(data: Buffer): void {
    const leg = this.leg;
    if (leg !== undefined) {
      try {
        leg.carrier.feed(data);
      } catch (err) {
        // Whatever the TLS stack throws while taking host bytes resets this connection; it must
        // never escape into the phone's packet loop.
        if (this.stateValue === 'TLS_HANDSHAKE') this.pairing.stats.tlsFailures++;
        this.reset(`TLS: ${err instanceof Error ? err.message : String(err)}`);
      }
      return;
    }
    // Stale session certificates: refuse the ClientHello with a fatal alert.
    this.pairing.stats.tlsFailures++;
    this.conn.write(HANDSHAKE_FAILURE_ALERT);
    this.reset('stale session certificates');
  }

  private onSecure(leg: TlsLeg): void {
    const host = this.session?.host;
    const problem = host === undefined ? 'no session' : clientCertificateProblem(leg.socket, host);
    if (problem !== undefined) {
      this.pairing.stats.tlsFailures++;
      this.reset(problem);
      return;
    }
    this.pairing.stats.tlsHandshakes++;
    this.negotiated = `${leg.socket.getProtocol() ?? '?'} ${leg.socket.getCipher().name}`;
    this.stateValue = 'SESSION';
  }

  private onSessionMessage(message: Record<string, unknown>): void {
    const leg = this.leg;
    if (leg === undefined) return;
    const reply: PlistObject = this.responder.answer(message, this.session);
    const frame = frameLockdownMessage(reply);
    if (message['Request'] !== 'StopSession' || reply['Error'] !== undefined) {
      leg.socket.write(frame);
      return;
    }
    // Back to plain text at once; the retired TLS socket still encrypts this reply, then goes quiet.
    this.leg = undefined;
    this.session = undefined;
    this.stateValue = 'PLAIN';
    this.plain.tlsRecords = true;
    this.plain.resume();
    leg.reader.detach();
    leg.socket.write(frame, () => {
      leg.carrier.detach();
      leg.socket.destroy();
    });
  }

  private retireLeg(): void {
    const leg = this.leg;
    this.leg = undefined;
    if (leg === undefined) return;
    leg.carrier.detach();
    leg.socket.destroy();
  }

  private reset(reason: string): void {
    if (this.stateValue === 'CLOSED') return;
    this.resetReason = reason;
    this.stateValue = 'CLOSED';
    this.retireLeg();
    this.conn.close();
  }
}

/** lockdownd as a Service: one {@link LockdownConnection} per mux connection. */
export function createLockdownService(options: LockdownOptions, responder = new LockdownResponder(options)): Service {
  const connections = new WeakMap<ServiceConnection, LockdownConnection>();
  return {
    name: 'lockdownd',
    onOpen(conn) {
      connections.set(conn, new LockdownConnection(conn, responder));
    },
    onData(conn, data) {
      connections.get(conn)?.onData(data);
    },
    onClose(conn) {
      connections.get(conn)?.dispose();
      connections.delete(conn);
    },
  };
}
