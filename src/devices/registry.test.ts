import { describe, expect, it } from 'vitest';
import { silentLogger } from '../log.js';
import type { CloseReason, ConnectionSink, ConnectOptions, Device, DeviceConnection, DeviceInfo, DeviceLink, LinkContext } from './api.js';
import { DeviceGoneError } from './errors.js';
import { DeviceRegistry } from './registry.js';

/** A device of no particular transport: the test says when it is ready and when it is gone. */
class FakeLink implements DeviceLink {
  started = 0;
  shutdowns = 0;
  readonly connects: { port: number; options: ConnectOptions | undefined }[] = [];
  constructor(readonly context: LinkContext, private readonly readyAtStart = false) {}
  start(): void {
    this.started++;
    if (this.readyAtStart) this.context.ready();
  }
  connect(port: number, options?: ConnectOptions): Promise<DeviceConnection> {
    this.connects.push({ port, options });
    return Promise.resolve(new NullConnection(port));
  }
  shutdown(): Promise<void> {
    this.shutdowns++;
    this.context.gone();
    return Promise.resolve();
  }
}

class NullConnection implements DeviceConnection {
  readonly localPort = 1;
  sink: ConnectionSink | undefined;
  closed: CloseReason | undefined;
  constructor(readonly remotePort: number) {}
  write(): boolean {
    return true;
  }
  end(): void {
    this.closed = 'local-end';
  }
  reset(): void {
    this.closed = 'local-reset';
  }
  attach(sink: ConnectionSink): void {
    this.sink = sink;
  }
}

function info(serial: string): DeviceInfo {
  return { connectionType: 'USB', serial, usbSerial: serial, productId: 0x12a8, locationId: 0x10001, speed: 480000000 };
}

function add(registry: DeviceRegistry, serial: string, readyAtStart = false): { device: Device; link: FakeLink } {
  let link: FakeLink | undefined;
  const device = registry.add(info(serial), (context) => (link = new FakeLink(context, readyAtStart)));
  if (link === undefined) throw new Error('open was not called');
  return { device, link };
}

function recordEvents(registry: DeviceRegistry): string[] {
  const events: string[] = [];
  registry.on('attached', (d) => events.push(`attached ${d.id}`));
  registry.on('detached', (d) => events.push(`detached ${d.id}`));
  registry.on('paired', (d) => events.push(`paired ${d.id}`));
  return events;
}

describe('DeviceRegistry', () => {
  it('gives each device an id and a dev-bound logger, starts its link once, lists it when ready', () => {
    const registry = new DeviceRegistry({ log: silentLogger() });
    const events = recordEvents(registry);
    const { device, link } = add(registry, 'a');
    expect(link.started).toBe(1);
    expect(link.context.id).toBe(device.id);
    expect(device.visible).toBe(false);
    expect(registry.count()).toBe(1);
    expect(registry.list()).toEqual([]);
    expect(registry.get(device.id)).toBe(device);
    link.context.ready();
    link.context.ready();
    expect(device.visible).toBe(true);
    expect(registry.list()).toEqual([device]);
    expect(events).toEqual(['attached 1']);
  });

  it('a link may report ready from inside start()', () => {
    const registry = new DeviceRegistry({ log: silentLogger() });
    const events = recordEvents(registry);
    const { device } = add(registry, 'a', true);
    expect(device.visible).toBe(true);
    expect(events).toEqual(['attached 1']);
  });

  it('lists USB devices before network ones, each kind in DeviceID order', () => {
    const registry = new DeviceRegistry({ log: silentLogger() });
    const net = (serial: string): DeviceInfo => ({ connectionType: 'Network', serial, address: '10.0.0.2', family: 4, interfaceIndex: 2, escapedFullServiceName: undefined });
    registry.add(net('A'), (c) => new FakeLink(c, true));
    add(registry, 'A', true);
    registry.add(net('B'), (c) => new FakeLink(c, true));
    add(registry, 'C', true);
    expect(registry.list().map((d) => `${d.info.connectionType} ${d.id}`)).toEqual(['USB 2', 'USB 4', 'Network 1', 'Network 3']);
  });

  it('DeviceIDs count from 1 and are never reused in a run', () => {
    const registry = new DeviceRegistry({ log: silentLogger() });
    const a = add(registry, 'a', true);
    const b = add(registry, 'b', true);
    expect([a.device.id, b.device.id]).toEqual([1, 2]);
    a.link.context.gone(new Error('unplugged'));
    expect(registry.get(1)).toBeUndefined();
    const c = add(registry, 'c', true);
    expect(c.device.id).toBe(3);
    expect(registry.list().map((d) => d.id)).toEqual([2, 3]);
  });

  it('detached only for devices that were attached, and only once', () => {
    const registry = new DeviceRegistry({ log: silentLogger() });
    const events = recordEvents(registry);
    const hidden = add(registry, 'h');
    const shown = add(registry, 's', true);
    hidden.link.context.gone();
    shown.link.context.gone();
    shown.link.context.gone();
    shown.link.context.ready();
    expect(events).toEqual(['attached 2', 'detached 2']);
    expect(registry.count()).toBe(0);
    expect(shown.device.visible).toBe(false);
  });

  it('connect goes to the link, options and all; a gone device refuses with DeviceGoneError', async () => {
    const registry = new DeviceRegistry({ log: silentLogger() });
    const { device, link } = add(registry, 'a');
    // not yet visible: connect still reaches the link (preflight relies on it)
    const conn = await device.connect(62078, { timeoutMs: 5 });
    expect(conn.remotePort).toBe(62078);
    expect(link.connects).toEqual([{ port: 62078, options: { timeoutMs: 5 } }]);
    link.context.gone();
    await expect(device.connect(1)).rejects.toBeInstanceOf(DeviceGoneError);
    expect(link.connects).toHaveLength(1);
  });

  it('markPaired raises paired for a known device and ignores unknown ids', () => {
    const registry = new DeviceRegistry({ log: silentLogger() });
    const events = recordEvents(registry);
    add(registry, 'a', true);
    registry.markPaired(1);
    registry.markPaired(99);
    expect(events).toEqual(['attached 1', 'paired 1']);
  });

  it('shutdown asks every link, visible or not, to end; visible ones are detached', async () => {
    const registry = new DeviceRegistry({ log: silentLogger() });
    const events = recordEvents(registry);
    const a = add(registry, 'a', true);
    const b = add(registry, 'b');
    await registry.shutdown();
    expect([a.link.shutdowns, b.link.shutdowns]).toEqual([1, 1]);
    expect(events).toEqual(['attached 1', 'detached 1']);
    expect(registry.count()).toBe(0);
  });
});
