/**
 * A small promise-based client for the usbmuxd socket protocol, for integration, interop and
 * soak tests. It speaks plist (version 1, as libusbmuxd) and binary (version 0).
 *
 *   const c = await MuxdClient.connect({ path });            // or { host, port }, or 'host:port'
 *   const { reply } = await c.request({ MessageType: 'ListDevices' });
 *   for await (const ev of c.listen()) { ... }               // Attached / Detached / Paired
 *   const tunnel = await (await MuxdClient.connect(t)).connectDevice(1, 62078);  // raw socket
 */
import { connect as netConnect } from 'node:net';
import type { Socket } from 'node:net';
import { FrameDecoder, encodeFrame, MessageType } from '../../src/server/framing.js';
import type { Frame } from '../../src/server/framing.js';
import { decodeReply, encodeBinaryConnect, encodeBinaryListen, swapPort } from '../../src/server/messages.js';
import type { Reply } from '../../src/server/messages.js';
import { buildXml } from '../../src/plist/index.js';
import type { PlistDict } from '../../src/plist/index.js';

export type MuxdTarget = string | { readonly path: string } | { readonly host: string; readonly port: number };

export interface RequestOptions {
  readonly tag?: number;
  /** Header version; default 1 (plist). */
  readonly version?: number;
}

export interface ReplyFrame {
  readonly frame: Frame;
  readonly reply: Reply;
}

export class MuxdClientClosedError extends Error {}

const DEFAULT_TIMEOUT_MS = 5000;

export class MuxdClient {
  readonly socket: Socket;
  private readonly decoder = new FrameDecoder(1 << 20);
  private readonly frames: Frame[] = [];
  private waiter: (() => void) | undefined;
  private ended = false;
  private error: Error | undefined;
  private nextTag = 1;
  /** Set by connectDevice: the next frame is the Connect result and anything after it is tunnel bytes. */
  private rawAfterNextFrame = false;
  /** Frame parsing stopped: bytes stay in the decoder for `takeSocket`. */
  private raw = false;
  private readonly closedPromise: Promise<void>;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', this.onData);
    this.closedPromise = new Promise((resolve) => {
      socket.once('close', () => {
        this.ended = true;
        this.wake();
        resolve();
      });
    });
    socket.on('error', (err) => {
      this.error = err;
    });
  }

  static connect(target: MuxdTarget): Promise<MuxdClient> {
    const options = typeof target === 'string' ? parseTarget(target) : target;
    return new Promise((resolve, reject) => {
      const socket = netConnect(options);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new MuxdClient(socket));
      });
      socket.once('error', reject);
    });
  }

  /** Raw bytes to the daemon. */
  send(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** A plist request (dict) or prebuilt frame; resolves with the next frame the daemon sends. */
  async request(message: PlistDict | Buffer, options: RequestOptions = {}): Promise<ReplyFrame> {
    const tag = options.tag ?? this.nextTag++;
    const frame = Buffer.isBuffer(message) ? message : encodeFrame(options.version ?? 1, MessageType.PLIST, tag, buildXml(message));
    this.send(frame);
    return this.readReply();
  }

  async readReply(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<ReplyFrame> {
    const frame = await this.readFrame(timeoutMs);
    return { frame, reply: decodeReply(frame) };
  }

  /** The next frame; rejects with MuxdClientClosedError if the daemon closes first. */
  async readFrame(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const frame = this.frames.shift();
      if (frame !== undefined) return frame;
      if (this.ended) throw new MuxdClientClosedError(`daemon closed the connection${this.error ? ` (${this.error.message})` : ''}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no frame within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /**
   * Listen (plist, or binary with `binary: true`): Result 0 first, then events as they come.
   * `identity`: more keys for the plist Listen (ProgName, BundleID, …; what ListListeners shows).
   */
  async *listen(options: { binary?: boolean; timeoutMs?: number; identity?: PlistDict } = {}): AsyncGenerator<Reply, void, undefined> {
    const tag = this.nextTag++;
    const request = options.binary === true ? encodeBinaryListen(tag) : { ...options.identity, MessageType: 'Listen' };
    const { reply } = await this.request(request, { tag });
    if (reply.kind !== 'result' || reply.number !== 0) throw new Error(`Listen answered ${JSON.stringify(reply)}`);
    for (;;) {
      try {
        yield (await this.readReply(options.timeoutMs ?? 30_000)).reply;
      } catch (err) {
        if (err instanceof MuxdClientClosedError) return;
        throw err;
      }
    }
  }

  /**
   * Connect to a device port (host order). On Result 0 the returned socket is the raw tunnel
   * (paused; bytes the daemon sent after the Result are unshifted back into it).
   * Rejects with the Result number on refusal.
   */
  async connectDevice(deviceId: number, port: number, options: { binary?: boolean; payload?: Buffer } = {}): Promise<Socket> {
    const tag = this.nextTag++;
    let frame = options.binary === true
      ? encodeBinaryConnect(tag, deviceId, port)
      : encodeFrame(1, MessageType.PLIST, tag, buildXml({ MessageType: 'Connect', DeviceID: deviceId, PortNumber: swapPort(port), ProgName: 'muxd-client' }));
    if (options.payload !== undefined) frame = Buffer.concat([frame, options.payload]);
    this.rawAfterNextFrame = true;
    this.send(frame);
    const { reply } = await this.readReply();
    if (reply.kind === 'result' && reply.number === 0) return this.takeSocket();
    // Still in command state: parse whatever followed.
    this.rawAfterNextFrame = false;
    this.raw = false;
    this.parse();
    if (reply.kind !== 'result') throw new Error(`Connect answered ${JSON.stringify(reply)}`);
    throw new ConnectRefused(reply.number);
  }

  /** Stop parsing frames and hand over the raw socket (with unread bytes unshifted). */
  takeSocket(): Socket {
    this.socket.off('data', this.onData);
    this.socket.pause();
    const rest = this.decoder.takeRemaining();
    if (rest.length > 0) this.socket.unshift(Buffer.concat(rest));
    return this.socket;
  }

  /** Resolves when the daemon (or we) closed the socket. */
  closed(): Promise<void> {
    return this.closedPromise;
  }

  close(): Promise<void> {
    this.socket.destroy();
    return this.closedPromise;
  }

  private readonly onData = (chunk: Buffer): void => {
    this.decoder.push(chunk);
    this.parse();
  };

  private parse(): void {
    try {
      while (!this.raw) {
        const frame = this.decoder.read();
        if (frame === undefined) break;
        this.frames.push(frame);
        if (this.rawAfterNextFrame) this.raw = true;
      }
    } catch (err) {
      this.error = err instanceof Error ? err : new Error(String(err));
      this.socket.destroy();
    }
    this.wake();
  }

  private wake(): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.();
  }
}

export class ConnectRefused extends Error {
  readonly result: number;
  constructor(result: number) {
    super(`Connect refused with Result ${result}`);
    this.result = result;
  }
}

function parseTarget(target: string): { path: string } | { host: string; port: number } {
  if (target.startsWith('UNIX:')) return { path: target.slice(5) };
  const colon = target.lastIndexOf(':');
  if (colon > 0 && /^\d+$/.test(target.slice(colon + 1))) {
    return { host: target.slice(0, colon).replace(/^\[(.*)\]$/, '$1'), port: Number(target.slice(colon + 1)) };
  }
  return { path: target };
}
