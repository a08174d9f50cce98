/**
 * MemoryTransportPair: an in-process "USB cable". The host end is a `Transport` (what the mux
 * engine drives); the device end feeds an emulated phone.
 *
 *   host mux ──send(packet)──> [ split like libusb: hostMaxTransfer, splitAt ] ──> device.receive()
 *   host sink <──onData──────  [ split like USB_MRU: maxTransfer, splitAt ]    <── link.sendToHost()
 *
 *   Link states:   [ OPEN ] --unplug(err) / close()--> [ CLOSED ]   (sink.onClose exactly once)
 *
 * Delivery is asynchronous like USB (never re-entrant), in order across both directions, and
 * batched: one `setImmediate` per turn drains everything queued before it ran (no timers at all
 * when `latencyMs` is 0). Host `send()` returns false while more than `outHighWater` bytes are
 * waiting for the device; `onDrain` follows once they fall back to or below it.
 */
import type { Transport, TransportSink } from '../mux/transport.js';
import type { HostLink } from './device.js';
import { VirtualDeviceUnpluggedError } from './errors.js';

/** USB_MRU: the largest IN transfer usbmuxd posts. */
export const USB_MRU = 16384;
/** USB_MTU: the largest OUT packet usbmuxd sends. */
export const USB_MTU = 49152;

export type LinkDirection = 'to-device' | 'to-host';

export interface MemoryTransportOptions {
  /** Device→host transfers larger than this are split (default 16384 = USB_MRU). */
  readonly maxTransfer?: number;
  /** Host→device packets are split into chunks of this size, like libusb (default 16384). */
  readonly hostMaxTransfer?: number;
  /** Extra split offsets (0 < offset < length) for a transfer of `length` bytes. */
  readonly splitAt?: (length: number, direction: LinkDirection) => readonly number[];
  /** Delay of every transfer (default 0: delivered on the next turn). */
  readonly latencyMs?: number;
  /** Host `send()` returns false above this many undelivered bytes (default 4 × 49152). */
  readonly outHighWater?: number;
  /** `Transport.maxPacketSize` (default 49152 = USB_MTU). */
  readonly maxPacketSize?: number;
}

/** The device end of the pair: an EmulatedIPhone or any fake with the same three calls. */
export interface DeviceEnd {
  connect(link: HostLink): void;
  receive(transfer: Buffer): void;
  disconnect(): void;
}

interface Delivery {
  readonly toDevice: boolean;
  readonly data: Buffer;
  readonly due: number;
}

export interface MemoryLinkStats {
  transfersToDevice: number;
  bytesToDevice: number;
  transfersToHost: number;
  bytesToHost: number;
  /** Times host `send()` returned false. */
  highWaterHits: number;
}

export class MemoryTransportPair {
  /** The end the host mux engine uses. */
  readonly host: Transport;
  readonly stats: MemoryLinkStats = { transfersToDevice: 0, bytesToDevice: 0, transfersToHost: 0, bytesToHost: 0, highWaterHits: 0 };

  private readonly maxTransfer: number;
  private readonly hostMaxTransfer: number;
  private readonly splitAt: ((length: number, direction: LinkDirection) => readonly number[]) | undefined;
  private readonly latencyMs: number;
  private readonly outHighWater: number;
  private sink: TransportSink | undefined;
  private queue: Delivery[] = [];
  private scheduled = false;
  private closed = false;
  /** undefined = orderly; set when unplugged. Delivered to the sink once. */
  private closeError: Error | undefined;
  private closeDelivered = false;
  private closeWaiters: (() => void)[] = [];
  private undeliveredOut = 0;
  private needDrain = false;
  private readonly runBound = (): void => {
    this.run();
  };

  constructor(
    private readonly device: DeviceEnd,
    options: MemoryTransportOptions = {},
  ) {
    this.maxTransfer = options.maxTransfer ?? USB_MRU;
    this.hostMaxTransfer = options.hostMaxTransfer ?? USB_MRU;
    this.splitAt = options.splitAt;
    this.latencyMs = options.latencyMs ?? 0;
    this.outHighWater = options.outHighWater ?? 4 * USB_MTU;
    const maxPacketSize = options.maxPacketSize ?? USB_MTU;
    this.host = {
      maxPacketSize,
      start: (sink) => {
        this.start(sink);
      },
      send: (packet) => this.sendToDevice(packet),
      close: () => this.close(),
    };
    device.connect({
      sendToHost: (transfer) => {
        this.sendToHost(transfer);
      },
    });
  }

  /** True once unplugged or closed. */
  get isClosed(): boolean {
    return this.closed;
  }

  /** Bytes the host sent that the device has not received yet. */
  get pendingToDevice(): number {
    return this.undeliveredOut;
  }

  /**
   * Pull the cable: the host sink gets onClose(err) exactly once (asynchronously), queued and
   * later transfers are dropped, and the device is told at once.
   */
  unplug(err: Error = new VirtualDeviceUnpluggedError()): void {
    this.shutDown(err);
  }

  /** A method, not a field read, because delivery callbacks may close the link mid-batch. */
  private linkClosed(): boolean {
    return this.closed;
  }

  private start(sink: TransportSink): void {
    this.sink = sink;
    if (this.closed) this.schedule();
    else if (this.queue.length > 0) this.schedule();
  }

  private sendToDevice(packet: Buffer): boolean {
    if (this.closed) return true;
    this.enqueue(true, packet, this.hostMaxTransfer, 'to-device');
    this.undeliveredOut += packet.length;
    if (this.undeliveredOut > this.outHighWater) {
      this.needDrain = true;
      this.stats.highWaterHits++;
      return false;
    }
    return true;
  }

  private sendToHost(transfer: Buffer): void {
    if (this.closed) return;
    this.enqueue(false, transfer, this.maxTransfer, 'to-host');
  }

  private close(): Promise<void> {
    this.shutDown(undefined);
    return new Promise((resolve) => {
      if (this.closeDelivered || this.sink === undefined) resolve();
      else this.closeWaiters.push(resolve);
    });
  }

  private shutDown(err: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.closeError = err;
    this.queue = [];
    this.undeliveredOut = 0;
    this.device.disconnect();
    if (this.sink !== undefined) this.schedule();
  }

  /** Cut `data` at the forced offsets and at every `max` bytes; queue the pieces. */
  private enqueue(toDevice: boolean, data: Buffer, max: number, direction: LinkDirection): void {
    const due = this.latencyMs > 0 ? performance.now() + this.latencyMs : 0;
    if (this.splitAt === undefined) {
      this.pushPieces(toDevice, data, 0, data.length, max, due);
    } else {
      const cuts = this.splitAt(data.length, direction)
        .filter((c) => c > 0 && c < data.length)
        .sort((a, b) => a - b);
      let start = 0;
      for (const end of cuts) {
        if (end <= start) continue; // duplicate cut
        this.pushPieces(toDevice, data, start, end, max, due);
        start = end;
      }
      this.pushPieces(toDevice, data, start, data.length, max, due);
    }
    this.schedule();
  }

  /** Queue `data[start, end)` in pieces of at most `max` bytes (a zero-length transfer stays one). */
  private pushPieces(toDevice: boolean, data: Buffer, start: number, end: number, max: number, due: number): void {
    if (start === end) {
      if (data.length === 0) this.queue.push({ toDevice, data, due });
      return;
    }
    if (start === 0 && end === data.length && end <= max) {
      this.queue.push({ toDevice, data, due }); // common case: one transfer, no view
      return;
    }
    for (let at = start; at < end; at += max) this.queue.push({ toDevice, data: data.subarray(at, Math.min(at + max, end)), due });
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    const head = this.queue[0];
    const wait = head === undefined || this.latencyMs === 0 ? 0 : head.due - performance.now();
    if (wait > 0) setTimeout(this.runBound, wait);
    else setImmediate(this.runBound);
  }

  /** Deliver everything that was due when this turn began, in order. */
  private run(): void {
    this.scheduled = false;
    if (this.closed) {
      this.deliverClose();
      return;
    }
    const batch = this.queue;
    const now = this.latencyMs > 0 ? performance.now() : 0;
    let taken = 0;
    this.queue = [];
    for (; taken < batch.length && !this.linkClosed(); taken++) {
      const item = batch[taken];
      if (item === undefined || item.due > now) break;
      if (!item.toDevice && this.sink === undefined) break; // nobody listening yet: hold
      this.deliver(item);
    }
    if (this.linkClosed()) {
      this.deliverClose();
      return;
    }
    if (taken < batch.length) this.queue = batch.slice(taken).concat(this.queue);
    if (this.needDrain && this.undeliveredOut <= this.outHighWater) {
      this.needDrain = false;
      this.sink?.onDrain();
    }
    if (this.queue.length > 0 && (this.sink !== undefined || this.queue[0]?.toDevice === true)) this.schedule();
  }

  private deliver(item: Delivery): void {
    if (item.toDevice) {
      this.undeliveredOut -= item.data.length;
      this.stats.transfersToDevice++;
      this.stats.bytesToDevice += item.data.length;
      this.device.receive(item.data);
    } else {
      this.stats.transfersToHost++;
      this.stats.bytesToHost += item.data.length;
      this.sink?.onData(item.data);
    }
  }

  private deliverClose(): void {
    if (this.closeDelivered || this.sink === undefined) return;
    this.closeDelivered = true;
    this.sink.onClose(this.closeError);
    for (const resolve of this.closeWaiters.splice(0)) resolve();
  }
}
