/**
 * The contracts of the device directory (src/devices): what a device is to the layers that use it
 * (server, preflight), and what a transport that provides devices (USB mux sessions today, network
 * devices next) hands the directory. Types only.
 *
 * Control plane (connect, device events) uses promises and events; the data plane
 * (`DeviceConnection.write`, `ConnectionSink.onData`) is plain calls, no promise per packet.
 */
import type { EventEmitter } from 'node:events';
import type { Logger } from '../log.js';

/** A device on USB: the facts of its descriptors, as usbmuxd reports them. */
export interface UsbDeviceInfo {
  readonly connectionType: 'USB';
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

/** A device reached over the network (Wi-Fi, or any IP route): where the daemon proved it. */
export interface NetworkDeviceInfo {
  readonly connectionType: 'Network';
  /** The UDID. */
  readonly serial: string;
  /** The IP address Connects go to, without a zone. */
  readonly address: string;
  readonly family: 4 | 6;
  /** The interface it was found on (the scope of an fe80:: address); 0 when unknown. */
  readonly interfaceIndex: number;
  /** The mDNS instance it advertised (`<mac>@<fe80 address>._apple-mobdev2._tcp.local.`), if any. */
  readonly escapedFullServiceName: string | undefined;
}

/** What clients learn of a device; `connectionType` says which kind. */
export type DeviceInfo = UsbDeviceInfo | NetworkDeviceInfo;

/** Why a connection ended; the tunnel maps it to what the client socket sees. */
export type CloseReason =
  /** The device ended it (mux: RST, or FIN, which usbmuxd also treats as the end). */
  | 'device-reset'
  /** We reset it (`reset()` called: daemon shutdown, a tunnel that failed). */
  | 'local-reset'
  /** `end()` finished: every byte written was delivered (mux: acknowledged), then we closed it. */
  | 'local-end'
  /** The device went away: unplugged, or its transport failed. */
  | 'device-gone'
  /** The device broke the protocol on this connection (e.g. overran our window); we reset it. */
  | 'protocol-error';

/** Where a connection delivers what the device sends; installed once with `attach`. */
export interface ConnectionSink {
  /**
   * True when the sink holds no reference to a payload once it has called its `done` (a socket
   * write's callback): the connection may then reuse that memory for later device data. Otherwise
   * every payload is the sink's to keep.
   */
  readonly releasesOnDone?: boolean;
  /**
   * Device payload, as a view (the sink's to keep, unless `releasesOnDone`). Call `done` once the
   * bytes have been consumed (handed to the client's kernel socket): only then may the device send
   * more, so memory per connection stays bounded by the connection's receive window.
   */
  onData(payload: Buffer, done: () => void): void;
  /** `write` returned false earlier and the connection can take more now. */
  onWritable(): void;
  /** The connection is over; called exactly once, after every `onData` for it. */
  onClose(reason: CloseReason): void;
}

/** One byte stream to a port on the device, whatever carries it. */
export interface DeviceConnection {
  /** Our end's port (a mux source port, or a local TCP port). */
  readonly localPort: number;
  /** The device's port. */
  readonly remotePort: number;
  /**
   * Send client bytes to the device. Ownership of `chunk` passes to the connection.
   * Returns false when the device or the transport cannot take more now: stop writing until
   * `onWritable`. Bytes passed in are always accepted (and later sent, or the connection reset).
   * `more`: the writer expects more bytes right away (its read filled its buffer); a transport may
   * use it to pack them into fewer packets, or ignore it.
   */
  write(chunk: Buffer, more?: boolean): boolean;
  /**
   * Finish, then close: the writer is done (its client sent EOF). Every byte `write` accepted is
   * still delivered, and the device's data still reaches the sink, until the connection closes
   * with `onClose('local-end')` (or earlier with another reason if the device ends it first).
   * Mux: the protocol has no usable FIN, so the connection waits for the device's ACK of the last
   * byte, then sends RST; a device that acknowledges nothing for END_ACK_TIMEOUT_MS is reset
   * anyway (logged). A TCP transport: socket.end(). `write` after `end` is ignored (returns
   * false). Idempotent; `reset()` still aborts at once.
   * `readerGone`: nobody takes the device's bytes any more (the client closed entirely), so there
   * is no point waiting for the device to finish sending (mux: no quiet wait after the last ACK).
   * May follow an earlier `end()`.
   */
  end(readerGone?: boolean): void;
  /** Abort (mux: RST to the device); `onClose('local-reset')` follows. Idempotent. */
  reset(): void;
  /** Install the sink; device data received before this is held (bounded by the window). */
  attach(sink: ConnectionSink): void;
}

export interface ConnectOptions {
  /** Give up (ConnectTimeoutError) after this many ms; default CONNECT_TIMEOUT_MS. */
  readonly timeoutMs?: number;
}

/** A device known to the directory. */
export interface Device {
  /** DeviceID, from 1, never reused within a daemon run. */
  readonly id: number;
  readonly info: DeviceInfo;
  /** Ready and announced to clients (Attached sent). */
  readonly visible: boolean;
  /**
   * Open a connection to `port` (host byte order, 0–65535; the phone refuses what nobody listens
   * on, port 0 included). Rejects with ConnectionRefusedError, ConnectTimeoutError or
   * DeviceGoneError (src/devices/errors.ts), or a transport's own error (mux: NoFreePortError).
   * Connect works on devices not yet visible too (preflight relies on it).
   */
  connect(port: number, options?: ConnectOptions): Promise<DeviceConnection>;
}

/** Events of the directory; `paired` is raised by `markPaired`. */
export interface DeviceEvents {
  attached: [device: Device];
  detached: [device: Device];
  paired: [device: Device];
}

/** What the server and preflight see of the device set. */
export interface DeviceDirectory extends EventEmitter<DeviceEvents> {
  /** Visible devices: USB ones first, then network ones, each in DeviceID order. */
  list(): Device[];
  /** Any device with this id, visible or not. */
  get(id: number): Device | undefined;
  /** Number of devices known, not-yet-visible ones included (SIGUSR1 "exit if idle" counts these). */
  count(): number;
  /** Raise `paired` for a device (after SavePairRecord with a matching DeviceID). */
  markPaired(id: number): void;
}

/** A transport's side of one device: what the directory drives (a mux session, a TCP endpoint). */
export interface DeviceLink {
  /** Begin (mux: send VERSION). Called once, right after the link was made. */
  start(): void;
  /** See Device.connect; the directory has already refused it for a device that is gone. */
  connect(port: number, options?: ConnectOptions): Promise<DeviceConnection>;
  /** Daemon stop: end every connection (mux: RST), let that reach the device (bounded), release it. */
  shutdown(): Promise<void>;
}

/** What the directory hands a link it makes: the device's identity and the link's two reports. */
export interface LinkContext {
  /** The DeviceID given to this device. */
  readonly id: number;
  /** Logger bound to `{ dev: id }`. */
  readonly log: Logger;
  /** The device can take Connects from clients: announce it (Attached). Once. */
  ready(): void;
  /** The device is gone (`err` says why when it was not an orderly close): Detached. Once. */
  gone(err?: Error): void;
}

/** What a provider of devices sees of the directory. */
export interface DeviceSink {
  /** Give a new device a DeviceID, make its link with `open`, and start it. */
  add(info: DeviceInfo, open: (context: LinkContext) => DeviceLink): Device;
}
