/**
 * UsbTransport: mux's `Transport` over one claimed usbmux interface (node-usb bulk endpoints).
 *
 *            start(sink)                    transfer error / stall / NO_DEVICE / deviceGone()
 *   idle ─────────────────► polling ───────────────────────────────────────┐  sink.onClose(err) now
 *     │                        │ close()                                    ▼
 *     └── close() ─────────────┴─────────────────────────────────────► closing ──► gone
 *                                                   stopPoll + wait 'end', cancel OUT + wait callbacks,
 *                                                   release interface, close handle; close() resolves
 *                                                   (orderly close: sink.onClose() once here)
 *
 * IN: node-usb's `InEndpoint.startPoll(n, size)` keeps n bulk-IN transfers in flight. Checked in
 * node_modules/usb/dist/usb/endpoint.js (usb@2.18.0): every (re)submit passes a fresh
 * `Buffer.alloc(pollTransferSize)` and `data` carries `buffer.slice(0, actualLength)` of that
 * buffer, so the view is never written again by node-usb: we hand it to mux without copying.
 *
 * OUT: one transfer per mux packet (the device expects packet boundaries = transfer boundaries),
 * plus a zero-length transfer when the length is a multiple of wMaxPacketSize. Transfers come from
 * a small pool of reusable slots (one node-usb Transfer and one bound callback each, made once),
 * so sending allocates nothing of ours per packet. In-flight OUT bytes above the high-water mark
 * make `send` return false; `onDrain` follows when they fall back under it.
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
  LIBUSB_TRANSFER_NO_DEVICE,
  LIBUSB_TRANSFER_STALL,
  NUM_RX_LOOPS,
  OUT_HIGH_WATER,
  POLL_END_TIMEOUT_MS,
  USB_MRU,
  USB_MTU,
} from './constants.js';
import { UsbDeviceGoneError, UsbStallError, UsbTransferError, libusbErrno } from './errors.js';

/** The part of node-usb's InEndpoint the transport uses (tests pass a fake). */
export interface BulkIn {
  readonly pollActive: boolean;
  startPoll(nTransfers: number, transferSize: number): unknown;
  stopPoll(): void;
  on(event: 'data', listener: (chunk: Buffer) => void): unknown;
  on(event: 'error', listener: (err: unknown) => void): unknown;
  on(event: 'end', listener: () => void): unknown;
  removeListener(event: 'data', listener: (chunk: Buffer) => void): unknown;
  removeListener(event: 'error', listener: (err: unknown) => void): unknown;
  removeListener(event: 'end', listener: () => void): unknown;
}

/** One node-usb Transfer: reusable once its callback has run. */
export interface OutTransfer {
  submit(buffer: Buffer): unknown;
  cancel(): unknown;
}

/** The part of node-usb's OutEndpoint the transport uses (tests pass a fake). */
export interface BulkOut {
  makeTransfer(timeout: number, callback: (error: Error | undefined, buffer: Buffer, actualLength: number) => void): OutTransfer;
}

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

/** One reusable OUT transfer with its callback, made once and recycled. */
class OutSlot {
  readonly transfer: OutTransfer;
  /** Bytes of the packet in flight in this slot. */
  length = 0;
  busy = false;

  constructor(owner: UsbTransport, bulkOut: BulkOut) {
    this.transfer = bulkOut.makeTransfer(BULK_TIMEOUT_MS, (error: Error | undefined) => {
      owner.outDone(this, error);
    });
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
   * wMaxPacketSize) would need a zero-length transfer after it; 49151 never does. Under the
   * umockdev bench this cut host→device OUT transfers per MiB from 47 to 33 (+7% MB/s, −8% daemon
   * CPU per GB); on real USB it saves a ZLP per bulk packet.
   */
  readonly maxPacketSize = USB_MTU - 1;

  private state: State = 'idle';
  private sink: TransportSink | undefined;
  private readonly log: Logger;
  private readonly rxTransfers: number;
  private readonly rxTransferSize: number;
  private readonly highWater: number;
  /** Every OUT slot ever made; the free ones are also in `freeSlots`. */
  private readonly slots: OutSlot[] = [];
  private readonly freeSlots: OutSlot[] = [];
  /** Bytes handed to libusb on OUT and not yet completed. */
  private outBytes = 0;
  /** OUT transfers (packets and ZLPs) submitted and not yet completed. */
  private outPending = 0;
  /** `send` returned false; `onDrain` is owed. */
  private drainOwed = false;
  private pollStarted = false;
  private pollEnded = false;
  private closeNotified = false;
  private closing: Promise<void> | undefined;
  /** Resolves teardown's wait once IN polling ended and OUT is idle. */
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
    const bulkIn = this.device.bulkIn;
    bulkIn.on('data', this.onInData);
    bulkIn.on('error', this.onInError);
    bulkIn.on('end', this.onInEnd);
    try {
      bulkIn.startPoll(this.rxTransfers, this.rxTransferSize);
      this.pollStarted = true;
    } catch (err) {
      this.fail(transferFailure('in', err));
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

  /** Completion of one OUT slot; called by the slot's callback. */
  outDone(slot: OutSlot, error: Error | undefined): void {
    this.outBytes -= slot.length;
    this.outPending--;
    slot.length = 0;
    slot.busy = false;
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
    this.outBytes += buf.length;
    this.outPending++;
    try {
      slot.transfer.submit(buf);
    } catch (err) {
      slot.busy = false;
      slot.length = 0;
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

  private newSlot(): OutSlot {
    const slot = new OutSlot(this, this.device.bulkOut);
    this.slots.push(slot);
    return slot;
  }

  // Listeners are arrow fields: made once per transport, never per transfer.
  private readonly onInData = (chunk: Buffer): void => {
    if (this.state !== 'polling' || chunk.length === 0) return;
    if (this.log.isLevelEnabled('trace')) this.log.trace({ len: chunk.length }, 'bulk IN');
    this.sink?.onData(chunk);
  };

  private readonly onInError = (err: unknown): void => {
    // node-usb stops polling by itself after an error; 'end' follows when all transfers are back.
    if (this.state === 'polling') this.fail(transferFailure('in', err));
  };

  private readonly onInEnd = (): void => {
    this.pollEnded = true;
    this.checkQuiet();
  };

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
    return (!this.pollStarted || this.pollEnded) && this.outPending === 0;
  }

  private checkQuiet(): void {
    if (this.quiet && this.isQuiet()) {
      const resolve = this.quiet;
      this.quiet = undefined;
      resolve();
    }
  }

  private async teardown(afterFailure: boolean): Promise<void> {
    // After a failure, yield first: when node-usb reports an IN error it calls stopPoll() itself
    // right after emitting, and a stopPoll() from inside our listener would make that one throw.
    if (afterFailure) await Promise.resolve();
    const bulkIn = this.device.bulkIn;
    if (this.pollStarted && bulkIn.pollActive) {
      try {
        bulkIn.stopPoll();
      } catch (err) {
        this.log.debug({ err }, 'stopPoll failed');
      }
    }
    for (const slot of this.slots) {
      if (!slot.busy) continue;
      try {
        slot.transfer.cancel();
      } catch (err) {
        this.log.debug({ err }, 'cancelling an OUT transfer failed');
      }
    }
    if (!this.isQuiet()) await this.waitQuiet();
    bulkIn.removeListener('data', this.onInData);
    bulkIn.removeListener('error', this.onInError);
    bulkIn.removeListener('end', this.onInEnd);
    await new Promise<void>((resolve) => {
      this.device.release((err) => {
        if (err) this.log.debug({ err }, 'releasing the USB device failed');
        resolve();
      });
    });
    this.state = 'gone';
  }

  /** Wait for IN 'end' and the last OUT callback; bounded, see POLL_END_TIMEOUT_MS. */
  private waitQuiet(): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.quiet = undefined;
        this.log.debug({ outPending: this.outPending, pollEnded: this.pollEnded }, 'gave up waiting for USB transfers');
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
