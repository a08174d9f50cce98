/**
 * A device-side ServiceConnection over a real TCP socket (a net.Socket, or a TLSSocket on one), so
 * the emulator's services (lockdownd, heartbeat, echo, ...) run unchanged behind TCP ports, the
 * way a phone serves them over Wi-Fi.
 *
 *            start(): service.onOpen
 *   ( new ) -------------------------> [ OPEN ] <---- thaw(): held bytes go out, reading resumes
 *                                        |   |  \
 *                                        |   |   freeze(): reading stops, writes are held; no FIN,
 *                                        |   |   no RST (a radio gone quiet, as far as a process
 *                                        |   |   can fake it: the kernel still ACKs) ---> [ FROZEN ]
 *          service close(): FIN after    |   |
 *          the queued bytes (RST with    |   +-- host FIN or RST, socket error ---> [ CLOSED ] 'host-reset'
 *          resetOnClose)                 |
 *                                        +------ detach(): the face stops -------> [ CLOSED ] 'link-gone'
 *                                        v
 *                                    [ CLOSED ] 'device-closed'  (onClose is told once, at once)
 *
 * A close() while FROZEN is told to the service at once, but its FIN (after the held bytes) only
 * reaches the wire at thaw(), as a retransmitting TCP stack would deliver it when the radio returns.
 *
 * Backpressure both ways, as a TCP stack gives it:
 *  - phone → host: `sendRoom` is `sendBudget` less what the socket still buffers; an endless
 *    source is asked for more (onWritable) at start and on every 'drain', never ahead of it.
 *  - host → phone: while the socket buffers more than `sendBudget` (an echo whose host does not
 *    read), reading stops, so the kernel's receive window closes towards the host.
 * A service callback that throws resets that one connection (counted in `serviceFailures`).
 */
import type { Socket } from 'node:net';
import type { Service, ServiceCloseReason, ServiceConnection } from '../service.js';

/** Unsent bytes a connection may hold before it stops asking for more and stops reading. */
export const DEFAULT_SEND_BUDGET = 256 * 1024;
/** What `maxPayload` reports: a TCP stream has no packets, so one read's worth. */
export const SOCKET_MAX_PAYLOAD = 64 * 1024;
/** A FIN'd connection whose host never closes its side is destroyed after this. */
const LINGER_MS = 5000;

export type SocketConnectionState = 'OPEN' | 'FROZEN' | 'CLOSED';

export interface SocketConnectionOptions {
  /** The phone's port (the listening one). */
  readonly port: number;
  /** Unsent bytes the connection may hold (default {@link DEFAULT_SEND_BUDGET}). */
  readonly sendBudget?: number;
  /** End with RST instead of FIN when the service closes. */
  readonly resetOnClose?: boolean;
  /** The TCP socket under a TLSSocket, for RST (a TLSSocket cannot reset itself). */
  readonly rawSocket?: Socket;
  /** Start frozen (the phone is silent right now). */
  readonly frozen?: boolean;
  /** Told once when the connection is over for the service. */
  readonly onEnd?: (conn: SocketServiceConnection, reason: ServiceCloseReason) => void;
  /** Told once when the socket itself is closed (after a FIN's linger, too). */
  readonly onRelease?: (conn: SocketServiceConnection) => void;
}

export class SocketServiceConnection implements ServiceConnection {
  readonly port: number;
  readonly hostPort: number;
  readonly maxPayload = SOCKET_MAX_PAYLOAD;
  /** Service callbacks that threw (each reset its connection). */
  serviceFailures = 0;
  private stateValue: SocketConnectionState;
  private readonly budget: number;
  private held: Buffer[] = [];
  private heldIn: Buffer[] = [];
  private heldBytes = 0;
  private readPaused = false;
  private flushing = false;
  private wireCloseHeld = false;
  private flushPending: NodeJS.Immediate | undefined;
  /** Bytes the service has written (held ones included). */
  private bytesWritten = 0;

  constructor(
    private readonly socket: Socket,
    private readonly service: Service,
    private readonly options: SocketConnectionOptions,
  ) {
    this.port = options.port;
    this.hostPort = socket.remotePort ?? 0;
    this.budget = options.sendBudget ?? DEFAULT_SEND_BUDGET;
    this.stateValue = options.frozen === true ? 'FROZEN' : 'OPEN';
  }

  /** Hook the socket up and tell the service (call once). */
  start(): this {
    const socket = this.socket;
    socket.on('data', (data: Buffer) => {
      this.onSocketData(data);
    });
    socket.on('drain', () => {
      this.onDrain();
    });
    socket.on('end', () => {
      this.finish('host-reset');
    });
    socket.on('error', () => {
      this.finish('host-reset'); // ECONNRESET and friends: 'close' follows
    });
    socket.on('close', () => {
      this.finish('host-reset');
      this.options.onRelease?.(this);
    });
    if (this.stateValue === 'FROZEN') socket.pause();
    try {
      this.service.onOpen?.(this);
    } catch {
      this.serviceFailed();
      return this;
    }
    this.flush();
    return this;
  }

  get state(): SocketConnectionState {
    return this.stateValue;
  }

  get open(): boolean {
    return this.stateValue !== 'CLOSED';
  }

  get queuedBytes(): number {
    return this.socket.writableLength + this.heldBytes;
  }

  get sendRoom(): number {
    if (this.stateValue !== 'OPEN') return 0;
    return Math.max(0, this.budget - this.socket.writableLength);
  }

  write(data: Buffer): void {
    if (this.stateValue === 'CLOSED' || data.length === 0) return;
    this.bytesWritten += data.length;
    if (this.stateValue === 'FROZEN') {
      this.held.push(data);
      this.heldBytes += data.length;
      return;
    }
    this.socket.write(data);
  }

  close(): void {
    if (this.stateValue === 'CLOSED') return;
    const frozen = this.stateValue === 'FROZEN';
    this.finish('device-closed');
    if (frozen) {
      // A silent phone puts nothing on the wire: the FIN (or RST) goes out at thaw().
      this.wireCloseHeld = true;
      return;
    }
    this.closeWire();
  }

  /** True while a close() made in FROZEN waits for thaw() to reach the wire. */
  get wireHeld(): boolean {
    return this.wireCloseHeld;
  }

  /** Go quiet: read nothing, send nothing (held until thaw()), close nothing. */
  freeze(): void {
    if (this.stateValue !== 'OPEN') return;
    this.stateValue = 'FROZEN';
    this.socket.pause();
  }

  /** Back from freeze(): held bytes go out, reading resumes (or a held close goes out). */
  thaw(): void {
    if (this.wireCloseHeld) {
      this.wireCloseHeld = false;
      this.closeWire();
      return;
    }
    if (this.stateValue !== 'FROZEN') return;
    this.stateValue = 'OPEN';
    const held = this.held;
    this.held = [];
    this.heldBytes = 0;
    for (const chunk of held) this.socket.write(chunk);
    const heldIn = this.heldIn;
    this.heldIn = [];
    for (const chunk of heldIn) this.onSocketData(chunk);
    if (this.isOpenNow() && !this.readPaused) this.socket.resume();
    this.flush();
  }

  /** The face stops: the socket is destroyed (also one lingering after a FIN), the service hears 'link-gone'. */
  detach(): void {
    this.wireCloseHeld = false;
    this.finish('link-gone');
    this.socket.destroy();
    this.options.rawSocket?.destroy();
  }

  /** FIN after what is queued (RST with resetOnClose); destroyed after LINGER_MS anyway. */
  private closeWire(): void {
    if (this.options.resetOnClose === true) {
      this.reset();
      return;
    }
    const held = this.held;
    this.held = [];
    this.heldBytes = 0;
    for (const chunk of held) this.socket.write(chunk);
    this.socket.end();
    setTimeout(() => {
      this.socket.destroy();
    }, LINGER_MS).unref();
  }

  private onSocketData(data: Buffer): void {
    if (this.stateValue === 'FROZEN') {
      this.heldIn.push(data); // a chunk already on its way when reading stopped
      return;
    }
    if (this.stateValue !== 'OPEN') return;
    try {
      this.service.onData(this, data);
    } catch {
      this.serviceFailed();
      return;
    }
    if (this.isOpenNow() && this.socket.writableLength > this.budget && !this.readPaused) {
      this.readPaused = true;
      this.socket.pause();
    }
  }

  /** A method, so a check after a service callback is not narrowed away. */
  private isOpenNow(): boolean {
    return this.stateValue === 'OPEN';
  }

  private onDrain(): void {
    if (this.stateValue !== 'OPEN') return;
    if (this.readPaused) {
      this.readPaused = false;
      this.socket.resume();
    }
    this.flush();
  }

  /**
   * Ask an endless source for more while the budget has room and it keeps producing. The kernel
   * often takes a write at once (nothing stays buffered, no 'drain' will come), so at most one
   * budget's worth is produced per turn and the next turn continues: other sockets get their turn.
   */
  private flush(): void {
    const service = this.service;
    if (this.flushing || service.onWritable === undefined) return;
    this.flushing = true;
    let produced = 0;
    try {
      while (this.stateValue === 'OPEN' && this.sendRoom > 0 && produced < this.budget) {
        const before = this.bytesWritten;
        try {
          service.onWritable(this);
        } catch {
          this.serviceFailed();
          break;
        }
        if (this.bytesWritten === before) return;
        produced += this.bytesWritten - before;
      }
    } finally {
      this.flushing = false;
    }
    if (this.stateValue === 'OPEN' && this.sendRoom > 0 && produced >= this.budget) {
      this.flushPending ??= setImmediate(() => {
        this.flushPending = undefined;
        this.flush();
      });
    }
  }

  private reset(): void {
    const raw = this.options.rawSocket ?? this.socket;
    if (raw.destroyed) return;
    try {
      raw.resetAndDestroy();
    } catch {
      raw.destroy(); // no TCP handle any more (already closing): a plain close is all that is left
    }
    if (raw !== this.socket) this.socket.destroy();
  }

  private serviceFailed(): void {
    this.serviceFailures++;
    this.finish('device-closed');
    this.reset();
  }

  private finish(reason: ServiceCloseReason): void {
    if (this.stateValue === 'CLOSED') return;
    this.stateValue = 'CLOSED';
    if (this.flushPending !== undefined) clearImmediate(this.flushPending);
    this.flushPending = undefined;
    try {
      this.service.onClose?.(this, reason);
    } catch {
      this.serviceFailures++; // already closed: nothing more to reset
    }
    this.options.onEnd?.(this, reason);
  }
}

/**
 * Every socket of one phone face until it is closed (a connection its service already ended may
 * still linger after its FIN, or wait for thaw() to send it), so the whole phone can go quiet
 * (freeze), come back (thaw) or stop (detachAll) at once. New connections join in the current mode.
 */
export class ConnectionTracker {
  private readonly live = new Set<SocketServiceConnection>();
  private frozenValue = false;

  get frozen(): boolean {
    return this.frozenValue;
  }

  get size(): number {
    return this.live.size;
  }

  /** Wrap `socket` for `service` and start it, tracked until it ends. */
  serve(socket: Socket, service: Service, options: SocketConnectionOptions): SocketServiceConnection {
    const conn = new SocketServiceConnection(socket, service, {
      ...options,
      frozen: this.frozenValue,
      onRelease: (c) => {
        this.live.delete(c);
        options.onRelease?.(c);
      },
    });
    this.live.add(conn);
    return conn.start();
  }

  freeze(): void {
    this.frozenValue = true;
    for (const conn of this.live) conn.freeze();
  }

  thaw(): void {
    this.frozenValue = false;
    for (const conn of [...this.live]) conn.thaw();
  }

  detachAll(): void {
    for (const conn of [...this.live]) conn.detach();
    this.live.clear();
  }
}

