import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { appleKeyboard, iphone, nonApple, visionProLike } from '../../test/support/usb-descriptors.js';
import { FakeDevice, usbError } from '../../test/support/usb-fake-device.js';
import { silentLogger } from '../log.js';
import type { UsbDeviceInfo } from '../devices/api.js';
import type { Transport } from '../mux/transport.js';
import { UsbBackend } from './backend.js';
import type { BusDevice, BusListener, UsbBus } from './bus.js';
import { LIBUSB_ERROR_BUSY, LIBUSB_ERROR_IO } from './constants.js';
import { UsbDeviceGoneError } from './errors.js';

class FakeBus implements UsbBus {
  unavailable = false;
  hotplug = true;
  devices: FakeDevice[] = [];
  unrefs = 0;
  listCalls = 0;
  listFailures = 0;
  private readonly events = new EventEmitter();

  list(): BusDevice[] {
    this.listCalls++;
    if (this.listFailures > 0) {
      this.listFailures--;
      throw usbError(LIBUSB_ERROR_IO);
    }
    return [...this.devices];
  }

  hotplugSupported(): boolean {
    return this.hotplug;
  }

  on(event: 'attach' | 'detach', listener: BusListener): void {
    this.events.on(event, listener);
  }

  off(event: 'attach' | 'detach', listener: BusListener): void {
    this.events.off(event, listener);
  }

  unrefHotplug(): void {
    this.unrefs++;
  }

  listeners(): number {
    return this.events.listenerCount('attach') + this.events.listenerCount('detach');
  }

  /** Appears in the list; raises `attach` when `event`. */
  plug(device: FakeDevice, event = true): void {
    this.devices.push(device);
    if (event) this.events.emit('attach', device);
  }

  unplug(device: FakeDevice, event = true): void {
    this.devices = this.devices.filter((d) => d !== device);
    if (event) this.events.emit('detach', device);
  }
}

interface Attached {
  readonly transport: Transport;
  readonly info: UsbDeviceInfo;
  closes: (Error | undefined)[];
}

function setup(bus: FakeBus, options: { hotplug?: boolean; pollIntervalMs?: number } = {}): { backend: UsbBackend; attached: Attached[] } {
  const attached: Attached[] = [];
  const backend = new UsbBackend({
    log: silentLogger(),
    bus,
    deviceMode: 1,
    ...options,
    onAttach(transport, info) {
      const entry: Attached = { transport, info, closes: [] };
      transport.start({
        onData: () => undefined,
        onDrain: () => undefined,
        onClose: (err) => entry.closes.push(err),
      });
      attached.push(entry);
    },
  });
  backends.push(backend);
  return { backend, attached };
}

const backends: UsbBackend[] = [];
afterEach(async () => {
  await Promise.all(backends.splice(0).map((b) => b.stop()));
});

async function until(what: string, check: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('UsbBackend', () => {
  it('enumerates at start and attaches an iPhone with its UsbDeviceInfo; watches hotplug, unref’d', async () => {
    const bus = new FakeBus();
    bus.plug(new FakeDevice(iphone(), 1), false);
    const { backend, attached } = setup(bus);
    backend.start();
    await until('attach', () => attached.length === 1);
    expect(attached[0]?.info).toEqual({
      connectionType: 'USB',
      serial: '00008030-001A2B3C4D5E802E',
      usbSerial: '00008030001A2B3C4D5E802E',
      productId: 0x12a8,
      locationId: 0x10002,
      speed: 480_000_000,
    });
    expect(attached[0]?.transport.maxPacketSize).toBe(49151);
    expect(bus.listeners()).toBe(2);
    expect(bus.unrefs).toBe(1);
  });

  it('opens nothing that is not a usbmux device, and takes a 0x12B1 by its interface', async () => {
    const bus = new FakeBus();
    const keyboard = new FakeDevice(appleKeyboard(), 1, 3);
    const other = new FakeDevice(nonApple(), 1, 4);
    const vision = new FakeDevice(visionProLike(), 1, 5);
    for (const d of [keyboard, other, vision]) bus.plug(d, false);
    const { backend, attached } = setup(bus);
    backend.start();
    await until('attach', () => attached.length === 1);
    expect(attached[0]?.info.productId).toBe(0x12b1);
    expect(keyboard.controls).toEqual([]);
    expect(other.controls).toEqual([]);
    expect(keyboard.opened || other.opened).toBe(false);
  });

  it('hotplug: arrival attaches; departure ends the transport with UsbDeviceGoneError once', async () => {
    const bus = new FakeBus();
    const { backend, attached } = setup(bus);
    backend.start();
    const dev = new FakeDevice(iphone(), 1);
    bus.plug(dev);
    await until('attach', () => attached.length === 1);
    bus.unplug(dev);
    bus.unplug(dev);
    await until('close', () => attached[0]?.closes.length === 1);
    expect(attached[0]?.closes[0]).toBeInstanceOf(UsbDeviceGoneError);
    await until('handle closed', () => dev.closes === 1);
    expect(dev.claimed).toEqual([]);
  });

  it('a device that leaves while it is being opened is released and never announced', async () => {
    const bus = new FakeBus();
    const { backend, attached } = setup(bus);
    backend.start();
    const dev = new FakeDevice(iphone(), 1);
    bus.plug(dev);
    bus.unplug(dev);
    await until('handle closed', () => dev.closes === 1);
    expect(attached).toEqual([]);
  });

  it('hotplug off (-n): arrivals after the scan are ignored, departures still handled, rediscover() scans', async () => {
    const bus = new FakeBus();
    const first = new FakeDevice(iphone(), 1, 2);
    bus.plug(first, false);
    const { backend, attached } = setup(bus, { hotplug: false });
    backend.start();
    await until('first attach', () => attached.length === 1);
    const second = new FakeDevice(iphone(), 1, 3);
    bus.plug(second);
    await new Promise((r) => setTimeout(r, 30));
    expect(attached).toHaveLength(1);
    expect(second.opened).toBe(false);
    bus.unplug(first);
    await until('gone', () => attached[0]?.closes.length === 1);
    backend.rediscover();
    await until('second attach', () => attached.length === 2);
    expect(attached[1]?.info.locationId).toBe(0x10003);
  });

  it('without libusb hotplug it polls the list with a set diff, surviving list failures', async () => {
    const bus = new FakeBus();
    bus.hotplug = false;
    const { backend, attached } = setup(bus, { pollIntervalMs: 10 });
    backend.start();
    expect(bus.listeners()).toBe(0);
    bus.listFailures = 2;
    const dev = new FakeDevice(iphone(), 1);
    bus.plug(dev, false);
    await until('attach by poll', () => attached.length === 1);
    bus.unplug(dev, false);
    await until('gone by poll', () => attached[0]?.closes.length === 1);
    expect(attached[0]?.closes[0]).toBeInstanceOf(UsbDeviceGoneError);
    await backend.stop();
    const calls = bus.listCalls;
    await new Promise((r) => setTimeout(r, 40));
    expect(bus.listCalls).toBe(calls);
  });

  it('a device that failed to open is not retried until it leaves and comes back', async () => {
    const bus = new FakeBus();
    bus.hotplug = false;
    const dev = new FakeDevice(iphone(), 1);
    dev.claimError = LIBUSB_ERROR_BUSY;
    bus.plug(dev, false);
    const { backend, attached } = setup(bus, { pollIntervalMs: 10 });
    backend.start();
    await until('first failure', () => dev.closes === 1);
    await new Promise((r) => setTimeout(r, 50));
    expect(dev.closes).toBe(1);
    bus.unplug(dev, false);
    await new Promise((r) => setTimeout(r, 30));
    dev.claimError = undefined;
    bus.plug(dev, false);
    await until('attach after replug', () => attached.length === 1);
  });

  it('an unavailable libusb is logged and left alone', () => {
    const bus = new FakeBus();
    bus.unavailable = true;
    const { backend } = setup(bus);
    backend.start();
    expect(bus.listCalls).toBe(0);
    expect(bus.listeners()).toBe(0);
  });

  it('stop() releases every device, unhooks hotplug and is idempotent', async () => {
    const bus = new FakeBus();
    const a = new FakeDevice(iphone(), 1, 2);
    const b = new FakeDevice(iphone(), 4, 3);
    bus.plug(a, false);
    bus.plug(b, false);
    const { backend, attached } = setup(bus);
    backend.start();
    await until('both attached', () => attached.length === 2);
    await Promise.all([backend.stop(), backend.stop()]);
    expect(bus.listeners()).toBe(0);
    expect([a.closes, b.closes]).toEqual([1, 1]);
    expect(attached.map((x) => x.closes)).toEqual([[undefined], [undefined]]);
  });
});
