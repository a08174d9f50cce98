/**
 * A node:stream Duplex over one DeviceConnection, so that stream consumers (node:tls, the plist
 * framing readers) can talk to a device port without a socket.
 *
 *   DeviceConnection                         DeviceDuplex                       reader / writer
 *   onData(payload, done) ─────────────▶ push(payload)
 *                                          ├ buffer below highWaterMark: done() at once
 *                                          └ buffer full: done held until _read ──▶ done()
 *                                            (so the device's window closes while nobody reads)
 *   write(chunk) ◀──────────────────────── _write(chunk, cb): cb() at once, or held until
 *                                            onWritable (the peer window or transport was full)
 *   onClose('device-reset')  ────────────▶ push(null): a clean end of the readable side
 *   onClose('local-reset' | 'local-end') ▶ destroy() without error (we asked for it)
 *   onClose('device-gone' | 'protocol-error') ▶ destroy(DeviceStreamError)
 *   reset() ◀───────────────────────────── destroy() (from either side of the stream)
 *
 * `end()` finishes the writable side without telling the device anything (the mux protocol has no
 * half-close); the connection stays open until the stream is destroyed (a reset).
 */
import { Duplex } from 'node:stream';
import type { CloseReason, ConnectionSink, DeviceConnection } from '../devices/index.js';
import { LockdownClosedError, DeviceStreamError } from './errors.js';

export class DeviceDuplex extends Duplex implements ConnectionSink {
  private readonly conn: DeviceConnection;
  /** `done` callbacks of payloads pushed while the readable buffer was full, oldest first. */
  private readonly heldDone: (() => void)[] = [];
  /** The write callback waiting for `onWritable`. */
  private pendingWriteCb: ((err?: Error | null) => void) | undefined;
  /** The connection has ended (onClose seen): no more writes, no reset needed. */
  private connClosed = false;

  constructor(conn: DeviceConnection) {
    super({ allowHalfOpen: true });
    this.conn = conn;
    conn.attach(this);
  }

  // ── ConnectionSink ─────────────────────────────────────────────────────────────────────────

  onData(payload: Buffer, done: () => void): void {
    if (this.destroyed) {
      done();
      return;
    }
    if (this.push(payload)) done();
    else this.heldDone.push(done);
  }

  onWritable(): void {
    const cb = this.pendingWriteCb;
    this.pendingWriteCb = undefined;
    cb?.();
  }

  onClose(reason: CloseReason): void {
    this.connClosed = true;
    this.releaseHeld();
    switch (reason) {
      case 'device-reset':
        this.failPendingWrite(new LockdownClosedError('the device closed the connection'));
        this.push(null);
        break;
      case 'local-reset':
      case 'local-end':
        this.destroy();
        break;
      case 'device-gone':
      case 'protocol-error':
        this.destroy(new DeviceStreamError(`device connection ended: ${reason}`));
        break;
    }
  }

  // ── Duplex ─────────────────────────────────────────────────────────────────────────────────

  override _read(): void {
    // The consumer wants more: every payload pushed so far counts as consumed.
    this.releaseHeld();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.connClosed) {
      cb(new LockdownClosedError('write after the device closed the connection'));
      return;
    }
    if (this.conn.write(chunk)) cb();
    else this.pendingWriteCb = cb;
  }

  override _final(cb: (err?: Error | null) => void): void {
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.releaseHeld();
    this.failPendingWrite(err ?? new LockdownClosedError('stream destroyed'));
    if (!this.connClosed) {
      this.connClosed = true;
      this.conn.reset();
    }
    cb(err);
  }

  private releaseHeld(): void {
    const held = this.heldDone.splice(0);
    for (const done of held) done();
  }

  private failPendingWrite(err: Error): void {
    const cb = this.pendingWriteCb;
    this.pendingWriteCb = undefined;
    cb?.(err);
  }
}
