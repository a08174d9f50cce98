import { describe, expect, it } from 'vitest';
import type { TransportSink } from '../mux/transport.js';
import type { HostLink } from './device.js';
import { MemoryTransportPair } from './memory-transport.js';
import type { DeviceEnd, MemoryTransportOptions } from './memory-transport.js';

/** A device end that records transfers and can send on demand. */
class FakeDevice implements DeviceEnd {
  link: HostLink | undefined;
  received: Buffer[] = [];
  disconnects = 0;
  /** Called on each receive; lets a test answer from inside delivery. */
  onReceive: ((t: Buffer) => void) | undefined;
  connect(link: HostLink): void {
    this.link = link;
  }
  receive(transfer: Buffer): void {
    this.received.push(transfer);
    this.onReceive?.(transfer);
  }
  disconnect(): void {
    this.disconnects++;
  }
  send(transfer: Buffer): void {
    this.link?.sendToHost(transfer);
  }
}

function sink(): TransportSink & { data: Buffer[]; closes: (Error | undefined)[]; drains: number } {
  const s = {
    data: [] as Buffer[],
    closes: [] as (Error | undefined)[],
    drains: 0,
    onData(chunk: Buffer) {
      s.data.push(chunk);
    },
    onDrain() {
      s.drains++;
    },
    onClose(err?: Error) {
      s.closes.push(err);
    },
  };
  return s;
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function setup(options: MemoryTransportOptions = {}): { dev: FakeDevice; pair: MemoryTransportPair; host: ReturnType<typeof sink> } {
  const dev = new FakeDevice();
  const pair = new MemoryTransportPair(dev, options);
  const host = sink();
  pair.host.start(host);
  return { dev, pair, host };
}

const seqBytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => i & 0xff));

describe('MemoryTransportPair', () => {
  it('delivers asynchronously and in order, batched in one turn', async () => {
    const { dev, pair, host } = setup();
    pair.host.send(Buffer.from('a'));
    pair.host.send(Buffer.from('b'));
    dev.send(Buffer.from('x'));
    expect(dev.received).toEqual([]);
    expect(host.data).toEqual([]);
    await tick();
    expect(dev.received.map(String)).toEqual(['a', 'b']);
    expect(host.data.map(String)).toEqual(['x']);
  });

  it('never re-enters: a reply sent during delivery arrives on a later turn', async () => {
    const { dev, pair, host } = setup();
    dev.onReceive = (t) => {
      dev.send(Buffer.from(`re:${t.toString()}`));
      expect(host.data).toEqual([]);
    };
    pair.host.send(Buffer.from('q'));
    await tick();
    expect(host.data).toEqual([]);
    await tick();
    expect(host.data.map(String)).toEqual(['re:q']);
  });

  it('splits device→host transfers at maxTransfer (USB_MRU by default)', async () => {
    const { dev, host } = setup();
    const big = seqBytes(40000);
    dev.send(big);
    await tick();
    expect(host.data.map((b) => b.length)).toEqual([16384, 16384, 7232]);
    expect(Buffer.concat(host.data)).toEqual(big);
  });

  it('splits host→device packets at hostMaxTransfer like libusb', async () => {
    const { dev, pair } = setup({ hostMaxTransfer: 1000 });
    pair.host.send(seqBytes(2500));
    await tick();
    expect(dev.received.map((b) => b.length)).toEqual([1000, 1000, 500]);
  });

  it('splitAt forces extra cuts in both directions, combined with the size limit', async () => {
    const cuts: [number, string][] = [];
    const { dev, pair, host } = setup({
      maxTransfer: 100,
      splitAt: (length, direction) => {
        cuts.push([length, direction]);
        return [3, 0, 250, 3, 999];
      },
    });
    dev.send(seqBytes(300));
    pair.host.send(seqBytes(10));
    await tick();
    expect(host.data.map((b) => b.length)).toEqual([3, 100, 100, 47, 50]);
    expect(Buffer.concat(host.data)).toEqual(seqBytes(300));
    expect(dev.received.map((b) => b.length)).toEqual([3, 7]);
    expect(cuts).toEqual([
      [300, 'to-host'],
      [10, 'to-device'],
    ]);
  });

  it('send returns false above outHighWater and onDrain follows once delivered', async () => {
    const { pair, host } = setup({ outHighWater: 100 });
    expect(pair.host.send(Buffer.alloc(60))).toBe(true);
    expect(pair.host.send(Buffer.alloc(40))).toBe(true);
    expect(pair.host.send(Buffer.alloc(1))).toBe(false);
    expect(pair.pendingToDevice).toBe(101);
    expect(host.drains).toBe(0);
    await tick();
    expect(host.drains).toBe(1);
    expect(pair.pendingToDevice).toBe(0);
    expect(pair.stats.highWaterHits).toBe(1);
  });

  it('unplug: onClose(err) exactly once, queued and later transfers dropped, device told', async () => {
    const { dev, pair, host } = setup();
    pair.host.send(Buffer.from('lost'));
    dev.send(Buffer.from('lost too'));
    pair.unplug();
    pair.unplug(new Error('again'));
    expect(dev.disconnects).toBe(1);
    dev.send(Buffer.from('after'));
    expect(pair.host.send(Buffer.from('after'))).toBe(true);
    await tick();
    await tick();
    expect(host.closes).toHaveLength(1);
    expect(host.closes[0]).toMatchObject({ code: 'MUXD_ERR_VIRTUAL_UNPLUGGED' });
    expect(dev.received).toEqual([]);
    expect(host.data).toEqual([]);
    await pair.host.close();
    expect(host.closes).toHaveLength(1);
  });

  it('unplug with a given error passes it through', async () => {
    const { pair, host } = setup();
    const err = new Error('LIBUSB_ERROR_NO_DEVICE');
    pair.unplug(err);
    await tick();
    expect(host.closes).toEqual([err]);
  });

  it('close() is orderly (onClose without error) and resolves after it', async () => {
    const { dev, pair, host } = setup();
    await pair.host.close();
    expect(host.closes).toEqual([undefined]);
    expect(dev.disconnects).toBe(1);
    expect(pair.isClosed).toBe(true);
  });

  it('unplug mid-batch stops delivery of the rest', async () => {
    const { dev, pair, host } = setup();
    dev.onReceive = () => {
      pair.unplug();
    };
    pair.host.send(Buffer.from('1'));
    pair.host.send(Buffer.from('2'));
    await tick();
    await tick();
    expect(dev.received.map(String)).toEqual(['1']);
    expect(host.closes).toHaveLength(1);
  });

  it('holds device→host transfers until the host starts', async () => {
    const dev = new FakeDevice();
    const pair = new MemoryTransportPair(dev);
    dev.send(Buffer.from('early'));
    await tick();
    const host = sink();
    pair.host.start(host);
    await tick();
    expect(host.data.map(String)).toEqual(['early']);
  });

  it('latencyMs delays delivery', async () => {
    const { pair, dev } = setup({ latencyMs: 20 });
    const sent = performance.now();
    pair.host.send(Buffer.from('slow'));
    await tick();
    expect(dev.received).toEqual([]);
    while (dev.received.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(performance.now() - sent).toBeGreaterThanOrEqual(19);
  });

  it('exposes maxPacketSize (USB_MTU by default)', () => {
    expect(setup().pair.host.maxPacketSize).toBe(49152);
    expect(setup({ maxPacketSize: 1000 }).pair.host.maxPacketSize).toBe(1000);
  });
});
