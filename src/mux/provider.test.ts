import { describe, expect, it } from 'vitest';
import { InvalidConfigError } from '../errors.js';
import { silentLogger } from '../log.js';
import type { DeviceInfo, MuxDevice } from './api.js';
import { DeviceRegistry } from './registry.js';
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

function info(serial: string): DeviceInfo {
  return { serial, usbSerial: serial, productId: 0x12a8, locationId: 0x10001, speed: 480000000 };
}

function recordEvents(registry: DeviceRegistry): string[] {
  const events: string[] = [];
  registry.on('attached', (d: MuxDevice) => events.push(`attached ${d.id}`));
  registry.on('detached', (d: MuxDevice) => events.push(`detached ${d.id}`));
  registry.on('paired', (d: MuxDevice) => events.push(`paired ${d.id}`));
  return events;
}

describe('DeviceRegistry', () => {
  it('a device is hidden until its handshake completes, then attached and listed', () => {
    const registry = new DeviceRegistry({ log: silentLogger() });
    const events = recordEvents(registry);
    const t = new HandTransport();
    const device = registry.addDevice(t, info('a'));
    expect(t.sent).toHaveLength(1); // VERSION went out at once
    expect(device.visible).toBe(false);
    expect(registry.count()).toBe(1);
    expect(registry.list()).toEqual([]);
    expect(registry.get(device.id)).toBe(device);
    t.answerVersion();
    expect(device.visible).toBe(true);
    expect(registry.list()).toEqual([device]);
    expect(events).toEqual(['attached 1']);
  });

  it('DeviceIDs count from 1 and are never reused in a run', () => {
    const registry = new DeviceRegistry({ log: silentLogger() });
    const a = new HandTransport();
    const b = new HandTransport();
    const c = new HandTransport();
    expect(registry.addDevice(a, info('a')).id).toBe(1);
    expect(registry.addDevice(b, info('b')).id).toBe(2);
    a.answerVersion();
    b.answerVersion();
    a.unplug();
    expect(registry.get(1)).toBeUndefined();
    expect(registry.addDevice(c, info('c')).id).toBe(3);
    c.answerVersion();
    expect(registry.list().map((d) => d.id)).toEqual([2, 3]);
  });

  it('detached only for devices that were attached', () => {
    const registry = new DeviceRegistry({ log: silentLogger() });
    const events = recordEvents(registry);
    const hidden = new HandTransport();
    const shown = new HandTransport();
    registry.addDevice(hidden, info('h'));
    registry.addDevice(shown, info('s'));
    shown.answerVersion();
    hidden.unplug();
    shown.unplug();
    expect(events).toEqual(['attached 2', 'detached 2']);
    expect(registry.count()).toBe(0);
  });

  it('an unsupported version drops the device silently', () => {
    const registry = new DeviceRegistry({ log: silentLogger() });
    const events = recordEvents(registry);
    const t = new HandTransport();
    registry.addDevice(t, info('x'));
    t.answerVersion(7);
    expect(events).toEqual([]);
    expect(registry.count()).toBe(0);
    expect(t.closes).toBe(1);
  });

  it('markPaired raises paired for a known device and ignores unknown ids', () => {
    const registry = new DeviceRegistry({ log: silentLogger() });
    const events = recordEvents(registry);
    const t = new HandTransport();
    registry.addDevice(t, info('a'));
    t.answerVersion();
    registry.markPaired(1);
    registry.markPaired(99);
    expect(events).toEqual(['attached 1', 'paired 1']);
  });

  it('shutdown closes every transport and detaches', async () => {
    const registry = new DeviceRegistry({ log: silentLogger() });
    const events = recordEvents(registry);
    const a = new HandTransport();
    const b = new HandTransport();
    registry.addDevice(a, info('a'));
    registry.addDevice(b, info('b'));
    a.answerVersion();
    await registry.shutdown();
    expect([a.closes, b.closes]).toEqual([1, 1]);
    expect(events).toEqual(['attached 1', 'detached 1']);
    expect(registry.count()).toBe(0);
  });

  it.each([
    [{ window: 1000 }],
    [{ window: 0x1000000 }],
    [{ connectTimeoutMs: 0 }],
    [{ versionTimeoutMs: -1 }],
    [{ ackDelayMs: Number.NaN }],
  ])('rejects bad options %j with InvalidConfigError', (options) => {
    expect(() => new DeviceRegistry({ log: silentLogger(), ...options })).toThrow(InvalidConfigError);
  });
});
