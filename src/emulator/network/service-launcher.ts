/**
 * lockdownd's StartService over Wi-Fi: every StartService gets a fresh TCP port that takes one
 * connection, as a phone hands them out over the network (the host dials it next to 62078), with
 * TLS when the reply says EnableServiceSSL (as the service of the session's host: its
 * DeviceCertificate and the phone's key, and only the host's certificate is taken as the client).
 *
 * lockdown answers synchronously and Node binds asynchronously, so ports come from a small pool of
 * listeners bound ahead of time; each is used once and replaced:
 *
 *   [ SPARE ] --StartService takes it (service, TLS host)--> [ ARMED ]
 *                                                              |  first connection: served; the
 *                                                              |  listener closes, the connection lives on
 *                                                              |  nobody within armTimeoutMs: closed
 *                                                              v
 *                                                          [ CLOSED ]
 *
 * With no spare left (a burst of StartService faster than binds) the reply is Error "ServiceLimit".
 * A TLS handshake that fails, or a client certificate that is not the host's, drops that socket.
 */
import { createServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { PlistObject } from 'plist';
import type { Logger } from '../../log.js';
import type { LockdownSession } from '../lockdown.js';
import { clientCertificateProblem, phoneSecureContext } from '../phone-tls.js';
import type { PairedHost, Pairing } from '../pairing.js';
import type { Service } from '../service.js';
import type { ConnectionTracker } from './socket-connection.js';

/** A service lockdown may start. */
export interface LaunchableService {
  readonly service: Service;
  /** The reply's EnableServiceSSL: the connection is TLS from its first byte. */
  readonly ssl: boolean;
  /** Only inside a lockdown session (every service but the insecure notification proxy). */
  readonly needsSession: boolean;
}

export interface ServiceLauncherOptions {
  /** Address the service ports are bound to (the face's). */
  readonly host: string;
  readonly catalog: ReadonlyMap<string, LaunchableService>;
  readonly tracker: ConnectionTracker;
  readonly pairing: Pairing;
  /** Listeners bound ahead of time (default 4). */
  readonly spares?: number;
  /** An armed port nobody dials is closed after this (default 30 s). */
  readonly armTimeoutMs?: number;
  readonly log?: Logger;
}

export interface LauncherStats {
  launched: number;
  served: number;
  expired: number;
  serviceLimit: number;
  tlsFailures: number;
}

export class ServiceLauncher {
  readonly stats: LauncherStats = { launched: 0, served: 0, expired: 0, serviceLimit: 0, tlsFailures: 0 };
  private readonly spares: Server[] = [];
  private readonly armed = new Set<Server>();
  private readonly wanted: number;
  private readonly armTimeoutMs: number;
  private binding = 0;
  private stopped = false;

  constructor(private readonly options: ServiceLauncherOptions) {
    this.wanted = options.spares ?? 4;
    this.armTimeoutMs = options.armTimeoutMs ?? 30_000;
  }

  /** Bind the pool; resolves once every spare listens (rejects if the address cannot be bound). */
  async start(): Promise<void> {
    const binds: Promise<void>[] = [];
    for (let i = 0; i < this.wanted; i++) binds.push(this.bindSpare());
    await Promise.all(binds);
  }

  /** The StartService reply fields for `name` (Port and EnableServiceSSL, or Error). */
  launch(name: string, session: LockdownSession | undefined): PlistObject {
    const entry = this.options.catalog.get(name);
    if (entry === undefined || (entry.needsSession && session === undefined)) return { Error: 'InvalidService' };
    const server = this.spares.shift();
    const address = server?.address();
    if (server === undefined || address === null || address === undefined || typeof address === 'string') {
      this.stats.serviceLimit++;
      return { Error: 'ServiceLimit' };
    }
    this.refill();
    this.arm(server, entry, entry.ssl ? session?.host : undefined);
    this.stats.launched++;
    return { Port: address.port, EnableServiceSSL: entry.ssl };
  }

  /** Close every listener (connections already served are the tracker's). */
  async stop(): Promise<void> {
    this.stopped = true;
    const servers = [...this.spares, ...this.armed];
    this.spares.length = 0;
    this.armed.clear();
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => { resolve(); }))));
  }

  private refill(): void {
    if (this.stopped || this.spares.length + this.binding >= this.wanted) return;
    this.bindSpare().catch((err: unknown) => {
      this.options.log?.warn({ err }, 'emulated phone: could not bind a spare service port');
    });
  }

  private bindSpare(): Promise<void> {
    this.binding++;
    return new Promise<void>((resolve, reject) => {
      const server = createServer({ pauseOnConnect: true });
      server.once('error', (err) => {
        this.binding--;
        reject(err);
      });
      server.listen({ host: this.options.host, port: 0 }, () => {
        this.binding--;
        server.removeAllListeners('error');
        server.on('error', (err) => {
          this.options.log?.warn({ err }, 'emulated phone: service listener failed');
        });
        if (this.stopped) server.close();
        else this.spares.push(server);
        resolve();
      });
    });
  }

  private arm(server: Server, entry: LaunchableService, host: PairedHost | undefined): void {
    this.armed.add(server);
    const port = (server.address() as AddressInfo).port;
    const close = (): void => {
      clearTimeout(timer);
      this.armed.delete(server);
      server.close();
    };
    const timer = setTimeout(() => {
      this.stats.expired++;
      close();
    }, this.armTimeoutMs);
    timer.unref();
    server.on('connection', (socket: Socket) => {
      if (!this.armed.has(server)) {
        socket.destroy(); // one connection per StartService
        return;
      }
      close();
      this.stats.served++;
      if (host === undefined) {
        this.options.tracker.serve(socket, entry.service, { port });
        socket.resume();
        return;
      }
      this.serveTls(socket, entry.service, host, port);
    });
  }

  private serveTls(socket: Socket, service: Service, host: PairedHost, port: number): void {
    const tls = new TLSSocket(socket, {
      isServer: true,
      secureContext: phoneSecureContext(host, this.options.pairing),
      requestCert: true,
      rejectUnauthorized: false,
    });
    let failed = false;
    const fail = (): void => {
      if (failed) return;
      failed = true;
      this.stats.tlsFailures++;
      tls.destroy();
      socket.destroy();
    };
    // Until the handshake is done every error (garbage, a refused certificate, a reset) ends here.
    tls.on('error', fail);
    socket.on('error', fail);
    tls.once('secure', () => {
      tls.off('error', fail);
      socket.off('error', fail);
      if (clientCertificateProblem(tls, host) !== undefined) {
        fail();
        return;
      }
      this.options.tracker.serve(tls, service, { port, rawSocket: socket });
    });
    socket.resume();
  }
}
