/**
 * UsbTransport: mux's `Transport` over one claimed usbmux interface (node-usb bulk endpoints).
 *
 *            start(sink)                    transfer error / stall / NO_DEVICE / deviceGone()
 *   idle ─────────────────► polling ───────────────────────────────────────┐  sink.onClose(err) now
 *     │                        │ close()                                    ▼
 *     └── close() ─────────────┴─────────────────────────────────────► closing ──► gone
 *                                                   cancel IN and OUT + wait for their callbacks,
 *                                                   cut the callbacks' links, release interface,
 *                                                   close handle; close() resolves
 *                                                   (orderly close: sink.onClose() once here)
 *
 * IN: `rxTransfers` bulk-IN transfers of `rxTransferSize` bytes are kept in flight, each resubmitted
 * as soon as its callback has handed the received bytes to mux, as a view: mux gets them without a
 * copy. The buffers are reused (the `recycler`, mux/transport.ts ChunkRecycler): one that mux let go
 * of during `onData` (an ACK, a packet handled on the spot) is resubmitted at once; one whose
 * payload went to a client socket comes back to the free list when the socket has written it; one
 * that mux keeps is left to the garbage collector. (A fresh buffer per transfer was 16 KiB of
 * garbage per packet: tens of MiB of heap between collections during a bulk transfer.) node-usb's
 * own `startPoll` is not used: when a resubmit fails on unplug it never emits 'end', and its poll
 * transfers then keep the endpoint and the device reachable for good, see below.
 *
 * OUT: one transfer per mux packet (the device expects packet boundaries = transfer boundaries),
 * plus a zero-length transfer when the length is a multiple of wMaxPacketSize. Transfers come from
 * a small pool of reusable slots (one node-usb Transfer and one callback each, made once), and
 * packets of OUT_POOL_MIN bytes or more are written into buffers of a free list (`allocPacket`) that
 * come back when their transfer completes, so sending allocates nothing of ours per packet.
 * In-flight OUT bytes above the high-water mark make `send` return false; `onDrain` follows when
 * they fall back under it.
 *
 * Memory: node-usb holds each Transfer's callback with a strong (global) handle for as long as the
 * Transfer object lives, and the Transfer lives as long as anything reaches it. A callback that
 * reached its own Transfer — through its slot, or through this transport — would be a cycle
 * through a GC root: every unplugged device would stay in memory with its mux session,
 * connections and node-usb Device (issue 6: +1 MuxSession per replug in the soak's heap
 * snapshots). So a callback reaches its slot only through a `SlotLink` that teardown cuts.
 *
 * Any failure ends the transport exactly once: `sink.onClose(err)` is called at once, and
 * teardown waits for every transfer callback before the handle is closed (no leaked transfers).
 */
import type { Logger } from '../log.js';
import type { Transport, TransportSink } from '../mux/transport.js';
import {
  BULK_TIMEOUT_MS,
  LIBUSB_ERROR_NO_DEVICE,
  LIBUSB_ERROR_PIPE,
  LIBUSB_TRANSFER_CANCELLED,
  LIBUSB_TRANSFER_NO_DEVICE,
  LIBUSB_TRANSFER_STALL,
  NUM_RX_LOOPS,
  OUT_HIGH_WATER,
  POLL_END_TIMEOUT_MS,
  USB_MRU,
  USB_MTU,
} from './constants.js';
import { UsbDeviceGoneError, UsbStallError, UsbTransferError, libusbErrno } from './errors.js';

/** One node-usb Transfer: reusable once its callback has run. */
export interface OutTransfer {
  submit(buffer: Buffer): unknown;
  cancel(): unknown;
}

export type TransferCallback = (error: Error | undefined, buffer: Buffer, actualLength: number) => void;

/** The part of node-usb's InEndpoint / OutEndpoint the transport uses (tests pass fakes). */
export interface BulkEndpoint {
  makeTransfer(timeout: number, callback: TransferCallback): OutTransfer;
}

export type BulkIn = BulkEndpoint;
export type BulkOut = BulkEndpoint;

/** A claimed usbmux interface, as the opener hands it over. */
export interface ClaimedInterface {
  readonly bulkIn: BulkIn;
  readonly bulkOut: BulkOut;
  /** wMaxPacketSize of the OUT endpoint in bytes (ZLP rule). */
  readonly outMaxPacketSize: number;
  /** Release the interface and close the handle. Never throws; reports a failure to `done`. */
  release(done: (err?: Error) => void): void;
}

export interface UsbTransportOptions {
  readonly log: Logger;
  /** Bulk-IN transfers in flight (default NUM_RX_LOOPS = 3). */
  readonly rxTransfers?: number;
  /** Size in bytes of each bulk-IN transfer (default USB_MRU = 16384). */
  readonly rxTransferSize?: number;
  /** In-flight OUT bytes above which `send` returns false (default 4 × USB_MTU). */
  readonly outHighWater?: number;
}

type State = 'idle' | 'polling' | 'closing' | 'gone';

const EMPTY = Buffer.alloc(0);
/** Packets at least this long are written into reused buffers (shorter ones come from Node's shared pool). */
export const OUT_POOL_MIN = 4096;
/** Free buffers kept per direction beyond those in use; a burst's extra ones are left to the GC. */
const MAX_FREE_BUFFERS = 32;
/** An IN buffer whose views mux keeps for good: never reused. */
const KEPT = -1;

/** The only path from a Transfer's callback to its slot; `slot` is cleared at teardown. */
interface SlotLink {
  slot: TransferSlot | undefined;
}

/** A callback that knows nothing but its link (no other closure state: see Memory above). */
function linkedCallback(link: SlotLink): TransferCallback {
  return (error, buffer, actualLength) => {
    link.slot?.done(error, buffer, actualLength);
  };
}

/** One reusable transfer with its callback, made once and recycled. */
class TransferSlot {
  readonly transfer: OutTransfer;
  /** Bytes in flight in this slot (OUT). */
  length = 0;
  busy = false;
  /** The whole allocPacket buffer the in-flight packet was written into, if it was (OUT). */
  pooled: Buffer | undefined = undefined;
  private readonly link: SlotLink;

  constructor(
    private readonly owner: UsbTransport,
    endpoint: BulkEndpoint,
    timeout: number,
    private readonly direction: 'in' | 'out',
  ) {
    const link: SlotLink = { slot: undefined };
    this.transfer = endpoint.makeTransfer(timeout, linkedCallback(link));
    link.slot = this;
    this.link = link;
  }

  done(error: Error | undefined, buffer: Buffer, actualLength: number): void {
    if (this.direction === 'in') this.owner.inDone(this, error, buffer, actualLength);
    else this.owner.outDone(this, error);
  }

  /** The transport is gone: a late callback finds nothing, and nothing keeps the Transfer alive. */
  sever(): void {
    this.link.slot = undefined;
  }
}

/** Classify a failed transfer by libusb number (never by message). */
export function transferFailure(direction: 'in' | 'out', cause: unknown): Error {
  const errno = libusbErrno(cause);
  if (errno === LIBUSB_TRANSFER_NO_DEVICE || errno === LIBUSB_ERROR_NO_DEVICE) {
    return new UsbDeviceGoneError(`device gone during bulk ${direction}`, { cause });
  }
  if (errno === LIBUSB_TRANSFER_STALL || errno === LIBUSB_ERROR_PIPE) {
    return new UsbStallError(direction, `bulk ${direction} endpoint stalled`, { cause });
  }
  return new UsbTransferError(direction, errno, `bulk ${direction} transfer failed (libusb ${String(errno)})`, { cause });
}

export class UsbTransport implements Transport {
  /**
   * One byte under usbmuxd's USB_MTU: a full-size packet (49152, a multiple of every
   * wMaxPacketSize) would need a zero-length transfer after it; 49151 never does, which saves a
   * ZLP (an OUT transfer) per bulk packet.
   */
  readonly maxPacketSize = USB_MTU - 1;

  private state: State = 'idle';
  private sink: TransportSink | undefined;
  private readonly log: Logger;
  private readonly rxTransfers: number;
  private readonly rxTransferSize: number;
  private readonly highWater: number;
  /** Every OUT slot ever made; the free ones are also in `freeSlots`. */
  private readonly slots: TransferSlot[] = [];
  private readonly freeSlots: TransferSlot[] = [];
  /** The IN transfers, made at start. */
  private readonly inSlots: TransferSlot[] = [];
  /** IN transfers submitted and not yet completed. */
  private inPending = 0;
  /** Bytes handed to libusb on OUT and not yet completed. */
  private outBytes = 0;
  /** OUT transfers (packets and ZLPs) submitted and not yet completed. */
  private outPending = 0;
  /** `send` returned false; `onDrain` is owed. */
  private drainOwed = false;
  /** IN buffers of this transport by their memory: how many retained views each has, or KEPT. */
  private readonly inViews = new WeakMap<ArrayBufferLike, number>();
  /** The Buffer over each IN buffer's whole memory, for resubmitting it. */
  private readonly inBuffers = new WeakMap<ArrayBufferLike, Buffer>();
  private readonly inFree: Buffer[] = [];
  /** OUT packet buffers handed out by allocPacket, by their memory: the whole buffer. */
  private readonly outBuffers = new WeakMap<ArrayBufferLike, Buffer>();
  private readonly outFree: Buffer[] = [];
  /** See mux/transport.ts ChunkRecycler; bound once, passed to mux. */
  readonly recycler = {
    retain: (view: Buffer): void => {
      const count = this.inViews.get(view.buffer);
      if (count !== undefined && count !== KEPT) this.inViews.set(view.buffer, count + 1);
    },
    release: (view: Buffer): void => {
      const memory = view.buffer;
      const count = this.inViews.get(memory);
      if (count === undefined || count === KEPT) return;
      this.inViews.set(memory, count - 1);
      if (count === 1) this.recycleIn(memory);
    },
    keep: (view: Buffer): void => {
      if (this.inViews.has(view.buffer)) this.inViews.set(view.buffer, KEPT);
    },
  };
  private closeNotified = false;
  private closing: Promise<void> | undefined;
  /** Resolves teardown's wait once no IN or OUT transfer is in flight. */
  private quiet: (() => void) | undefined;

  constructor(
    private readonly device: ClaimedInterface,
    options: UsbTransportOptions,
  ) {
    this.log = options.log;
    this.rxTransfers = options.rxTransfers ?? NUM_RX_LOOPS;
    this.rxTransferSize = options.rxTransferSize ?? USB_MRU;
    this.highWater = options.outHighWater ?? OUT_HIGH_WATER;
  }

  start(sink: TransportSink): void {
    if (this.state !== 'idle') throw new Error(`UsbTransport.start in state ${this.state}`);
    this.sink = sink;
    this.state = 'polling';
    try {
      for (let n = 0; n < this.rxTransfers; n++) this.inSlots.push(new TransferSlot(this, this.device.bulkIn, 0, 'in'));
    } catch (err) {
      this.fail(transferFailure('in', err));
      return;
    }
    for (const slot of this.inSlots) {
      if (!this.submitIn(slot, this.freeIn())) return;
    }
  }

  send(packet: Buffer): boolean {
    if (this.state !== 'polling' && this.state !== 'idle') return false;
    this.submitOut(packet);
    if (packet.length > 0 && packet.length % this.device.outMaxPacketSize === 0) this.submitOut(EMPTY);
    if (this.outBytes > this.highWater) {
      this.drainOwed = true;
      return false;
    }
    return true;
  }

  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.state = 'closing';
    this.closing = this.teardown(false).then(() => {
      this.notifyClose(undefined);
    });
    return this.closing;
  }

  /** The backend saw the device leave (hotplug detach): end with UsbDeviceGoneError. */
  deviceGone(): void {
    this.fail(new UsbDeviceGoneError('device detached'));
  }

  /** Completion of one IN transfer: hand the bytes to mux, then resubmit while polling. */
  inDone(slot: TransferSlot, error: Error | undefined, buffer: Buffer, actualLength: number): void {
    slot.busy = false;
    this.inPending--;
    const memory = buffer.buffer;
    // 1 while mux has the chunk: views mux retains add to it, and the count drops to 0 (the
    // buffer is free again) when the last of them is released.
    this.inViews.set(memory, 1);
    if (error === undefined) {
      if (this.state === 'polling' && actualLength > 0) {
        if (this.log.isLevelEnabled('trace')) this.log.trace({ len: actualLength }, 'bulk IN');
        this.sink?.onData(actualLength === buffer.length ? buffer : buffer.subarray(0, actualLength));
      }
    } else if (libusbErrno(error) !== LIBUSB_TRANSFER_CANCELLED && this.state === 'polling') {
      this.fail(transferFailure('in', error));
    }
    const count = this.inViews.get(memory) ?? KEPT;
    let next: Buffer | undefined;
    if (count === 1) {
      // Nothing of it outlives onData: the same buffer goes straight back in.
      this.inViews.delete(memory);
      next = buffer;
    } else if (count !== KEPT) {
      this.inViews.set(memory, count - 1);
    }
    if (this.state === 'polling') this.submitIn(slot, next ?? this.freeIn());
    else if (this.inPending === 0) this.checkQuiet();
  }

  /** A buffer for the next packet mux sends (see Transport.allocPacket). */
  allocPacket(length: number): Buffer {
    if (length < OUT_POOL_MIN || length > this.maxPacketSize) return Buffer.allocUnsafe(length);
    let whole = this.outFree.pop();
    if (whole === undefined) {
      whole = Buffer.allocUnsafeSlow(this.maxPacketSize);
      this.outBuffers.set(whole.buffer, whole);
    }
    return length === whole.length ? whole : whole.subarray(0, length);
  }

  /** An IN buffer whose last retained view was released: back to the free list. */
  private recycleIn(memory: ArrayBufferLike): void {
    this.inViews.delete(memory);
    const whole = this.inBuffers.get(memory);
    if (whole !== undefined && this.inFree.length < MAX_FREE_BUFFERS && this.state === 'polling') this.inFree.push(whole);
  }

  private freeIn(): Buffer {
    const free = this.inFree.pop();
    if (free !== undefined) return free;
    // allocUnsafeSlow: memory of its own (never a slice of Node's shared pool), not zeroed; mux
    // only ever sees the bytes the device wrote (the first actualLength).
    const fresh = Buffer.allocUnsafeSlow(this.rxTransferSize);
    this.inBuffers.set(fresh.buffer, fresh);
    return fresh;
  }

  /** Completion of one OUT slot; called by the slot's callback. */
  outDone(slot: TransferSlot, error: Error | undefined): void {
    this.outBytes -= slot.length;
    this.outPending--;
    slot.length = 0;
    slot.busy = false;
    const pooled = slot.pooled;
    slot.pooled = undefined;
    if (pooled !== undefined && this.outFree.length < MAX_FREE_BUFFERS) this.outFree.push(pooled);
    this.freeSlots.push(slot);
    if (error !== undefined) {
      if (this.state === 'polling' || this.state === 'idle') this.fail(transferFailure('out', error));
    } else if (this.drainOwed && this.outBytes <= this.highWater && this.state === 'polling') {
      this.drainOwed = false;
      this.sink?.onDrain();
    }
    if (this.outPending === 0) this.checkQuiet();
  }

  private submitOut(buf: Buffer): void {
    const slot = this.freeSlots.pop() ?? this.newSlot();
    slot.busy = true;
    slot.length = buf.length;
    // A buffer of allocPacket's comes back to the free list when this transfer is done.
    slot.pooled = buf.length >= OUT_POOL_MIN ? this.outBuffers.get(buf.buffer) : undefined;
    this.outBytes += buf.length;
    this.outPending++;
    try {
      slot.transfer.submit(buf);
    } catch (err) {
      slot.busy = false;
      slot.length = 0;
      slot.pooled = undefined;
      this.outBytes -= buf.length;
      this.outPending--;
      this.freeSlots.push(slot);
      // Not from inside send(): mux must not see onClose re-entrantly while it is sending.
      const failure = transferFailure('out', err);
      queueMicrotask(() => {
        this.fail(failure);
      });
    }
  }

  /** Submit `buffer` (free: no view of it is in use) on `slot`. False: failed (transport ends). */
  private submitIn(slot: TransferSlot, buffer: Buffer): boolean {
    try {
      slot.transfer.submit(buffer);
    } catch (err) {
      this.fail(transferFailure('in', err));
      return false;
    }
    slot.busy = true;
    this.inPending++;
    return true;
  }

  private newSlot(): TransferSlot {
    const slot = new TransferSlot(this, this.device.bulkOut, BULK_TIMEOUT_MS, 'out');
    this.slots.push(slot);
    return slot;
  }

  private fail(err: Error): void {
    if (this.state === 'closing' || this.state === 'gone') return;
    // A gone device is reported by the backend ("USB device left"); only real failures warn here.
    if (err instanceof UsbDeviceGoneError) this.log.debug({ code: err.code }, 'USB transfers ended: device gone');
    else this.log.warn({ err }, 'USB transport failed; dropping the device');
    this.state = 'closing';
    this.closing = this.teardown(true);
    this.notifyClose(err);
  }

  private notifyClose(err: Error | undefined): void {
    if (this.closeNotified) return;
    this.closeNotified = true;
    this.sink?.onClose(err);
  }

  private isQuiet(): boolean {
    return this.inPending === 0 && this.outPending === 0;
  }

  private checkQuiet(): void {
    if (this.quiet && this.isQuiet()) {
      const resolve = this.quiet;
      this.quiet = undefined;
      resolve();
    }
  }

  private async teardown(afterFailure: boolean): Promise<void> {
    // After a failure, yield first: the failing transfer's callback returns before the others
    // are cancelled.
    if (afterFailure) await Promise.resolve();
    for (const slot of [...this.inSlots, ...this.slots]) {
      if (!slot.busy) continue;
      try {
        slot.transfer.cancel();
      } catch (err) {
        this.log.debug({ err }, 'cancelling a USB transfer failed');
      }
    }
    if (!this.isQuiet()) await this.waitQuiet();
    for (const slot of [...this.inSlots, ...this.slots]) slot.sever();
    await new Promise<void>((resolve) => {
      this.device.release((err) => {
        if (err) this.log.debug({ err }, 'releasing the USB device failed');
        resolve();
      });
    });
    this.state = 'gone';
  }

  /** Wait for the last IN and OUT callbacks; bounded, see POLL_END_TIMEOUT_MS. */
  private waitQuiet(): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.quiet = undefined;
        this.log.debug({ outPending: this.outPending, inPending: this.inPending }, 'gave up waiting for USB transfers');
        resolve();
      }, POLL_END_TIMEOUT_MS);
      timer.unref();
      this.quiet = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}
