/**
 * Retention: nothing a device, a tunnel or a client leaves behind stays reachable once it is gone.
 * (Issue 6: the replug soak's daemon RSS grew; these tests pin down that the per-device and
 * per-client objects of every layer are collectable after unplug / disconnect.)
 *
 * Each test repeats attach → traffic → detach many times, keeps only WeakRefs to the objects of
 * every cycle, forces full GCs (`--expose-gc` set at run time, `gc` taken from a fresh context)
 * and asserts every WeakRef is empty. No timing or memory thresholds: an object is either
 * collectable or something still holds it.
 */
import { EventEmitter } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createVirtualDevice, ECHO_PORT } from '../../src/emulator/index.js';
import { silentLogger } from '../../src/log.js';
import type { Device, DeviceConnection, DeviceRegistry } from '../../src/devices/index.js';
import type { MuxProvider } from '../../src/mux/index.js';
import { muxDevices } from '../support/mux-devices.js';
import type { Transport } from '../../src/mux/transport.js';
import { FilePairRecordStore } from '../../src/pairrecords/index.js';
import { MuxdServer } from '../../src/server/index.js';
import { UsbBackend } from '../../src/usb/backend.js';
import type { BusDevice, BusListener, UsbBus } from '../../src/usb/bus.js';
import { MuxdClient } from '../support/muxd-client.js';
import { iphone } from '../support/usb-descriptors.js';
import { FakeDevice } from '../support/usb-fake-device.js';

let gc: () => void;
beforeAll(() => {
  setFlagsFromString('--expose-gc');
  gc = runInNewContext('gc') as () => void;
});

const CYCLES = 40;

/** Labelled WeakRefs to the objects of finished cycles. */
class Tracked {
  private readonly refs: { readonly label: string; readonly ref: WeakRef<object> }[] = [];

  add(label: string, target: object): void {
    this.refs.push({ label, ref: new WeakRef(target) });
  }

  get size(): number {
    return this.refs.length;
  }

  /**
   * Full GCs until every target is gone, with event-loop turns in between (a callback already
   * queued — an ACK flush, a release callback — may still hold its object until it has run).
   * Returns the labels still alive after the last round.
   */
  async survivors(rounds = 10): Promise<string[]> {
    let alive: string[] = [];
    for (let round = 0; round < rounds; round++) {
      await turns(round < 5 ? 0 : 50);
      gc();
      alive = this.refs.filter((r) => r.ref.deref() !== undefined).map((r) => r.label);
      if (alive.length === 0) break;
    }
    return alive;
  }
}

/** A few event-loop turns, then an optional sleep. */
async function turns(sleepMs: number): Promise<void> {
  for (let k = 0; k < 3; k++) await new Promise((resolve) => setImmediate(resolve));
  if (sleepMs > 0) await new Promise((resolve) => setTimeout(resolve, sleepMs));
}

function waitFor(emitter: DeviceRegistry, event: 'attached' | 'detached', id?: number): Promise<Device> {
  return new Promise((resolve) => {
    const on = (device: Device): void => {
      if (id !== undefined && device.id !== id) return;
      emitter.off(event, on);
      resolve(device);
    };
    emitter.on(event, on);
  });
}

/** Write `size` bytes to an echo connection and read them back. */
function echoOnce(conn: DeviceConnection, size: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let got = 0;
    conn.attach({
      onData: (chunk, done) => {
        got += chunk.length;
        done();
        if (got >= size) resolve();
      },
      onWritable: () => undefined,
      onClose: (reason) => {
        if (got < size) reject(new Error(`closed early (${reason})`));
      },
    });
    conn.write(Buffer.alloc(size, 0x5a));
  });
}

describe('retention: mux engine + emulated iPhone', () => {
  it(`${CYCLES} attach → tunnel with data → unplug mid-stream cycles leave no session, connection, transport or emulator reachable`, async () => {
    const { registry, mux } = muxDevices();
    const tracked = new Tracked();
    let detachedCount = 0;
    registry.on('detached', () => detachedCount++);
    const cycle = async (n: number): Promise<void> => {
      const vd = createVirtualDevice();
      const attached = waitFor(registry, 'attached');
      mux.addDevice(vd.transport, vd.info);
      const device = await attached;
      const conn = await device.connect(ECHO_PORT);
      await echoOnce(conn, 64 * 1024);
      // A second tunnel still carrying data when the cable goes.
      const busy = await device.connect(ECHO_PORT);
      busy.attach({ onData: (_chunk, done) => { done(); }, onWritable: () => undefined, onClose: () => undefined });
      busy.write(Buffer.alloc(200_000, n & 0xff));
      const detached = waitFor(registry, 'detached', device.id);
      vd.unplug();
      await detached;
      tracked.add(`session ${device.id}`, device);
      tracked.add(`connection ${device.id}a`, conn);
      tracked.add(`connection ${device.id}b`, busy);
      tracked.add(`host transport ${device.id}`, vd.transport);
      tracked.add(`memory pair ${device.id}`, vd.pair);
      tracked.add(`emulator ${device.id}`, vd.emulator);
    };
    for (let n = 0; n < CYCLES; n++) await cycle(n);
    expect(detachedCount).toBe(CYCLES);
    expect(registry.count()).toBe(0);
    expect(tracked.size).toBe(CYCLES * 6);
    expect(await tracked.survivors()).toEqual([]);
    // The registry itself still works afterwards (its maps were emptied, not broken).
    expect(registry.list()).toEqual([]);
  });

  it('a device that never answers VERSION, unplugged before its timeout, is not kept either', async () => {
    const { registry, mux } = muxDevices();
    const tracked = new Tracked();
    const cycle = async (): Promise<void> => {
      const vd = createVirtualDevice({ emulator: { faults: { noVersionReply: true } } });
      const device = mux.addDevice(vd.transport, vd.info);
      await turns(0);
      vd.unplug();
      await turns(0);
      tracked.add(`silent session ${device.id}`, device);
      tracked.add(`silent emulator ${device.id}`, vd.emulator);
    };
    for (let n = 0; n < CYCLES; n++) await cycle();
    expect(registry.count()).toBe(0);
    expect(await tracked.survivors()).toEqual([]);
  });
});

describe('retention: server clients, listeners and tunnels', () => {
  let tmp: string;
  let registry: DeviceRegistry;
  let mux: MuxProvider;
  let server: MuxdServer;
  const accepted: WeakRef<Socket>[] = [];

  beforeEach(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'muxd-retention-'));
    ({ registry, mux } = muxDevices());
    accepted.length = 0;
    server = new MuxdServer({
      directory: registry,
      store: new FilePairRecordStore({ dir: join(tmp, 'lockdown') }),
      log: silentLogger(),
      // The accept hook hands us the server's end of every client socket.
      identify: (socket) => {
        accepted.push(new WeakRef(socket));
        return {};
      },
    });
    await server.listen({ kind: 'unix', path: join(tmp, 'usbmuxd') });
  });

  afterEach(async () => {
    await server.close();
    await registry.shutdown();
    await rm(tmp, { recursive: true, force: true });
  });

  it(`${CYCLES} cycles of listener + tunnel clients across a replug leave no client session, socket or device reachable`, async () => {
    const target = { path: join(tmp, 'usbmuxd') };
    const tracked = new Tracked();
    const cycle = async (): Promise<void> => {
      const vd = createVirtualDevice();
      const attached = waitFor(registry, 'attached');
      mux.addDevice(vd.transport, vd.info);
      const device = await attached;
      // A listener that hears Attached for the device, then Detached.
      const listener = await MuxdClient.connect(target);
      const events = listener.listen();
      const first = await events.next();
      expect(first.value?.kind).toBe('attached');
      // A tunnel with data in flight when the cable goes.
      const client = await MuxdClient.connect(target);
      const tunnel = await client.connectDevice(device.id, ECHO_PORT);
      const echoed = new Promise<void>((resolve) => {
        let got = 0;
        tunnel.on('data', (chunk: Buffer) => {
          got += chunk.length;
          if (got >= 32768) resolve();
        });
        tunnel.resume();
      });
      tunnel.write(Buffer.alloc(32768, 1));
      await echoed;
      tunnel.write(Buffer.alloc(500_000, 2));
      const tunnelClosed = new Promise<void>((resolve) => tunnel.once('close', () => { resolve(); }));
      tunnel.on('error', () => undefined);
      vd.unplug();
      const detachedEvent = await events.next();
      expect(detachedEvent.value?.kind).toBe('detached');
      await tunnelClosed;
      // A plain request client too (ListDevices), then everyone goes.
      const lister = await MuxdClient.connect(target);
      await lister.request({ MessageType: 'ListDevices' });
      await Promise.all([lister.close(), listener.close(), client.close()]);
      tracked.add(`device ${device.id}`, device);
      tracked.add(`emulator ${device.id}`, vd.emulator);
    };
    for (let n = 0; n < CYCLES; n++) await cycle();
    for (let k = 0; k < 200 && server.clientCount > 0; k++) await turns(10);
    expect(server.clientCount).toBe(0);
    expect(accepted).toHaveLength(CYCLES * 3);
    accepted.forEach((ref, k) => {
      tracked.add(`accepted socket ${k}`, ref.deref() ?? {});
    });
    expect(await tracked.survivors()).toEqual([]);
  });
});

/** A bus whose attach/detach events the test raises. */
class TestBus implements UsbBus {
  readonly unavailable = false;
  private devices: BusDevice[] = [];
  private readonly events = new EventEmitter();
  list(): BusDevice[] {
    return [...this.devices];
  }
  hotplugSupported(): boolean {
    return true;
  }
  on(event: 'attach' | 'detach', listener: BusListener): void {
    this.events.on(event, listener);
  }
  off(event: 'attach' | 'detach', listener: BusListener): void {
    this.events.off(event, listener);
  }
  unrefHotplug(): void {
    // nothing to unref in a test bus
  }
  plug(device: BusDevice): void {
    this.devices.push(device);
    this.events.emit('attach', device);
  }
  unplug(device: BusDevice): void {
    this.devices = this.devices.filter((d) => d !== device);
    this.events.emit('detach', device);
  }
}

describe('retention: USB backend', () => {
  it(`${CYCLES} hotplug attach → detach cycles at the same bus address leave no device, transport or per-device entry reachable`, async () => {
    const bus = new TestBus();
    const attached: Transport[] = [];
    let closes = 0;
    const backend = new UsbBackend({
      log: silentLogger(),
      bus,
      deviceMode: 1,
      onAttach(transport) {
        // What mux does with a new transport: start it with a sink (the fake cannot send).
        transport.start({ onData: () => undefined, onDrain: () => undefined, onClose: () => closes++ });
        attached.push(transport);
      },
    });
    backend.start();
    const tracked = new Tracked();
    try {
      const cycle = async (n: number): Promise<void> => {
        // Two addresses in turn, as a phone replugged on one port gets.
        const dev = new FakeDevice(iphone(), 1, 2 + (n % 2));
        bus.plug(dev);
        for (let k = 0; k < 400 && attached.length === 0; k++) await turns(1);
        const transport = attached.pop();
        if (transport === undefined) throw new Error(`cycle ${n}: no transport attached`);
        bus.unplug(dev);
        for (let k = 0; k < 400 && dev.closes === 0; k++) await turns(1);
        expect(dev.closes).toBe(1);
        tracked.add(`fake device ${n}`, dev);
        tracked.add(`usb transport ${n}`, transport);
      };
      // Each cycle in a function of its own: an async function's suspended frame would otherwise
      // keep the last iteration's locals alive (a false "survivor").
      for (let n = 0; n < CYCLES; n++) await cycle(n);
      expect(closes).toBe(CYCLES);
      expect(await tracked.survivors()).toEqual([]);
    } finally {
      await backend.stop();
    }
  });
});
