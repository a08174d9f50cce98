/**
 * A DeviceConnection over a TCP socket to a network device's port: what a client's tunnel talks to
 * when its Connect named a Wi-Fi device (the mux connection is the other kind).
 *
 *   tunnel                         TcpDeviceConnection                        phone (TCP)
 *   write(chunk) ──────────────▶ socket.write ─ false ─▶ tunnel pauses the client
 *   onWritable() ◀────────────── 'drain'
 *   onData(payload, done) ◀───── 'data'  (more than RX_HIGH_WATER bytes not yet `done`:
 *                                          pause the socket, so a slow client slows the phone
 *                                          through TCP's own window, as a mux window would)
 *   end() ─────────────────────▶ socket.end(): everything written goes out, then FIN; the phone's
 *                                 bytes still come until its own FIN: onClose('local-end')
 *   end(true) ─────────────────▶ the same, but nobody reads: closed once our bytes are out
 *   reset() ───────────────────▶ RST; onClose('local-reset')
 *   onClose('device-reset') ◀─── the phone closed first (FIN after its data, or RST)
 *   onClose('device-gone') ◀──── drop() (the device was detached), or the link failed
 *                                (ETIMEDOUT, EHOSTUNREACH …)
 *
 * The socket is paused until `attach`, so nothing the phone sends first is lost or buffered twice.
 */
import type { Socket } from 'node:net';
import type { CloseReason, ConnectionSink, DeviceConnection } from '../devices/index.js';
import { systemErrorCode } from '../errors.js';

/**
 * Device bytes handed to the sink and not yet consumed, above which reading stops: the same bound
 * the mux protocol's receive window puts on a USB tunnel.
 */
export const RX_HIGH_WATER = 128 * 1024;

/** Errors that mean the device or the path to it failed, not that the device closed the port. */
const LINK_ERRORS: ReadonlySet<string> = new Set(['ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENETDOWN']);

const kConn = Symbol('muxd.tcpConnection');

interface ConnSocket extends Socket {
  [kConn]?: TcpDeviceConnection;
}

export class TcpDeviceConnection implements DeviceConnection {
  readonly localPort: number;
  readonly remotePort: number;
  private readonly socket: ConnSocket;
  private sink: ConnectionSink | undefined;
  /** Bytes passed to `sink.onData` whose `done` has not run yet. */
  private unconsumed = 0;
  /**
   * Lengths of the payloads awaiting `done`, oldest first. Sinks consume in order (a tunnel's
   * socket writes complete in order, a DeviceDuplex releases held payloads in order), so one
   * `done` function serves every payload and none is allocated per chunk.
   */
  private readonly awaitingDone: number[] = [];
  private readonly done = (): void => { this.consumedOne(); };
  /** Why it closed, once it did; `onClose` runs once, when a sink is attached. */
  private closeReason: CloseReason | undefined;
  private closeReported = false;
  /** end() was called: no more writes; the phone's FIN then means 'local-end'. */
  private ending = false;

  /** `socket` must be connected; it is paused here until `attach`. */
  constructor(socket: Socket, remotePort: number) {
    this.socket = socket;
    this.remotePort = remotePort;
    this.localPort = socket.localPort ?? 0;
    socket.pause();
    const s = socket as ConnSocket;
    s[kConn] = this;
    s.on('data', socketOnData);
    s.on('drain', socketOnDrain);
    s.on('end', socketOnEnd);
    s.on('error', socketOnError);
    s.on('close', socketOnClose);
  }

  write(chunk: Buffer): boolean {
    if (this.closeReason !== undefined) return true;
    if (this.ending) return false;
    return this.socket.write(chunk);
  }

  end(readerGone = false): void {
    if (this.closeReason !== undefined) return;
    if (!this.ending) {
      this.ending = true;
      this.socket.end();
    }
    if (readerGone) {
      // Our bytes are in the kernel once 'finish' fires; it still delivers them after close.
      if (this.socket.writableFinished) this.close('local-end');
      else this.socket.once('finish', () => { this.close('local-end'); });
    }
  }

  reset(): void {
    this.close('local-reset');
  }

  /** The device went away (detached): end the connection without waiting for the phone. */
  drop(): void {
    this.close('device-gone');
  }

  attach(sink: ConnectionSink): void {
    this.sink = sink;
    if (this.closeReason !== undefined) this.reportClose();
    else this.socket.resume();
  }

  /** @internal 'data' */
  onSocketData(payload: Buffer): void {
    const sink = this.sink;
    if (sink === undefined || this.closeReason !== undefined) return;
    this.unconsumed += payload.length;
    this.awaitingDone.push(payload.length);
    if (this.unconsumed > RX_HIGH_WATER) this.socket.pause();
    sink.onData(payload, this.done);
  }

  /** @internal 'drain' */
  onSocketDrain(): void {
    if (this.closeReason === undefined) this.sink?.onWritable();
  }

  /** @internal 'end': the phone sent FIN after its last byte. */
  onSocketEnd(): void {
    this.close(this.ending ? 'local-end' : 'device-reset');
  }

  /** @internal 'error' */
  onSocketError(err: Error): void {
    const code = systemErrorCode(err);
    this.close(code !== undefined && LINK_ERRORS.has(code) ? 'device-gone' : 'device-reset');
  }

  /** @internal 'close' */
  onSocketClose(): void {
    this.close(this.ending ? 'local-end' : 'device-reset');
  }

  private consumedOne(): void {
    this.unconsumed -= this.awaitingDone.shift() ?? 0;
    if (this.unconsumed <= RX_HIGH_WATER && this.closeReason === undefined && this.socket.isPaused()) this.socket.resume();
  }

  private close(reason: CloseReason): void {
    if (this.closeReason !== undefined) return;
    this.closeReason = reason;
    const socket = this.socket;
    // Our side ends it at once (RST); the phone's own end needs nothing more than letting go.
    if (reason === 'local-reset' || reason === 'device-gone') socket.resetAndDestroy();
    else socket.destroy();
    if (this.sink !== undefined) this.reportClose();
  }

  private reportClose(): void {
    if (this.closeReported || this.closeReason === undefined) return;
    this.closeReported = true;
    this.sink?.onClose(this.closeReason);
  }
}

function socketOnData(this: ConnSocket, chunk: Buffer): void {
  this[kConn]?.onSocketData(chunk);
}

function socketOnDrain(this: ConnSocket): void {
  this[kConn]?.onSocketDrain();
}

function socketOnEnd(this: ConnSocket): void {
  this[kConn]?.onSocketEnd();
}

function socketOnError(this: ConnSocket, err: Error): void {
  this[kConn]?.onSocketError(err);
}

function socketOnClose(this: ConnSocket): void {
  this[kConn]?.onSocketClose();
}
