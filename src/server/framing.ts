/**
 * The client protocol's framing: a 16-byte little-endian header (length, version, message, tag)
 * then `length - 16` body bytes.
 *
 *        push(chunk)
 *            │
 *   ┌────────▼────────┐  ≥16 bytes buffered   ┌──────────────┐
 *   │     HEADER      │──────────────────────▶│     BODY     │
 *   │ (wait for 16 B) │◀──────────────────────│ (wait length)│
 *   └─────────────────┘   frame returned      └──────────────┘
 *      length < 16 → FrameTooShortError;  length > max → FrameTooLargeError
 *
 * FrameDecoder keeps its chunks in a ByteQueue (ws style). `read()` returns the next
 * whole frame or undefined; the body is a view of the chunk when it lies within one chunk and
 * a copy only when it spans chunks. `takeRemaining()` hands the unparsed bytes over (Connect →
 * tunnel) and leaves the decoder empty.
 */
import { ByteQueue } from '../byte-queue.js';
import { FrameTooLargeError, FrameTooShortError } from './errors.js';

export const HEADER_SIZE = 16;
/** usbmuxd closes a client that announces a longer message. */
export const MAX_FRAME_BYTES = 65536;

export const ProtocolVersion = { BINARY: 0, PLIST: 1 } as const;

export const MessageType = {
  RESULT: 1,
  CONNECT: 2,
  LISTEN: 3,
  DEVICE_ADD: 4,
  DEVICE_REMOVE: 5,
  DEVICE_PAIRED: 6,
  PLIST: 8,
} as const;

export interface FrameHeader {
  /** Whole message, header included. */
  readonly length: number;
  readonly version: number;
  readonly message: number;
  readonly tag: number;
}

export interface Frame extends FrameHeader {
  /** `length - 16` bytes. */
  readonly body: Buffer;
}

/** One frame, header and body in a single allocation. */
export function encodeFrame(version: number, message: number, tag: number, body?: Buffer): Buffer {
  const bodyLength = body === undefined ? 0 : body.length;
  const out = Buffer.allocUnsafe(HEADER_SIZE + bodyLength);
  writeHeader(out, { length: HEADER_SIZE + bodyLength, version, message, tag });
  if (body !== undefined) body.copy(out, HEADER_SIZE);
  return out;
}

export function writeHeader(out: Buffer, header: FrameHeader): void {
  out.writeUInt32LE(header.length, 0);
  out.writeUInt32LE(header.version, 4);
  out.writeUInt32LE(header.message, 8);
  out.writeUInt32LE(header.tag, 12);
}

export function readHeader(buf: Buffer): FrameHeader {
  return {
    length: buf.readUInt32LE(0),
    version: buf.readUInt32LE(4),
    message: buf.readUInt32LE(8),
    tag: buf.readUInt32LE(12),
  };
}

const HEADER = 0;
const BODY = 1;

export class FrameDecoder {
  private readonly maxFrameBytes: number;
  /** Unparsed chunks, oldest first. */
  private readonly queue = new ByteQueue();
  private state: typeof HEADER | typeof BODY = HEADER;
  /** The header of the frame whose body we wait for (state BODY). */
  private header: FrameHeader | undefined;

  constructor(maxFrameBytes: number = MAX_FRAME_BYTES) {
    this.maxFrameBytes = maxFrameBytes;
  }

  /** Bytes held and not yet returned as frames. */
  get bufferedBytes(): number {
    return this.queue.length;
  }

  /** Part of a frame has arrived (header bytes, or a whole header and not all of its body). */
  get midFrame(): boolean {
    return this.state === BODY || this.queue.length > 0;
  }

  push(chunk: Buffer): void {
    this.queue.push(chunk);
  }

  /**
   * The next complete frame, or undefined when more bytes are needed.
   * Throws FrameTooShortError / FrameTooLargeError on an impossible length; the caller closes.
   */
  read(): Frame | undefined {
    if (this.state === HEADER) {
      if (this.queue.length < HEADER_SIZE) return undefined;
      const header = readHeader(this.queue.take(HEADER_SIZE));
      if (header.length < HEADER_SIZE) {
        throw new FrameTooShortError(`frame length ${header.length} is shorter than the ${HEADER_SIZE}-byte header`);
      }
      if (header.length > this.maxFrameBytes) {
        throw new FrameTooLargeError(`frame length ${header.length} exceeds ${this.maxFrameBytes}`);
      }
      this.header = header;
      this.state = BODY;
    }
    const header = this.header;
    if (header === undefined) throw new Error('FrameDecoder: BODY state without a header');
    const bodyLength = header.length - HEADER_SIZE;
    if (this.queue.length < bodyLength) return undefined;
    const body = this.queue.take(bodyLength);
    this.state = HEADER;
    this.header = undefined;
    return { ...header, body };
  }

  /**
   * Everything not yet returned by `read()`, in order, including the bytes of a half-read
   * frame's header; the decoder is empty afterwards.
   */
  takeRemaining(): Buffer[] {
    const out = this.queue.takeAll();
    if (this.state === BODY && this.header !== undefined) {
      const head = Buffer.allocUnsafe(HEADER_SIZE);
      writeHeader(head, this.header);
      out.unshift(head);
    }
    this.state = HEADER;
    this.header = undefined;
    return out;
  }
}
