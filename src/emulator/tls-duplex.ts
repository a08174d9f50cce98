/**
 * A Duplex over one device-side ServiceConnection, so node:tls can run a TLS server on a mux
 * connection the phone already has (lockdown's StartSession turns its own connection into TLS).
 *
 * Host bytes are pushed in with feed(); what TLS writes goes to the connection. Once detached (the
 * session ended, or the connection closed) output is dropped: a retired TLS socket can never
 * write into the plain-text stream that follows it.
 */
import { Duplex } from 'node:stream';
import type { ServiceConnection } from './service.js';

export class ConnectionDuplex extends Duplex {
  private detachedValue = false;

  constructor(private readonly conn: ServiceConnection) {
    super();
  }

  get detached(): boolean {
    return this.detachedValue;
  }

  /** Host ciphertext for the TLS socket. */
  feed(data: Buffer): void {
    if (!this.detachedValue) this.push(data);
  }

  /** From now on nothing reaches the connection any more. */
  detach(): void {
    this.detachedValue = true;
  }

  override _read(): void {
    // Input is pushed by feed() as it arrives; there is nothing to pull.
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (!this.detachedValue && this.conn.open) this.conn.write(chunk);
    callback();
  }
}
