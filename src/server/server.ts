/**
 * MuxdServer: accepts clients on a Unix socket, TCP or an inherited fd (systemd socket
 * activation), runs one ClientSession per client, and fans device events out to listeners.
 *
 * At accept, the client's owner (uid from `peerCredentials`) decides whether it gets a slot
 * (admission.ts: a share per user, slots kept for root); a lookup that has to read a file holds a
 * slot, unread, until it answers. Replies and notifications of all sessions share one OutputBudget.
 */
import { BlockList, createServer, isIPv4 } from 'node:net';
import type { Server, Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { TLSSocket } from 'node:tls';
import { chmod, chown, lstat, unlink } from 'node:fs/promises';
import type { Device } from '../devices/index.js';
import type { Logger } from '../log.js';
import { systemErrorCode } from '../errors.js';
import { Admission, defaultLimits } from './admission.js';
import type { AdmissionRefusal, ClientOwner } from './admission.js';
import { ClientSession } from './client-session.js';
import type { SessionContext } from './client-session.js';
import { ClientLimitError, SocketPathOccupiedError } from './errors.js';
import { MAX_FRAME_BYTES } from './framing.js';
import {
  DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_MAX_CLIENTS, DEFAULT_MAX_LISTENER_BACKLOG_BYTES, DEFAULT_MAX_REPLY_BACKLOG_BYTES, DEFAULT_MAX_TOTAL_BACKLOG_BYTES,
  DEFAULT_REQUEST_TIMEOUT_MS, DEFAULT_SOCKET_MODE, TLS_HANDSHAKE_TIMEOUT_MS,
} from './options.js';
import type { ListenTarget, PeerCredentials, ServerOptions } from './options.js';
import { OutputBudget } from './outbox.js';

/** usbmuxd's listen backlog. */
const BACKLOG = 256;
/** Refusals of one kind are logged at warn at most this often (a flood would flood the log); the rest at debug. */
const REFUSAL_WARN_INTERVAL_MS = 1000;

export class MuxdServer {
  private readonly options: ServerOptions;
  private readonly log: Logger;
  private readonly admission: Admission;
  private server: Server;
  /** TCP clients outside these blocks are closed at accept (`allow` of the tcp target). */
  private allow: BlockList | undefined;
  /** Sessions start at 'secureConnection' (a TLS listener), not at 'connection'. */
  private tls = false;
  private readonly owners = new Map<ClientSession, ClientOwner>();
  private readonly lastRefusalWarn = new Map<AdmissionRefusal | 'not-allowed' | 'tls', number>();
  private readonly sessions = new Set<ClientSession>();
  private readonly listening = new Set<ClientSession>();
  private readonly context: SessionContext;
  /** Accept order, from 0 (usbmuxd numbers clients this way). */
  private nextClientNumber = 0;
  private unixPath: string | undefined;
  private started = false;
  private closing: Promise<void> | undefined;

  constructor(options: ServerOptions) {
    this.options = options;
    this.log = options.log;
    this.admission = new Admission(defaultLimits(options.maxClients ?? DEFAULT_MAX_CLIENTS, options.maxClientsPerUser, options.peerCredentials !== undefined));
    // allowHalfOpen: a client's EOF ends only its writing side. Sessions end theirs once what they
    // owe it is written (client-session.ts), and a tunnel keeps delivering the device's bytes to
    // a client that shut down its writing side but still reads (tunnel.ts).
    this.server = createServer({ noDelay: true, allowHalfOpen: true });
    this.server.on('connection', this.onConnection);
    const listening = this.listening;
    this.context = {
      directory: options.directory,
      store: options.store,
      limits: {
        maxFrameBytes: options.maxFrameBytes ?? MAX_FRAME_BYTES,
        requestTimeoutMs: options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
        idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
        maxReplyBacklogBytes: options.maxReplyBacklogBytes ?? DEFAULT_MAX_REPLY_BACKLOG_BYTES,
        maxListenerBacklogBytes: options.maxListenerBacklogBytes ?? DEFAULT_MAX_LISTENER_BACKLOG_BYTES,
      },
      budget: new OutputBudget(options.maxTotalBacklogBytes ?? DEFAULT_MAX_TOTAL_BACKLOG_BYTES),
      manualDevices: options.manualDevices,
      listeners: () => listening,
      onListening: (session) => listening.add(session),
      onClosed: (session) => {
        listening.delete(session);
        this.sessions.delete(session);
        const owner = this.owners.get(session);
        if (owner !== undefined) {
          this.owners.delete(session);
          this.admission.release(owner);
        }
      },
    };
  }

  /** Clients connected right now. */
  get clientCount(): number {
    return this.sessions.size;
  }

  /** Clients of `uid` connected right now (0 for a privileged uid: those are not counted per user). */
  clientCountOf(uid: number): number {
    return this.admission.countOf(`uid:${uid}`);
  }

  /** Unread reply and notification bytes over all clients, as last accounted. */
  get unreadBytes(): number {
    return this.context.budget.bytes;
  }

  /** Bind and start accepting. Rejects (e.g. SocketPathOccupiedError, EADDRINUSE) without side effects on clients. */
  async listen(target: ListenTarget): Promise<void> {
    if (this.started) throw new Error('MuxdServer.listen called twice');
    this.started = true;
    switch (target.kind) {
      case 'unix':
        await removeStaleSocket(target.path);
        await this.bind({ path: target.path, backlog: BACKLOG });
        this.unixPath = target.path;
        await chmod(target.path, target.mode ?? DEFAULT_SOCKET_MODE);
        if (target.gid !== undefined) await chown(target.path, -1, target.gid);
        this.log.info({ path: target.path }, 'listening on unix socket');
        break;
      case 'tcp':
        if (target.allow !== undefined && target.allow.length > 0) {
          const allow = new BlockList();
          for (const block of target.allow) allow.addSubnet(block.address, block.prefix, block.family);
          this.allow = allow;
        }
        if (target.tls !== undefined) {
          // Client certificates required; the raw 'connection' still passes the allow list first.
          this.server = createTlsServer({
            cert: target.tls.cert, key: target.tls.key, ca: target.tls.ca, requestCert: true, rejectUnauthorized: true,
            minVersion: 'TLSv1.2', handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS, noDelay: true,
          });
          this.server.on('connection', this.onTcpConnection);
          this.server.on('secureConnection', this.onConnection);
          this.server.on('tlsClientError', this.onTlsClientError);
          this.tls = true;
        } else {
          this.server.off('connection', this.onConnection);
          this.server.on('connection', this.onTcpConnection);
        }
        await this.bind({ host: target.host, port: target.port, backlog: BACKLOG });
        this.log.info({ address: this.server.address(), tls: target.tls !== undefined, allow: target.allow?.map((b) => `${b.address}/${b.prefix}`) }, 'listening on tcp');
        break;
      case 'fd':
        await this.bind({ fd: target.fd });
        this.log.info({ fd: target.fd }, 'listening on inherited socket');
        break;
    }
    // After binding, an error (EMFILE on accept, for one) is logged and the server keeps going.
    this.server.on('error', this.onServerError);
    const directory = this.options.directory;
    directory.on('attached', this.onAttached);
    directory.on('detached', this.onDetached);
    directory.on('paired', this.onPaired);
  }

  /** The bound TCP address (tests listen on port 0). */
  address(): ReturnType<Server['address']> {
    return this.server.address();
  }

  /** Stop accepting, reset every tunnel (RST to the devices), close every client. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    const directory = this.options.directory;
    directory.off('attached', this.onAttached);
    directory.off('detached', this.onDetached);
    directory.off('paired', this.onPaired);
    const closed = new Promise<void>((resolve) => {
      if (!this.server.listening) resolve();
      else this.server.close(() => { resolve(); });
    });
    for (const session of this.sessions) session.destroy();
    await closed;
    if (this.unixPath !== undefined) {
      await unlink(this.unixPath).catch((err: unknown) => {
        if (systemErrorCode(err) !== 'ENOENT') this.log.warn({ err }, 'could not remove the socket file');
      });
    }
    this.log.info('server closed');
  }

  private bind(options: { path: string; backlog: number } | { host: string; port: number; backlog: number } | { fd: number }): Promise<void> {
    return new Promise((resolve, reject) => {
      const server = this.server;
      const onError = (err: Error): void => {
        server.off('listening', onListening);
        reject(err);
      };
      const onListening = (): void => {
        server.off('error', onError);
        resolve();
      };
      server.once('error', onError);
      server.once('listening', onListening);
      server.listen(options);
    });
  }

  /** A TCP client (before TLS, if any): closed at once when outside the allow list. */
  private readonly onTcpConnection = (socket: Socket): void => {
    const allow = this.allow;
    if (allow !== undefined) {
      const raw = socket.remoteAddress ?? '';
      const address = raw.startsWith('::ffff:') ? raw.slice(7) : raw;
      if (!allow.check(address, isIPv4(address) ? 'ipv4' : 'ipv6')) {
        socket.on('error', this.onClientSocketError);
        this.logRefusal('not-allowed', `TCP client ${describeRemote(socket)} is outside --tcp-allow`, {});
        socket.destroy();
        return;
      }
    }
    // With TLS, the session starts at 'secureConnection'.
    if (!this.tls) this.onConnection(socket);
  };

  private readonly onTlsClientError = (err: Error, socket: TLSSocket): void => {
    // The socket may be gone already (no address left to show).
    const from = socket.remoteAddress === undefined ? '' : ` ${describeRemote(socket)}`;
    this.logRefusal('tls', `TLS client${from} refused: ${err.message}`, { err });
  };

  private readonly onConnection = (socket: Socket): void => {
    // Installed first thing, so a client reset never becomes an uncaught 'error'.
    socket.on('error', this.onClientSocketError);
    if (this.closing !== undefined) {
      socket.destroy();
      return;
    }
    const lookup = this.options.peerCredentials;
    const credentials = lookup === undefined ? undefined : lookup(socket);
    if (!(credentials instanceof Promise)) {
      this.admit(socket, credentials);
      return;
    }
    // A lookup that reads a file: hold a slot (so a flood cannot outrun the limit), read nothing yet.
    const held = this.admission.hold();
    if (held !== undefined) {
      this.refuse(socket, held, undefined);
      return;
    }
    credentials.then(
      (found) => { this.settle(socket, found); },
      () => { this.settle(socket, undefined); },
    );
  };

  private settle(socket: Socket, credentials: PeerCredentials | undefined): void {
    if (this.closing !== undefined || socket.destroyed) {
      this.admission.unhold();
      socket.destroy();
      return;
    }
    const owner = ownerOf(socket, credentials);
    const refusal = this.admission.settle(owner);
    if (refusal !== undefined) this.refuse(socket, refusal, credentials);
    else this.start(socket, owner, credentials);
  }

  private admit(socket: Socket, credentials: PeerCredentials | undefined): void {
    const owner = ownerOf(socket, credentials);
    const refusal = this.admission.admit(owner);
    if (refusal !== undefined) this.refuse(socket, refusal, credentials);
    else this.start(socket, owner, credentials);
  }

  private start(socket: Socket, owner: ClientOwner, credentials: PeerCredentials | undefined): void {
    const number = this.nextClientNumber++;
    const bindings: Record<string, unknown> = { client: number, remote: describeRemote(socket) };
    if (credentials !== undefined) {
      bindings['uid'] = credentials.uid;
      if (credentials.pid !== undefined) bindings['pid'] = credentials.pid;
    }
    if (socket instanceof TLSSocket) {
      const subject = socket.getPeerCertificate().subject as Record<string, string | undefined> | undefined;
      bindings['cert'] = subject?.['CN'] ?? '';
    }
    const described = this.options.identify?.(socket, credentials);
    if (described?.bindings !== undefined) Object.assign(bindings, described.bindings);
    const log = this.log.child(bindings);
    if (described?.connected !== undefined) log.info(described.connected, 'client connected');
    else log.info('client connected');
    const session = new ClientSession(socket, number, this.context, log);
    this.sessions.add(session);
    this.owners.set(session, owner);
  }

  private refuse(socket: Socket, refusal: AdmissionRefusal, credentials: PeerCredentials | undefined): void {
    const { maxClients, maxPerOwner, reserved } = this.admission.limits;
    const why = refusal === 'total'
      ? `client limit reached (${maxClients} clients)`
      : refusal === 'reserved'
        ? `client limit reached for users other than root (${maxClients - reserved} of ${maxClients}; the rest are kept for root)`
        : `client limit of this user reached (${maxPerOwner} clients)`;
    const err = new ClientLimitError(why);
    this.logRefusal(refusal, `${why}; closing new client`, { err, remote: describeRemote(socket), uid: credentials?.uid, pid: credentials?.pid, clients: this.admission.count });
    socket.destroy();
  }

  /** A refused client, logged at warn at most once a second per kind of refusal (a flood would flood the log), else at debug. */
  private logRefusal(kind: AdmissionRefusal | 'not-allowed' | 'tls', message: string, fields: Record<string, unknown>): void {
    const now = Date.now();
    const loud = now - (this.lastRefusalWarn.get(kind) ?? 0) >= REFUSAL_WARN_INTERVAL_MS;
    if (loud) {
      this.lastRefusalWarn.set(kind, now);
      this.log.warn(fields, message);
    } else {
      this.log.debug(fields, message);
    }
  }

  private readonly onClientSocketError = (err: Error): void => {
    // A client's reset or EPIPE: 'close' follows, and its session logs that.
    this.log.debug({ err }, 'client socket error');
  };

  private readonly onServerError = (err: Error): void => {
    // EMFILE/ENFILE on accept: the kernel keeps the pending connection; log and carry on.
    this.log.error({ err }, 'accept failed');
  };

  private readonly onAttached = (device: Device): void => {
    for (const session of this.listening) session.notifyAttached(device);
  };

  private readonly onDetached = (device: Device): void => {
    for (const session of this.listening) session.notifyDetached(device);
  };

  private readonly onPaired = (device: Device): void => {
    for (const session of this.listening) session.notifyPaired(device);
  };
}

/**
 * The owner a client counts against: its uid when known (uid 0 and the daemon's own uid are
 * privileged), else its address for a remote TCP client, else unknown (only the total applies).
 */
function ownerOf(socket: Socket, credentials: PeerCredentials | undefined): ClientOwner {
  if (credentials !== undefined) {
    const uid = credentials.uid;
    return { key: `uid:${uid}`, privileged: uid === 0 || uid === process.getuid?.() };
  }
  const address = socket.remoteAddress;
  return { key: address === undefined ? undefined : `addr:${address}`, privileged: false };
}

function describeRemote(socket: Socket): string {
  return socket.remoteAddress === undefined ? 'unix' : `${socket.remoteAddress}:${socket.remotePort ?? 0}`;
}

/** A leftover socket from a previous run is removed; anything else at the path is refused. */
async function removeStaleSocket(path: string): Promise<void> {
  let stats;
  try {
    stats = await lstat(path);
  } catch (err) {
    if (systemErrorCode(err) === 'ENOENT') return;
    throw err;
  }
  if (!stats.isSocket()) throw new SocketPathOccupiedError(`${path} exists and is not a socket`);
  await unlink(path);
}
