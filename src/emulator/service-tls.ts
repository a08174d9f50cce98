/**
 * A service behind TLS, for services StartService answers with EnableServiceSSL: the phone is
 * the TLS server with the starting host's identity (phone-tls.ts), and the inner service sees
 * plain bytes on a connection of its own ({@link TlsServiceConnection}). Transport-agnostic: the
 * outer connection may be a mux connection or a TCP one (a Wi-Fi phone).
 *
 *               the outer connection opens; hostFor() names the host that started it
 *   [ HANDSHAKE ] --TLS up, the client's certificate is that host's: inner.onOpen--> [ OPEN ]
 *        |                                                                             |
 *        | no host started it, stale certificates, TLS error,                          | TLS error, close_notify,
 *        | no or a foreign client certificate                                          | inner close(), inner throws
 *        v                                                                             v
 *   [ CLOSED ] (the outer connection is reset) <---------------------------------------+
 *
 * A throw from the inner service while it takes TLS data would surface in a stream event
 * handler, outside the phone's own try/catch: it is caught here and resets this one connection.
 */
import { TLSSocket } from 'node:tls';
import type { PairedHost, Pairing } from './pairing.js';
import { clientCertificateProblem, phoneSecureContext } from './phone-tls.js';
import type { Service, ServiceCloseReason, ServiceConnection } from './service.js';
import { ConnectionDuplex } from './tls-duplex.js';

export type TlsServiceState = 'HANDSHAKE' | 'OPEN' | 'CLOSED';

export interface TlsServiceOptions {
  readonly pairing: Pairing;
  /** The paired host this new connection belongs to (usually ServiceCatalog.takeHost(conn.port)). */
  hostFor(conn: ServiceConnection): PairedHost | undefined;
  /** Told why a connection was reset before or during TLS (for tests and logs). */
  onReset?(conn: ServiceConnection, reason: string): void;
}

/** What the inner service sees: plain bytes in and out, over the outer connection's TLS. */
export class TlsServiceConnection implements ServiceConnection {
  stateValue: TlsServiceState = 'HANDSHAKE';

  constructor(
    readonly outer: ServiceConnection,
    private readonly socket: TLSSocket,
    private readonly end: (reason: string) => void,
  ) {}

  get port(): number {
    return this.outer.port;
  }

  get hostPort(): number {
    return this.outer.hostPort;
  }

  get open(): boolean {
    return this.stateValue === 'OPEN' && this.outer.open;
  }

  get sendRoom(): number {
    return Math.max(0, this.outer.sendRoom - this.socket.writableLength);
  }

  get maxPayload(): number {
    return this.outer.maxPayload;
  }

  get queuedBytes(): number {
    return this.outer.queuedBytes + this.socket.writableLength;
  }

  write(data: Buffer): void {
    if (this.open && data.length > 0) this.socket.write(data);
  }

  close(): void {
    this.end('closed by the service');
  }
}

interface Leg {
  readonly carrier: ConnectionDuplex;
  readonly socket: TLSSocket;
  readonly inner: TlsServiceConnection;
}

/** Wrap `inner` so that every connection to it is TLS with the host that started it. */
export function serveOverTls(inner: Service, options: TlsServiceOptions): Service {
  const legs = new WeakMap<ServiceConnection, Leg>();

  const retire = (conn: ServiceConnection, leg: Leg, reason: ServiceCloseReason): void => {
    const wasOpen = leg.inner.stateValue === 'OPEN';
    leg.inner.stateValue = 'CLOSED';
    legs.delete(conn);
    leg.carrier.detach();
    leg.socket.destroy();
    if (wasOpen) {
      try {
        inner.onClose?.(leg.inner, reason);
      } catch {
        // The connection is over either way; a throwing onClose has nothing left to break.
      }
    }
  };

  const reset = (conn: ServiceConnection, reason: string): void => {
    const leg = legs.get(conn);
    if (leg !== undefined) retire(conn, leg, 'device-closed');
    options.onReset?.(conn, reason);
    conn.close();
  };

  /** Run an inner callback; a throw resets this connection instead of escaping. */
  const guarded = (conn: ServiceConnection, what: string, call: () => void): void => {
    try {
      call();
    } catch (err) {
      reset(conn, `${inner.name} ${what} threw: ${err instanceof Error ? err.message : String(err)}`);
    }
  };

  return {
    name: `${inner.name}+tls`,
    onOpen(conn) {
      const host = options.hostFor(conn);
      if (host === undefined || !host.sessionCertificatesValid) {
        options.onReset?.(conn, host === undefined ? 'no StartService for this connection' : 'stale session certificates');
        conn.close();
        return;
      }
      const carrier = new ConnectionDuplex(conn);
      const socket = new TLSSocket(carrier, {
        isServer: true,
        secureContext: phoneSecureContext(host, options.pairing),
        requestCert: true,
        rejectUnauthorized: false,
      });
      const leg: Leg = {
        carrier,
        socket,
        inner: new TlsServiceConnection(conn, socket, (reason) => {
          if (legs.get(conn) === leg) reset(conn, reason);
        }),
      };
      legs.set(conn, leg);
      socket.on('secure', () => {
        if (legs.get(conn) !== leg) return;
        const problem = clientCertificateProblem(socket, host);
        if (problem !== undefined) {
          options.pairing.stats.tlsFailures++;
          reset(conn, problem);
          return;
        }
        options.pairing.stats.tlsHandshakes++;
        leg.inner.stateValue = 'OPEN';
        guarded(conn, 'onOpen', () => inner.onOpen?.(leg.inner));
      });
      socket.on('data', (data: Buffer) => {
        if (legs.get(conn) === leg && leg.inner.stateValue === 'OPEN') guarded(conn, 'onData', () => { inner.onData(leg.inner, data); });
      });
      const onTlsError = (err: unknown): void => {
        if (legs.get(conn) !== leg) return;
        if (leg.inner.stateValue === 'HANDSHAKE') options.pairing.stats.tlsFailures++;
        reset(conn, `TLS: ${err instanceof Error ? err.message : String(err)}`);
      };
      socket.on('error', onTlsError);
      // As in lockdown-session.ts: a server TLSSocket without a tls.Server reports later errors
      // only as '_tlsError'.
      socket.on('_tlsError', onTlsError);
      socket.on('end', () => {
        if (legs.get(conn) === leg) reset(conn, 'TLS close_notify');
      });
    },
    onData(conn, data) {
      const leg = legs.get(conn);
      if (leg === undefined) return;
      try {
        leg.carrier.feed(data);
      } catch (err) {
        reset(conn, `TLS: ${err instanceof Error ? err.message : String(err)}`);
      }
    },
    onWritable(conn) {
      const leg = legs.get(conn);
      if (leg?.inner.stateValue === 'OPEN') inner.onWritable?.(leg.inner);
    },
    onClose(conn, reason) {
      const leg = legs.get(conn);
      if (leg !== undefined) retire(conn, leg, reason);
    },
  };
}
