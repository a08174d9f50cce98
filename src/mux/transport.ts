/**
 * The port between the mux engine and whatever carries its packets (USB bulk endpoints, the
 * in-memory pair used by `--virtual-device` and the tests). Types only: mux owns this contract,
 * `src/usb` implements it with a type-only import.
 *
 * Packet-oriented: the device expects one mux packet per bulk-OUT transfer, so `send` takes one
 * whole packet. Inbound, the transport hands over IN transfers as they complete; a transfer may
 * hold part of a packet or (from a tolerant device) more than one, and mux reassembles.
 */

/** The one consumer of a transport's events; set once by `Transport.start`. */
export interface TransportSink {
  /**
   * One completed IN transfer. Ownership passes to mux: the transport never touches or reuses
   * this memory again. Zero-length transfers may be delivered and are ignored by mux.
   */
  onData(chunk: Buffer): void;
  /** In-flight OUT bytes fell back under the high-water mark after `send` returned false. */
  onDrain(): void;
  /**
   * The transport is finished (unplug, transfer error, stall, `close()`); called exactly once.
   * `err` is undefined for an orderly `close()`.
   */
  onClose(err?: Error): void;
}

export interface Transport {
  /** Largest mux packet (header included) `send` accepts; USB_MTU (49152) on USB. */
  readonly maxPacketSize: number;
  /** Begin delivering IN transfers to `sink`. Called once. */
  start(sink: TransportSink): void;
  /**
   * Queue one mux packet as one OUT transfer. Ownership of `packet` passes to the transport.
   * Returns false when in-flight OUT bytes are above the high-water mark; `onDrain` follows.
   * The packet is still accepted when false is returned (like `stream.write`). After close it
   * is dropped silently (the session is already tearing down).
   */
  send(packet: Buffer): boolean;
  /** Cancel transfers, release the device; resolves when nothing is in flight. Idempotent. */
  close(): Promise<void>;
}
