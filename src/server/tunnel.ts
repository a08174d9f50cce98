/**
 * The glue between a client socket in tunnel mode and its DeviceConnection (ws style: module-level
 * named listeners reaching their Tunnel through one symbol-keyed back-reference, so no closure is
 * created per event).
 *
 *   client socket                      Tunnel                         DeviceConnection
 *   'data' ── socketOnData ──────────▶ conn.write(chunk, more) ─ false ─▶ socket.pause()
 *                                      onWritable() ◀──────────────── window reopened → resume
 *   socket.write(payload, done) ◀───── onData(payload, done)   (done = bytes reached the kernel,
 *                                                               only then does our ack advance)
 *   'end' ── socketOnEnd ────────────▶ conn.end()   (finish: what the client wrote still goes)
 *   'close' ── socketOnClose ────────▶ conn.end(true)   (the same; nobody reads the device now)
 *   socket.end() ◀──────────────────── onClose('local-end' | 'device-reset' | 'device-gone' |
 *                                      'protocol-error')  (queued bytes flushed first, never truncated)
 *   socket.destroy() ◀──────────────── onClose('local-reset')   (destroy(): daemon shutdown)
 *
 * States:
 *
 *            client EOF, or the socket closed           onClose(any)
 *   open ─────────────────────────────────────▶ finishing ────────────▶ closed
 *     └────────────────────────── onClose(any) ─────────────────────────▶ ┘
 *
 * Finishing: the client is done writing (shutdown(SHUT_WR) or close; an error on its socket too),
 * but every byte it wrote was accepted by the connection, which delivers them and closes once the
 * device has acknowledged the last one. Until then the device's bytes still reach a client that
 * only half-closed (the server makes sockets with allowHalfOpen). A close looks like a half-close
 * at first; once a write to the client fails its socket closes, `done` still runs for every payload
 * (the bytes are dropped), and the connection is told nobody reads any more.
 *
 * A slow client therefore throttles the device: unflushed payload holds back `done`, the ack does
 * not advance, and the device's window closes. Daemon memory per tunnel stays within our window.
 */
import type { Socket } from 'node:net';
import type { CloseReason, ConnectionSink, DeviceConnection } from '../devices/index.js';
import type { Logger } from '../log.js';
import { readReclaimer } from './read-reclaim.js';

const kTunnel = Symbol('muxd.tunnel');

/**
 * After the device side ended, how long the client may take to read what is queued (with no
 * progress at all) before we drop it, so a client that never reads cannot pin the socket forever.
 */
export const END_LINGER_MS = 30_000;

/**
 * Node's net.Socket reads at most 64 KiB per call (libuv's suggested buffer): a read that filled it
 * most likely left more in the kernel, which is what DeviceConnection.write's `more` means.
 */
const FULL_READ = 64 * 1024;

interface TunnelSocket extends Socket {
  [kTunnel]?: Tunnel;
}

export class Tunnel implements ConnectionSink {
  /** `done` is a socket write's callback: by then the socket holds no reference to the payload. */
  readonly releasesOnDone = true;
  private readonly socket: TunnelSocket;
  private readonly conn: DeviceConnection;
  private readonly log: Logger;
  /** See {@link END_LINGER_MS}; a parameter so tests need not wait 30 s. */
  private readonly lingerMs: number;
  /** onClose has run: the connection takes no more writes. */
  private closed = false;
  /** The client is done writing and conn.end() was called. */
  private finishing = false;

  constructor(socket: Socket, conn: DeviceConnection, log: Logger, lingerMs = END_LINGER_MS) {
    this.socket = socket;
    this.conn = conn;
    this.log = log;
    this.lingerMs = lingerMs;
  }

  /**
   * Wire socket and connection together; `leftover` (client bytes that arrived before the
   * handoff) goes to the device first, before anything read from the socket from now on.
   */
  start(leftover: readonly Buffer[]): void {
    const socket = this.socket;
    socket[kTunnel] = this;
    let writable = true;
    for (const chunk of leftover) writable = this.conn.write(chunk);
    socket.on('data', socketOnData);
    socket.on('end', socketOnEnd);
    socket.on('close', socketOnClose);
    this.conn.attach(this);
    if (socket.destroyed) {
      this.clientGone(true);
      return;
    }
    if (!writable && !this.closed) socket.pause();
    else socket.resume();
  }

  /** Daemon shutdown or server close: RST the device side and drop the client. */
  destroy(): void {
    this.conn.reset();
    this.socket.destroy();
  }

  onData(payload: Buffer, done: () => void): void {
    if (this.log.isLevelEnabled('trace')) this.log.trace({ len: payload.length }, '[IN] to client');
    const socket = this.socket;
    // Payloads delivered in the same tick go out in one writev: cork now, uncork once this tick's
    // work is done (a module-level function, no closure per packet).
    if (socket.writableCorked === 0) {
      socket.cork();
      process.nextTick(uncorkSocket, socket);
    }
    // `done` runs once the bytes are handed to the kernel (or the socket failed): then we ack.
    socket.write(payload, done);
  }

  onWritable(): void {
    if (!this.socket.destroyed) this.socket.resume();
  }

  onClose(reason: CloseReason): void {
    this.closed = true;
    const socket = this.socket;
    socket.removeListener('data', socketOnData);
    socket.removeListener('end', socketOnEnd);
    socket.removeListener('close', socketOnClose);
    switch (reason) {
      case 'local-end':
      case 'device-reset':
      case 'device-gone':
      case 'protocol-error':
        this.log.debug({ reason }, 'tunnel closed; ending client after queued bytes');
        socket.resume(); // a paused socket would never see the client's FIN
        socket.setTimeout(this.lingerMs, socketOnLingerTimeout);
        socket.end();
        break;
      case 'local-reset':
        this.log.debug({ reason }, 'tunnel reset');
        socket.destroy();
        break;
    }
  }

  /** Client bytes toward the device. */
  write(chunk: Buffer): void {
    if (this.closed || this.finishing) return;
    readReclaimer.note(chunk.length);
    if (this.log.isLevelEnabled('trace')) this.log.trace({ len: chunk.length }, '[OUT] from client');
    if (!this.conn.write(chunk, chunk.length >= FULL_READ)) this.socket.pause();
  }

  /**
   * The client is done writing (EOF), or gone (`closed`: error, close): finish the device
   * connection, so that every byte the client wrote still reaches the device before the RST.
   */
  clientGone(closed: boolean): void {
    if (this.closed) return;
    if (!this.finishing) {
      this.finishing = true;
      this.log.debug({ closed }, 'client ended; finishing the device connection');
      this.conn.end(closed);
    } else if (closed) {
      this.conn.end(true);
    }
  }
}

function socketOnData(this: TunnelSocket, chunk: Buffer): void {
  this[kTunnel]?.write(chunk);
}

function uncorkSocket(socket: Socket): void {
  socket.uncork();
}

function socketOnLingerTimeout(this: TunnelSocket): void {
  this.destroy();
}

function socketOnEnd(this: TunnelSocket): void {
  this[kTunnel]?.clientGone(false);
}

function socketOnClose(this: TunnelSocket): void {
  this[kTunnel]?.clientGone(true);
}
