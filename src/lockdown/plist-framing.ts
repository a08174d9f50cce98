/**
 * The framing lockdownd and its plist services use: a 4-byte big-endian body length, then a
 * property list (we send XML; the device may answer XML or binary).
 *
 *   [ need 4 header bytes ] ──length n (≤ max)──▶ [ need n body bytes ] ──▶ message, back to header
 *            │                                          │
 *            └── n > max: FrameTooLarge (reset) ◀───────┘ (checked before any body byte is kept)
 *
 * Decoding keeps chunks in a ByteQueue and copies only when a message spans chunks.
 */
import { ByteQueue } from '../byte-queue.js';
import { buildXml, isPlistDict, parsePlist, PlistParseError } from '../plist/index.js';
import type { PlistDict, PlistLimits } from '../plist/index.js';
import { LockdownProtocolError } from './errors.js';

export const FRAME_HEADER_BYTES = 4;
/** Largest message body we accept from a device (lockdown replies are a few KiB). */
export const MAX_MESSAGE_BYTES = 1024 * 1024;

/** One request as the wire carries it: length header and XML body in one buffer. */
export function encodePlistFrame(message: PlistDict): Buffer {
  const body = buildXml(message);
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + body.length);
  frame.writeUInt32BE(body.length, 0);
  body.copy(frame, FRAME_HEADER_BYTES);
  return frame;
}

/** Splits a byte stream into message bodies; throws LockdownProtocolError for an oversized one. */
export class PlistFrameDecoder {
  private readonly maxBody: number;
  private readonly queue = new ByteQueue();
  /** Body length of the message in progress, or -1 while the header is incomplete. */
  private need = -1;

  constructor(maxBody: number = MAX_MESSAGE_BYTES) {
    this.maxBody = maxBody;
  }

  /** Bytes held that do not yet form a whole message. */
  get pendingBytes(): number {
    return this.queue.length;
  }

  /** Feed bytes; returns the bodies completed by them, in order. */
  push(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    this.queue.push(chunk);
    for (;;) {
      if (this.need < 0) {
        if (this.queue.length < FRAME_HEADER_BYTES) return out;
        const length = this.queue.take(FRAME_HEADER_BYTES).readUInt32BE(0);
        if (length > this.maxBody) {
          throw new LockdownProtocolError(`message of ${length} bytes exceeds the ${this.maxBody}-byte limit`);
        }
        this.need = length;
      }
      if (this.queue.length < this.need) return out;
      out.push(this.queue.take(this.need));
      this.need = -1;
    }
  }
}

const MESSAGE_LIMITS: PlistLimits = { maxBytes: MAX_MESSAGE_BYTES, maxDepth: 16, maxObjects: 4096 };

/** A message body → its dict; anything else is a LockdownProtocolError. */
export function parsePlistMessage(body: Buffer): PlistDict {
  let value;
  try {
    value = parsePlist(body, MESSAGE_LIMITS);
  } catch (err) {
    if (err instanceof PlistParseError) throw new LockdownProtocolError(`unparseable message: ${err.message}`, { cause: err });
    throw err;
  }
  if (!isPlistDict(value)) throw new LockdownProtocolError('message is not a dictionary');
  return value;
}
