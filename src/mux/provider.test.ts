import { describe, expect, it } from 'vitest';
import { DeviceRegistry } from '../devices/registry.js';
import type { Device, UsbDeviceInfo } from '../devices/api.js';
import { InvalidConfigError } from '../errors.js';
import { silentLogger } from '../log.js';
import { MuxProvider } from './provider.js';
import type { MuxProviderOptions } from './provider.js';
import { MuxSession } from './session.js';
import type { Transport, TransportSink } from './transport.js';
import { encodeVersionPacket } from './wire.js';

/** A transport the test answers by hand. */
class HandTransport implements Transport {
  readonly maxPacketSize = 49152;
  sink: TransportSink | undefined;
  sent: Buffer[] = [];
  closes = 0;
  start(sink: TransportSink): void {
    this.sink = sink;
  }
  send(packet: Buffer): boolean {
    this.sent.push(packet);
    return true;
  }
  close(): Promise<void> {
    this.closes++;
    if (this.closes === 1) this.sink?.onClose();
    return Promise.resolve();
  }
  answerVersion(major = 2): void {
    this.sink!.onData(encodeVersionPacket(major, 0));
  }
  unplug(): void {
    this.sink!.onClose(new Error('unplugged'));
  }
}

function info(serial: string): UsbDeviceInfo {
  return { connectionType: 'USB', serial, usbSerial: serial, productId: 0x12a8, locationId: 0x10001, speed: 480000000 };
}

function setup(options: MuxProviderOptions = {}): { registry: DeviceRegistry; mux: MuxProvider; events: string[] } {
  const registry = new DeviceRegistry({ log: silentLogger() });
  const events: string[] = [];
  registry.on('attached', (d: Device) => events.push(`attached ${d.id}`));
  registry.on('detached', (d: Device) => events.push(`detached ${d.id}`));
  return { registry, mux: new MuxProvider(registry, options), events };
}

describe('MuxProvider', () => {
  it('a mux device is hidden until its VERSION handshake completes, then attached and listed', () => {
    const { registry, mux, events } = setup();
    const t = new HandTransport();
    const device = mux.addDevice(t, info('a'));
    expect(t.sent).toHaveLength(1); // VERSION went out at once
    expect(device.visible).toBe(false);
    expect(registry.count()).toBe(1);
    t.answerVersion();
    expect(device.visible).toBe(true);
    expect(registry.list()).toEqual([device]);
    expect(events).toEqual(['attached 1']);
  });

  it('an unplug detaches; a device unplugged before its handshake was never announced', () => {
    const { registry, mux, events } = setup();
    const hidden = new HandTransport();
    const shown = new HandTransport();
    mux.addDevice(hidden, info('h'));
    mux.addDevice(shown, info('s'));
    shown.answerVersion();
    hidden.unplug();
    shown.unplug();
    expect(events).toEqual(['attached 2', 'detached 2']);
    expect(registry.count()).toBe(0);
  });

  it('an unsupported version drops the device silently and closes its transport', () => {
    const { registry, mux, events } = setup();
    const t = new HandTransport();
    mux.addDevice(t, info('x'));
    t.answerVersion(7);
    expect(events).toEqual([]);
    expect(registry.count()).toBe(0);
    expect(t.closes).toBe(1);
  });

  it('the directory’s shutdown closes every transport and detaches', async () => {
    const { registry, mux, events } = setup();
    const a = new HandTransport();
    const b = new HandTransport();
    mux.addDevice(a, info('a'));
    mux.addDevice(b, info('b'));
    a.answerVersion();
    await registry.shutdown();
    expect([a.closes, b.closes]).toEqual([1, 1]);
    expect(events).toEqual(['attached 1', 'detached 1']);
    expect(registry.count()).toBe(0);
  });

  it('sessionOf finds the session behind a device it added', () => {
    const { mux } = setup();
    const device = mux.addDevice(new HandTransport(), info('a'));
    const session = mux.sessionOf(device);
    expect(session).toBeInstanceOf(MuxSession);
    expect(session?.id).toBe(device.id);
  });

  it.each([
    [{ window: 1000 }],
    [{ window: 0x1000000 }],
    [{ connectTimeoutMs: 0 }],
    [{ versionTimeoutMs: -1 }],
    [{ ackDelayMs: Number.NaN }],
  ])('rejects bad options %j with InvalidConfigError', (options) => {
    expect(() => setup(options)).toThrow(InvalidConfigError);
  });
});
