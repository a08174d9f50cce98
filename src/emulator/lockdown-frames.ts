/**
 * Cuts a byte stream into lockdown-style messages (4-byte BIG-endian length + plist), as used by
 * lockdownd and the notification proxy. Optionally it also recognises whole TLS records at a
 * message boundary (a TLS close_notify a host sends after StopSession, in the middle of otherwise
 * plain text): a record starts with a content type 0x14..0x17 and a 0x03 major version, where a
 * plain message starts with 0x00 (its length is below 16 MiB).
 *
 *   [ BOUNDARY ] --first byte 0x00..--> [ NEED_BODY n ] --n bytes: onMessage--> [ BOUNDARY ]
 *        |                                    |
 *        |  tlsRecords and 0x14..0x17 0x03     +-- n > max, unparseable, not a dict: onBad (stop)
 *        v
 *   [ TLS_RECORD ] --5 + length bytes: onTlsRecord--> [ BOUNDARY ]
 *
 * After onBad the reader is stopped and ignores input. `detach()` stops it too and hands back the
 * bytes it holds (the start of a TLS handshake after StartSession).
 */
import { MAX_LOCKDOWN_MESSAGE, parseLockdownMessage } from './lockdown.js';

const TLS_HEADER = 5;
const EMPTY = Buffer.alloc(0);

export interface FrameSink {
  onMessage(message: Record<string, unknown>): void;
  /** Input that breaks the framing: the owner resets the connection. */
  onBad(reason: string): void;
  /** A whole TLS record (only when `tlsRecords` is on). */
  onTlsRecord?(record: Buffer): void;
}

export function looksLikeTlsRecord(first: number, second: number): boolean {
  return first >= 0x14 && first <= 0x17 && second === 0x03;
}

export class LockdownFrameReader {
  /** Accept TLS records between messages (set once a session has ended on this connection). */
  tlsRecords = false;
  private pending: Buffer | undefined;
  private stopped = false;

  constructor(private readonly sink: FrameSink) {}

  /** Stop reading; returns the unread bytes. */
  detach(): Buffer {
    const rest = this.pending ?? Buffer.alloc(0);
    this.pending = undefined;
    this.stopped = true;
    return rest;
  }

  /** True after onBad or detach() (a method, so the check after a sink call is not narrowed away). */
  isStopped(): boolean {
    return this.stopped;
  }

  /** Start reading again (after a TLS session ended). */
  resume(): void {
    this.stopped = false;
  }

  push(data: Buffer): void {
    if (this.stopped) return;
    let buf = this.pending === undefined ? data : Buffer.concat([this.pending, data]);
    this.pending = undefined;
    while (buf.length >= 2) {
      let used: number;
      let message: Record<string, unknown> | undefined;
      const tls = this.tlsRecords && looksLikeTlsRecord(buf[0] ?? 0, buf[1] ?? 0);
      if (tls) {
        if (buf.length < TLS_HEADER) break;
        used = TLS_HEADER + buf.readUInt16BE(3);
        if (buf.length < used) break;
      } else {
        if (buf.length < 4) break;
        const length = buf.readUInt32BE(0);
        if (length > MAX_LOCKDOWN_MESSAGE) {
          this.fail(`message of ${length} bytes`);
          return;
        }
        used = 4 + length;
        if (buf.length < used) break;
        message = parseLockdownMessage(buf.subarray(4, used));
        if (message === undefined) {
          this.fail('not a plist dictionary');
          return;
        }
      }
      // The rest is parked where detach() finds it if the sink switches the connection to TLS.
      const rest = buf.subarray(used);
      this.pending = rest.length > 0 ? rest : undefined;
      if (message === undefined) this.sink.onTlsRecord?.(buf.subarray(0, used));
      else this.sink.onMessage(message);
      if (this.isStopped()) return; // the sink reset the connection or took the rest for TLS
      buf = this.pending ?? EMPTY;
      this.pending = undefined;
    }
    if (buf.length > 0) this.pending = buf;
  }

  private fail(reason: string): void {
    this.stopped = true;
    this.pending = undefined;
    this.sink.onBad(reason);
  }
}
