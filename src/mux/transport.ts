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
   * One completed IN transfer. Ownership passes to mux (the transport never touches this memory
   * again), unless the transport has a `recycler`: then see ChunkRecycler. Zero-length transfers
   * may be delivered and are ignored by mux.
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

/**
 * A transport that reuses its IN buffers (UsbTransport: a fresh buffer per transfer is garbage the
 * heap holds until the next GC, tens of MiB during a bulk transfer). The chunk `onData` hands over
 * is reused for another transfer as soon as `onData` returns, unless mux said, during `onData`,
 * that views of it live on: `retain(view)` for one it gives back later with `release(view)` (a
 * payload until its sink called `done`), `keep(view)` for one it never gives back (a partial packet
 * the decoder holds, a payload for a sink that may keep it): that buffer is then never reused.
 */
export interface ChunkRecycler {
  retain(view: Buffer): void;
  release(view: Buffer): void;
  keep(view: Buffer): void;
}

export interface Transport {
  /** Largest mux packet (header included) `send` accepts; USB_MTU (49152) on USB. */
  readonly maxPacketSize: number;
  /** Present when IN chunks come from reused buffers: mux must say which views outlive `onData`. */
  readonly recycler?: ChunkRecycler;
  /**
   * A buffer of exactly `length` bytes for the next packet mux passes to `send` (which must then
   * happen, once); the transport takes back what it handed out once the transfer is done. Without
   * it, mux allocates.
   */
  allocPacket?(length: number): Buffer;
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
