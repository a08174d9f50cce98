/**
 * MuxdServer: accepts clients on a Unix socket, TCP or an inherited fd (systemd socket
 * activation), runs one ClientSession per client, and fans device events out to listeners.
 */
import { createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { chmod, chown, lstat, unlink } from 'node:fs/promises';
import type { Device } from '../devices/index.js';
import type { Logger } from '../log.js';
import { systemErrorCode } from '../errors.js';
import { ClientSession } from './client-session.js';
import type { SessionContext } from './client-session.js';
import { SocketPathOccupiedError } from './errors.js';
import { MAX_FRAME_BYTES } from './framing.js';
import { DEFAULT_MAX_CLIENTS, DEFAULT_SOCKET_MODE } from './options.js';
import type { ListenTarget, ServerOptions } from './options.js';

/** usbmuxd's listen backlog. */
const BACKLOG = 256;

export class MuxdServer {
  private readonly options: ServerOptions;
  private readonly log: Logger;
  private readonly maxClients: number;
  private readonly server: Server;
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
    this.maxClients = options.maxClients ?? DEFAULT_MAX_CLIENTS;
    // allowHalfOpen: a client's EOF ends only its writing side. Sessions end theirs once what they
    // owe it is written (client-session.ts), and a tunnel keeps delivering the device's bytes to
    // a client that shut down its writing side but still reads (tunnel.ts).
    this.server = createServer({ noDelay: true, allowHalfOpen: true });
    this.server.on('connection', this.onConnection);
    const listening = this.listening;
    this.context = {
      directory: options.directory,
      store: options.store,
      maxFrameBytes: options.maxFrameBytes ?? MAX_FRAME_BYTES,
      manualDevices: options.manualDevices,
      listeners: () => listening,
      onListening: (session) => listening.add(session),
      onClosed: (session) => {
        listening.delete(session);
        this.sessions.delete(session);
      },
    };
  }

  /** Clients connected right now. */
  get clientCount(): number {
    return this.sessions.size;
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
        await this.bind({ host: target.host, port: target.port, backlog: BACKLOG });
        this.log.info({ address: this.server.address() }, 'listening on tcp');
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

  private readonly onConnection = (socket: Socket): void => {
    const number = this.nextClientNumber++;
    const bindings: Record<string, unknown> = { client: number, remote: describeRemote(socket) };
    const log = this.log.child(bindings);
    // Installed first thing, so a client reset never becomes an uncaught 'error'.
    socket.on('error', (err: Error) => {
      log.debug({ err }, 'client socket error');
    });
    if (this.options.identify !== undefined) Object.assign(bindings, this.options.identify(socket));
    if (this.closing !== undefined) {
      socket.destroy();
      return;
    }
    if (this.sessions.size >= this.maxClients) {
      log.warn({ maxClients: this.maxClients }, 'client limit reached; closing new client');
      socket.destroy();
      return;
    }
    const clientLog = this.options.identify === undefined ? log : this.log.child(bindings);
    clientLog.info('client connected');
    this.sessions.add(new ClientSession(socket, number, this.context, clientLog));
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
