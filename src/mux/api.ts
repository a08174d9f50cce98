/**
 * The public face of the mux layer: what `src/server` (and later preflight) may see.
 * Everything here is re-exported from `src/mux/index.ts`; the server imports nothing else of mux.
 *
 * Control plane (connect, device events) uses promises and events; the data plane
 * (`MuxConnection.write`, `ConnectionSink.onData`) is plain calls, no promise per packet.
 */
import type { EventEmitter } from 'node:events';

/** Facts about a device that travel beside its transport (from USB descriptors). */
export interface DeviceInfo {
  /** The UDID as clients see it (`SerialNumber`): 24-character serials get a hyphen after 8. */
  readonly serial: string;
  /** The serial string exactly as read from the USB descriptor. */
  readonly usbSerial: string;
  /** USB product id. */
  readonly productId: number;
  /** `(bus << 16) | address`. */
  readonly locationId: number;
  /** Connection speed in bits per second (480000000 for high speed). */
  readonly speed: number;
}

/** Why a connection ended; the tunnel maps it to what the client socket sees. */
export type CloseReason =
  /** The device sent RST (or FIN, which usbmuxd also treats as the end). */
  | 'device-reset'
  /** We reset it (client went away, `reset()` called, daemon shutdown). */
  | 'local-reset'
  /** The device was unplugged or its transport failed. */
  | 'device-gone'
  /** The device broke the protocol on this connection (e.g. overran our window); we sent RST. */
  | 'protocol-error';

/** Where a connection delivers what the device sends; installed once with `attach`. */
export interface ConnectionSink {
  /**
   * Device payload, as a view that is the sink's to keep. Call `done` once the bytes have been
   * consumed (handed to the client's kernel socket): only then does our ack advance and the
   * device's window reopen. Memory per connection is thereby bounded by our advertised window.
   */
  onData(payload: Buffer, done: () => void): void;
  /** `write` returned false earlier and the connection can take more now. */
  onWritable(): void;
  /** The connection is over; called exactly once, after every `onData` for it. */
  onClose(reason: CloseReason): void;
}

/** One TCP-like connection to a port on the device. */
export interface MuxConnection {
  /** Our (host) port. */
  readonly localPort: number;
  /** The device's port. */
  readonly remotePort: number;
  /**
   * Send client bytes to the device. Ownership of `chunk` passes to the connection.
   * Returns false when the peer window or the transport is full: stop writing until
   * `onWritable`. Bytes passed in are always accepted (and later sent or the connection reset).
   * `more`: the writer expects more bytes right away (its read filled its buffer), so a short tail
   * of a bulk write may wait for them while earlier bytes are in flight, instead of going out as a
   * small packet of its own. Without it, every byte goes out as soon as window and transport allow.
   */
  write(chunk: Buffer, more?: boolean): boolean;
  /** Abort with RST to the device; `onClose('local-reset')` follows. Idempotent. */
  reset(): void;
  /** Install the sink; device data received before this is held (bounded by the window). */
  attach(sink: ConnectionSink): void;
}

export interface ConnectOptions {
  /** Give up (RST to the device, ConnectTimeoutError) after this many ms. Default from config. */
  readonly timeoutMs?: number;
}

/** A device known to the registry. */
export interface MuxDevice {
  /** DeviceID, from 1, never reused within a daemon run. */
  readonly id: number;
  readonly info: DeviceInfo;
  /** Handshake complete and announced to clients. */
  readonly visible: boolean;
  /**
   * Open a connection to `port` (host byte order, 0–65535; the phone refuses what nobody
   * listens on, port 0 included). Rejects with ConnectionRefusedError,
   * ConnectTimeoutError, DeviceGoneError or NoFreePortError (see mux/errors.ts).
   * Connect works on hidden devices too (usbmuxd's preflight relies on it).
   */
  connect(port: number, options?: ConnectOptions): Promise<MuxConnection>;
}

/** Events of the registry; `paired` is raised by `markPaired`. */
export interface DeviceRegistryEvents {
  attached: [device: MuxDevice];
  detached: [device: MuxDevice];
  paired: [device: MuxDevice];
}

/** What the server sees of the device set. */
export interface DeviceDirectory extends EventEmitter<DeviceRegistryEvents> {
  /** Visible devices, in DeviceID order. */
  list(): MuxDevice[];
  /** Any device with this id, visible or hidden. */
  get(id: number): MuxDevice | undefined;
  /** Number of devices known, hidden ones included (SIGUSR1 "exit if idle" counts these). */
  count(): number;
  /** Raise `paired` for a device (after SavePairRecord with a matching DeviceID). */
  markPaired(id: number): void;
}
