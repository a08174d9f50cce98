/**
 * A deliberately dumb usbmuxd client for differential tests: it writes whatever frame it is told
 * (any header version, any message type, malformed bodies) and reports exactly what came back,
 * including silence and close, so two daemons can be compared byte for byte.
 *
 * Header (both directions, little-endian): length u32 (whole frame), version u32, message u32, tag u32.
 * Written independently of src/server so a symmetric misreading cannot hide (test/support/
 * muxd-client.ts reuses the server's own framing and message codecs, which is right for
 * integration tests but not for judging the server against usbmuxd).
 */
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import plist from 'plist';
import type { PlistValue } from 'plist';

export const HEADER_BYTES = 16;
export const MSG_RESULT = 1;
export const MSG_CONNECT = 2;
export const MSG_LISTEN = 3;
export const MSG_DEVICE_ADD = 4;
export const MSG_DEVICE_REMOVE = 5;
export const MSG_DEVICE_PAIRED = 6;
export const MSG_PLIST = 8;

export interface RawFrame {
  readonly length: number;
  readonly version: number;
  readonly message: number;
  readonly tag: number;
  readonly body: Buffer;
}

/** What a read produced: a frame, nothing within the wait, or the daemon closed the socket. */
export type ReadOutcome = { readonly kind: 'frame'; readonly frame: RawFrame } | { readonly kind: 'silence' } | { readonly kind: 'closed' };

export function encodeFrame(version: number, message: number, tag: number, body: Buffer = Buffer.alloc(0)): Buffer {
  const frame = Buffer.alloc(HEADER_BYTES + body.length);
  frame.writeUInt32LE(frame.length, 0);
  frame.writeUInt32LE(version, 4);
  frame.writeUInt32LE(message, 8);
  frame.writeUInt32LE(tag, 12);
  body.copy(frame, HEADER_BYTES);
  return frame;
}

/** A plist request as libusbmuxd 2.0.2 sends it: XML body, header version 1, message 8. */
export function encodePlistRequest(dict: Readonly<Record<string, PlistValue>>, tag: number, version = 1): Buffer {
  return encodeFrame(version, MSG_PLIST, tag, Buffer.from(plist.build(dict), 'utf8'));
}

/** Binary CONNECT: device id u32 LE, port u16 BIG-endian, reserved u16. */
export function encodeBinaryConnect(deviceId: number, port: number, tag: number): Buffer {
  const body = Buffer.alloc(8);
  body.writeUInt32LE(deviceId, 0);
  body.writeUInt16BE(port, 4);
  return encodeFrame(0, MSG_CONNECT, tag, body);
}

export class RawMuxClient {
  private buffered: Buffer = Buffer.alloc(0);
  private closed = false;
  private wake: (() => void) | undefined;

  private constructor(private readonly sock: Socket) {
    sock.on('data', (chunk: Buffer) => {
      this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
      this.notify();
    });
    sock.on('close', () => {
      this.closed = true;
      this.notify();
    });
    sock.on('error', () => {
      // 'close' follows; a reset by the daemon reads as closed.
    });
  }

  static open(path: string): Promise<RawMuxClient> {
    return new Promise((resolve, reject) => {
      const sock = connect(path);
      sock.once('connect', () => {
        sock.removeListener('error', reject);
        resolve(new RawMuxClient(sock));
      });
      sock.once('error', reject);
    });
  }

  send(bytes: Buffer): void {
    this.sock.write(bytes);
  }

  /** Next frame, or silence if none completes within `waitMs`, or closed. */
  async read(waitMs = 1000): Promise<ReadOutcome> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const frame = this.takeFrame();
      if (frame !== undefined) return { kind: 'frame', frame };
      if (this.closed) return { kind: 'closed' };
      const left = deadline - Date.now();
      if (left <= 0) return { kind: 'silence' };
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }

  /** Next frame; anything else is an error. */
  async readFrame(waitMs = 2000): Promise<RawFrame> {
    const r = await this.read(waitMs);
    if (r.kind !== 'frame') throw new Error(`expected a frame, got ${r.kind}`);
    return r.frame;
  }

  /** Bytes received but not yet consumed as frames (e.g. tunnel payload after Connect). */
  get pending(): Buffer {
    return this.buffered;
  }

  get socket(): Socket {
    return this.sock;
  }

  close(): void {
    this.sock.destroy();
  }

  private takeFrame(): RawFrame | undefined {
    if (this.buffered.length < HEADER_BYTES) return undefined;
    const length = this.buffered.readUInt32LE(0);
    if (length < HEADER_BYTES) throw new Error(`daemon sent a frame of length ${length}`);
    if (this.buffered.length < length) return undefined;
    const frame: RawFrame = {
      length,
      version: this.buffered.readUInt32LE(4),
      message: this.buffered.readUInt32LE(8),
      tag: this.buffered.readUInt32LE(12),
      body: Buffer.from(this.buffered.subarray(HEADER_BYTES, length)),
    };
    this.buffered = this.buffered.subarray(length);
    return frame;
  }

  private notify(): void {
    this.wake?.();
  }
}

/** One request on a fresh connection, one outcome, connection closed: libusbmuxd's pattern. */
export async function oneShot(path: string, request: Buffer, waitMs = 1000): Promise<ReadOutcome> {
  const client = await RawMuxClient.open(path);
  try {
    client.send(request);
    return await client.read(waitMs);
  } finally {
    client.close();
  }
}
