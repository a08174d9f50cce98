import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../log.js';
import type { TransportSink } from '../mux/transport.js';
import { LIBUSB_ERROR_NO_DEVICE, LIBUSB_TRANSFER_CANCELLED, LIBUSB_TRANSFER_ERROR, LIBUSB_TRANSFER_NO_DEVICE, LIBUSB_TRANSFER_STALL, USB_MTU } from './constants.js';
import { UsbDeviceGoneError, UsbStallError, UsbTransferError } from './errors.js';
import { UsbTransport } from './usb-transport.js';
import type { BulkEndpoint, ClaimedInterface, OutTransfer } from './usb-transport.js';

type UsbError = Error & { errno: number };
type Callback = (error: Error | undefined, buf: Buffer, actual: number) => void;

/** What node-usb's LibUSBException looks like (it cannot be constructed from JS). */
function usbError(errno: number): UsbError {
  return Object.assign(new Error(`libusb ${errno}`), { errno });
}

/**
 * Callbacks of every fake transfer ever made, held strongly: node-usb keeps each Transfer's
 * callback in a global handle for as long as the Transfer lives (so the retention test below can
 * tell whether a callback keeps the transport reachable).
 */
const strongHandles: Callback[] = [];

class FakeTransfer implements OutTransfer {
  buffer: Buffer | undefined;
  submits = 0;
  cancelled = false;

  constructor(
    private readonly owner: FakeEndpoint,
    private readonly callback: Callback,
  ) {}

  submit(buffer: Buffer): void {
    if (this.owner.throwOnSubmit) throw this.owner.throwOnSubmit;
    if (this.buffer) throw new Error('Transfer is already active');
    this.buffer = buffer;
    this.submits++;
    this.owner.sent.push(buffer);
  }

  cancel(): boolean {
    if (!this.buffer) return false;
    this.cancelled = true;
    if (this.owner.cancelCompletes) {
      setImmediate(() => {
        this.finish(usbError(LIBUSB_TRANSFER_CANCELLED));
      });
    }
    return true;
  }

  /** Complete: `actual` bytes (default the whole buffer), or the error. */
  finish(error?: UsbError, actual?: number): void {
    const buf = this.buffer;
    if (!buf) throw new Error('not in flight');
    this.buffer = undefined;
    this.callback(error, buf, error ? 0 : (actual ?? buf.length));
  }
}

/** node-usb's In/OutEndpoint by hand: the test decides when transfers complete. */
class FakeEndpoint implements BulkEndpoint {
  readonly transfers: FakeTransfer[] = [];
  /** Every buffer submitted, in order. */
  readonly sent: Buffer[] = [];
  throwOnSubmit: Error | undefined;
  /** A cancelled transfer calls back (CANCELLED) on the next turn; false: never (a stuck URB). */
  cancelCompletes = true;

  makeTransfer(_timeout: number, callback: Callback): FakeTransfer {
    strongHandles.push(callback);
    const t = new FakeTransfer(this, callback);
    this.transfers.push(t);
    return t;
  }

  inFlight(): FakeTransfer[] {
    return this.transfers.filter((t) => t.buffer !== undefined);
  }

  /** Complete the oldest in-flight transfers, in submission order. */
  completeAll(error?: UsbError): void {
    for (const t of this.inFlight()) t.finish(error);
  }
}

interface Harness {
  transport: UsbTransport;
  bulkIn: FakeEndpoint;
  bulkOut: FakeEndpoint;
  sink: TransportSink & { data: Buffer[]; drains: number; closes: (Error | undefined)[] };
  releases: number;
}

function harness(options: { outHighWater?: number; maxPacket?: number } = {}): Harness {
  const bulkIn = new FakeEndpoint();
  const bulkOut = new FakeEndpoint();
  const h: Partial<Harness> & { releases: number } = { releases: 0 };
  const claimed: ClaimedInterface = {
    bulkIn,
    bulkOut,
    outMaxPacketSize: options.maxPacket ?? 512,
    release(done) {
      h.releases++;
      setImmediate(done);
    },
  };
  const sink = {
    data: [] as Buffer[],
    drains: 0,
    closes: [] as (Error | undefined)[],
    onData(chunk: Buffer) {
      sink.data.push(chunk);
    },
    onDrain() {
      sink.drains++;
    },
    onClose(err?: Error) {
      sink.closes.push(err);
    },
  };
  const transport = new UsbTransport(claimed, {
    log: silentLogger(),
    ...(options.outHighWater !== undefined && { outHighWater: options.outHighWater }),
  });
  return Object.assign(h, { transport, bulkIn, bulkOut, sink });
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('UsbTransport IN', () => {
  it('keeps 3 × 16384 in flight and hands each view over without copying; zero-length ones are dropped', () => {
    const { transport, bulkIn, sink } = harness();
    expect(transport.maxPacketSize).toBe(USB_MTU - 1); // full-size packets need no ZLP
    transport.start(sink);
    expect(bulkIn.inFlight().map((t) => t.buffer?.length)).toEqual([16384, 16384, 16384]);
    const first = bulkIn.transfers[0];
    const submitted = first?.buffer;
    submitted?.write('0000000000000014', 'hex');
    first?.finish(undefined, 8);
    expect(sink.data).toHaveLength(1);
    expect(sink.data[0]?.buffer).toBe(submitted?.buffer);
    expect(sink.data[0]?.toString('hex')).toBe('0000000000000014');
    first?.finish(undefined, 0);
    expect(sink.data).toHaveLength(1);
    expect(first?.submits).toBe(3);
    expect(bulkIn.inFlight()).toHaveLength(3);
  });

  it('reuses an IN buffer mux let go of during onData at once, a retained one once released, a kept one never', () => {
    const { transport, bulkIn } = harness();
    const chunks: Buffer[] = [];
    let decide: (chunk: Buffer) => void = () => undefined;
    transport.start({ onData: (chunk) => { chunks.push(chunk); decide(chunk); }, onDrain: () => undefined, onClose: () => undefined });
    const t = bulkIn.transfers[0];
    const memoryOf = (): ArrayBufferLike | undefined => t?.buffer?.buffer;
    // let go during onData: the same memory goes straight back in
    const a = memoryOf();
    t?.finish(undefined, 10);
    expect(memoryOf()).toBe(a);
    // a retained view: another buffer goes in; this one returns to the free list on release
    decide = (chunk) => { transport.recycler.retain(chunk.subarray(2, 6)); };
    t?.finish(undefined, 10);
    const retained = chunks[1];
    expect(memoryOf()).not.toBe(a);
    decide = () => undefined;
    const b = memoryOf();
    t?.finish(undefined, 10); // b let go: reused
    expect(memoryOf()).toBe(b);
    transport.recycler.release(retained?.subarray(2, 6) ?? Buffer.alloc(0));
    decide = (chunk) => { transport.recycler.retain(chunk); };
    t?.finish(undefined, 10); // b retained now: the next one comes from the free list, i.e. a
    expect(memoryOf()).toBe(a);
    // kept: never in flight again, even after a release
    decide = (chunk) => { transport.recycler.keep(chunk); };
    t?.finish(undefined, 10);
    const kept = chunks[4]?.buffer;
    transport.recycler.release(chunks[4] ?? Buffer.alloc(0));
    decide = () => undefined;
    for (let i = 0; i < 5; i++) {
      expect(memoryOf()).not.toBe(kept);
      t?.finish(undefined, 10);
    }
  });

  it('never puts a buffer in flight while a view of it is retained or kept, under any decisions (property)', () => {
    fc.assert(fc.property(
      fc.array(fc.record({ transfer: fc.nat(2), keep: fc.constantFrom('none', 'retain', 'keep'), releaseOldest: fc.boolean() }), { maxLength: 60 }),
      (ops) => {
        const { transport, bulkIn } = harness();
        const live: Buffer[] = [];
        const kept: Buffer[] = [];
        let decision = 'none';
        transport.start({
          onData: (chunk) => {
            chunk.fill(live.length + kept.length + 1);
            if (decision === 'retain') { transport.recycler.retain(chunk); live.push(Buffer.from(chunk)); live.push(chunk); }
            if (decision === 'keep') { transport.recycler.keep(chunk); kept.push(Buffer.from(chunk)); kept.push(chunk); }
          },
          onDrain: () => undefined,
          onClose: () => undefined,
        });
        for (const op of ops) {
          decision = op.keep;
          bulkIn.transfers[op.transfer]?.finish(undefined, 32);
          if (op.releaseOldest && live.length > 0) {
            const [copy, view] = live.splice(0, 2);
            expect(view?.equals(copy ?? Buffer.alloc(0))).toBe(true); // untouched while retained
            transport.recycler.release(view ?? Buffer.alloc(0));
          }
          const inFlight = new Set(bulkIn.inFlight().map((x) => x.buffer?.buffer));
          for (let i = 1; i < live.length; i += 2) expect(inFlight.has(live[i]?.buffer)).toBe(false);
          for (let i = 1; i < kept.length; i += 2) {
            expect(inFlight.has(kept[i]?.buffer)).toBe(false);
            expect(kept[i]?.equals(kept[i - 1] ?? Buffer.alloc(0))).toBe(true);
          }
        }
      },
    ));
  });

  it('honours rxTransfers / rxTransferSize', () => {
    const bulkIn = new FakeEndpoint();
    const t = new UsbTransport(
      { bulkIn, bulkOut: new FakeEndpoint(), outMaxPacketSize: 512, release: (d) => { d(); } },
      { log: silentLogger(), rxTransfers: 5, rxTransferSize: 49152 },
    );
    t.start({ onData: () => undefined, onDrain: () => undefined, onClose: () => undefined });
    expect(bulkIn.inFlight().map((x) => x.buffer?.length)).toEqual([49152, 49152, 49152, 49152, 49152]);
  });

  it('data handed over after close() started is dropped and nothing is resubmitted', async () => {
    const h = harness();
    h.transport.start(h.sink);
    h.bulkIn.cancelCompletes = false;
    const closing = h.transport.close();
    for (const t of h.bulkIn.inFlight()) t.finish(undefined, 100);
    await closing;
    expect(h.sink.data).toEqual([]);
    expect(h.bulkIn.transfers.map((t) => t.submits)).toEqual([1, 1, 1]);
    expect(h.releases).toBe(1);
  });
});

describe('UsbTransport OUT', () => {
  it('sends one transfer per packet and a ZLP after a multiple of wMaxPacketSize', () => {
    const { transport, bulkOut, sink } = harness();
    transport.start(sink);
    const a = Buffer.alloc(20);
    const b = Buffer.alloc(1024);
    const c = Buffer.alloc(513);
    transport.send(a);
    transport.send(b);
    transport.send(c);
    expect(bulkOut.sent.map((s) => s.length)).toEqual([20, 1024, 0, 513]);
    expect(bulkOut.sent[0]).toBe(a);
    expect(bulkOut.sent[1]).toBe(b);
  });

  it('allocPacket: large packets go into buffers that come back when their transfer is done; small ones do not', () => {
    const { transport, bulkOut } = harness();
    transport.start({ onData: () => undefined, onDrain: () => undefined, onClose: () => undefined });
    const big = transport.allocPacket(40000);
    expect(big).toHaveLength(40000);
    const memory = big.buffer;
    transport.send(big);
    // in flight: the next one is another buffer
    const other = transport.allocPacket(49151);
    expect(other.buffer).not.toBe(memory);
    transport.send(other);
    bulkOut.transfers[0]?.finish(undefined);
    // done: its memory is handed out again
    expect(transport.allocPacket(30000).buffer).toBe(memory);
    expect(transport.allocPacket(100).buffer).not.toBe(memory);
    expect(() => transport.allocPacket(49152)).not.toThrow();
  });

  it('reuses transfer slots once they complete', () => {
    const { transport, bulkOut, sink } = harness();
    transport.start(sink);
    for (let i = 0; i < 10; i++) {
      transport.send(Buffer.alloc(100));
      bulkOut.completeAll();
    }
    expect(bulkOut.transfers).toHaveLength(1);
    expect(bulkOut.transfers[0]?.submits).toBe(10);
  });

  it('returns false above the high-water mark and drains once below it', () => {
    const { transport, bulkOut, sink } = harness({ outHighWater: 1000 });
    transport.start(sink);
    expect(transport.send(Buffer.alloc(600))).toBe(true);
    expect(transport.send(Buffer.alloc(600))).toBe(false);
    expect(transport.send(Buffer.alloc(10))).toBe(false);
    expect(bulkOut.sent).toHaveLength(3);
    bulkOut.inFlight()[0]?.finish();
    expect(sink.drains).toBe(1);
    bulkOut.completeAll();
    expect(sink.drains).toBe(1);
  });

  it('keeps accounting exact under any mix of sends and completions (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.record({ send: fc.integer({ min: 1, max: 3000 }) }), fc.record({ complete: fc.nat(5) })), { maxLength: 60 }),
        (ops) => {
          const { transport, bulkOut, sink } = harness({ outHighWater: 4096 });
          transport.start(sink);
          const inflight = (): number => bulkOut.inFlight().reduce((n, t) => n + (t.buffer?.length ?? 0), 0);
          let owed = false;
          let drains = 0;
          const settle = (): void => {
            if (owed && inflight() <= 4096) {
              owed = false;
              drains++;
            }
          };
          for (const op of ops) {
            if ('send' in op) {
              const accepted = transport.send(Buffer.alloc(op.send));
              expect(accepted).toBe(inflight() <= 4096);
              if (!accepted) owed = true;
            } else {
              for (const t of bulkOut.inFlight().slice(0, op.complete)) {
                t.finish();
                settle();
              }
            }
          }
          for (const t of bulkOut.inFlight()) {
            t.finish();
            settle();
          }
          expect(sink.drains).toBe(drains);
          const zlps = ops.filter((o) => 'send' in o && o.send % 512 === 0).length;
          expect(bulkOut.sent.length).toBe(ops.filter((o) => 'send' in o).length + zlps);
          expect(owed).toBe(false);
          expect(sink.closes).toEqual([]);
        },
      ),
    );
  });
});

describe('UsbTransport endings', () => {
  it('a stalled IN ends the device once with UsbStallError; the other IN transfers are cancelled and waited for', async () => {
    const h = harness();
    h.transport.start(h.sink);
    h.bulkIn.transfers[0]?.finish(usbError(LIBUSB_TRANSFER_STALL));
    h.bulkIn.transfers[1]?.finish(usbError(LIBUSB_TRANSFER_ERROR));
    expect(h.sink.closes).toHaveLength(1);
    expect(h.sink.closes[0]).toBeInstanceOf(UsbStallError);
    expect(h.bulkIn.transfers.map((t) => t.submits)).toEqual([1, 1, 1]);
    await h.transport.close();
    expect(h.bulkIn.transfers[2]?.cancelled).toBe(true);
    expect(h.bulkIn.inFlight()).toEqual([]);
    expect(h.releases).toBe(1);
    expect(h.sink.closes).toHaveLength(1);
  });

  it('a resubmit that throws on unplug ends the device once, and teardown does not wait for it', async () => {
    const h = harness();
    h.transport.start(h.sink);
    h.bulkIn.throwOnSubmit = usbError(LIBUSB_ERROR_NO_DEVICE);
    h.bulkIn.transfers[0]?.finish(undefined, 16);
    expect(h.sink.data).toHaveLength(1);
    expect(h.sink.closes.map((e) => e?.constructor)).toEqual([UsbDeviceGoneError]);
    // The other two come back cancelled on the next turn; release follows without the give-up timer.
    for (let k = 0; k < 5 && h.releases === 0; k++) await tick();
    expect(h.releases).toBe(1);
  });

  it('NO_DEVICE on OUT is UsbDeviceGoneError; later sends are dropped', async () => {
    const h = harness();
    h.transport.start(h.sink);
    h.transport.send(Buffer.alloc(10));
    h.transport.send(Buffer.alloc(10));
    h.bulkOut.completeAll(usbError(LIBUSB_TRANSFER_NO_DEVICE));
    expect(h.sink.closes.map((e) => e?.constructor)).toEqual([UsbDeviceGoneError]);
    expect(h.transport.send(Buffer.alloc(10))).toBe(false);
    expect(h.bulkOut.sent).toHaveLength(2);
    await h.transport.close();
    expect(h.releases).toBe(1);
  });

  it('other OUT errors are UsbTransferError carrying the libusb status', () => {
    const h = harness();
    h.transport.start(h.sink);
    h.transport.send(Buffer.alloc(10));
    h.bulkOut.completeAll(usbError(LIBUSB_TRANSFER_ERROR));
    const err = h.sink.closes[0];
    expect(err).toBeInstanceOf(UsbTransferError);
    expect(err instanceof UsbTransferError && err.libusbErrno).toBe(LIBUSB_TRANSFER_ERROR);
  });

  it('close() stops the poll, cancels OUT, waits for every callback, then releases; onClose() once', async () => {
    const h = harness();
    h.transport.start(h.sink);
    h.transport.send(Buffer.alloc(100));
    h.transport.send(Buffer.alloc(512));
    const closing = h.transport.close();
    expect(h.transport.close()).toBe(closing);
    expect(h.bulkIn.transfers.every((t) => t.cancelled)).toBe(true);
    expect(h.bulkOut.transfers.every((t) => t.cancelled)).toBe(true);
    expect(h.releases).toBe(0);
    await closing;
    expect(h.bulkIn.inFlight()).toEqual([]);
    expect(h.bulkOut.inFlight()).toEqual([]);
    expect(h.releases).toBe(1);
    expect(h.sink.closes).toEqual([undefined]);
  });

  it('deviceGone() ends with UsbDeviceGoneError once, whatever follows', async () => {
    const h = harness();
    h.transport.start(h.sink);
    h.transport.deviceGone();
    h.transport.deviceGone();
    h.bulkIn.transfers[0]?.finish(usbError(LIBUSB_TRANSFER_NO_DEVICE));
    await h.transport.close();
    expect(h.sink.closes).toHaveLength(1);
    expect(h.sink.closes[0]).toBeInstanceOf(UsbDeviceGoneError);
    expect(h.releases).toBe(1);
  });

  it('a submit that throws fails the device after send() returns, not inside it', async () => {
    const h = harness();
    h.transport.start(h.sink);
    h.bulkOut.throwOnSubmit = usbError(LIBUSB_ERROR_NO_DEVICE);
    h.transport.send(Buffer.alloc(10));
    expect(h.sink.closes).toEqual([]);
    await tick();
    expect(h.sink.closes[0]).toBeInstanceOf(UsbDeviceGoneError);
    await h.transport.close();
    expect(h.releases).toBe(1);
  });

  it('close() gives up waiting for a transfer libusb never completes', async () => {
    const h = harness();
    h.bulkIn.cancelCompletes = false;
    h.transport.start(h.sink);
    const t0 = Date.now();
    await h.transport.close();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    expect(h.releases).toBe(1);
  });

  it('close() before start() releases without polling', async () => {
    const h = harness();
    await h.transport.close();
    expect(h.bulkIn.transfers).toEqual([]);
    expect(h.releases).toBe(1);
  });
});

describe('UsbTransport memory', () => {
  it('once closed, nothing is reachable from the transfer callbacks node-usb keeps (cut links), and late callbacks are ignored', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const handlesBefore = strongHandles.length;
    const refs: WeakRef<object>[] = [];
    const cycle = async (): Promise<void> => {
      const h = harness();
      h.transport.start(h.sink);
      h.transport.send(Buffer.alloc(100));
      h.bulkIn.transfers[0]?.finish(undefined, 8);
      h.transport.deviceGone();
      await h.transport.close();
      refs.push(new WeakRef(h.transport), new WeakRef(h.sink));
    };
    for (let n = 0; n < 5; n++) await cycle();
    // 3 IN + 1 OUT callbacks per transport are still held, as node-usb's global handles would.
    expect(strongHandles.length - handlesBefore).toBe(20);
    for (const late of strongHandles.slice(handlesBefore)) late(undefined, Buffer.alloc(4), 4);
    for (let round = 0; round < 5 && refs.some((r) => r.deref() !== undefined); round++) {
      await tick();
      gc();
    }
    expect(refs.filter((r) => r.deref() !== undefined)).toHaveLength(0);
  });
});
