import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { createVirtualDevice, ECHO_PORT } from '../emulator/index.js';
import type { VirtualDevice } from '../emulator/index.js';
import type { DeviceRegistry } from '../devices/index.js';
import { muxDevices } from '../../test/support/mux-devices.js';
import type { CloseReason, ConnectionSink, DeviceConnection, Device } from '../devices/index.js';
import { LockdownClosedError, DeviceStreamError } from './errors.js';
import { DeviceDuplex } from './device-duplex.js';

/** A DeviceConnection whose write verdict and events the test controls. */
class FakeConnection implements DeviceConnection {
  readonly localPort = 1;
  readonly remotePort = 2;
  sink: ConnectionSink | undefined;
  writes: Buffer[] = [];
  accept = true;
  resets = 0;
  write(chunk: Buffer): boolean {
    this.writes.push(chunk);
    return this.accept;
  }
  end(): void {
    this.sink?.onClose('local-end');
  }
  reset(): void {
    this.resets++;
    this.sink?.onClose('local-reset');
  }
  attach(sink: ConnectionSink): void {
    this.sink = sink;
  }
  close(reason: CloseReason): void {
    this.sink?.onClose(reason);
  }
}

describe('DeviceDuplex with a fake connection', () => {
  it('calls done at once while the reader keeps up, and holds it while the buffer is full', async () => {
    const conn = new FakeConnection();
    const d = new DeviceDuplex(conn);
    d.pause();
    let dones = 0;
    const big = Buffer.alloc(d.readableHighWaterMark);
    conn.sink!.onData(Buffer.from('ab'), () => dones++);
    expect(dones).toBe(1);
    conn.sink!.onData(big, () => dones++); // fills the buffer: push returns false
    conn.sink!.onData(Buffer.from('c'), () => dones++);
    expect(dones).toBe(1);
    const got: Buffer[] = [];
    d.on('data', (b: Buffer) => got.push(b));
    d.resume();
    await new Promise((r) => setImmediate(r));
    expect(dones).toBe(3);
    expect(Buffer.concat(got).length).toBe(2 + big.length + 1);
  });

  it('holds the write callback until onWritable', async () => {
    const conn = new FakeConnection();
    const d = new DeviceDuplex(conn);
    conn.accept = false;
    let written = false;
    d.write(Buffer.from('x'), () => { written = true; });
    await new Promise((r) => setImmediate(r));
    expect(written).toBe(false);
    expect(conn.writes.map((b) => b.toString())).toEqual(['x']);
    conn.accept = true;
    conn.sink!.onWritable();
    await new Promise((r) => setImmediate(r));
    expect(written).toBe(true);
  });

  it('maps device-reset to a clean end of the readable side', async () => {
    const conn = new FakeConnection();
    const d = new DeviceDuplex(conn);
    const chunks: Buffer[] = [];
    d.on('data', (b: Buffer) => chunks.push(b));
    conn.sink!.onData(Buffer.from('last'), () => undefined);
    conn.close('device-reset');
    await once(d, 'end');
    expect(Buffer.concat(chunks).toString()).toBe('last');
    const streamError = once(d, 'error');
    await expect(new Promise((_, reject) => d.write(Buffer.from('y'), reject))).rejects.toBeInstanceOf(LockdownClosedError);
    expect((await streamError)[0]).toBeInstanceOf(LockdownClosedError);
    expect(conn.resets).toBe(0);
  });

  it('maps device-gone and protocol-error to an error', async () => {
    for (const reason of ['device-gone', 'protocol-error'] as const) {
      const conn = new FakeConnection();
      const d = new DeviceDuplex(conn);
      const err = once(d, 'error');
      conn.close(reason);
      const [e] = (await err) as [Error];
      expect(e).toBeInstanceOf(DeviceStreamError);
      expect(e.message).toContain(reason);
      expect(conn.resets).toBe(0);
    }
  });

  it('destroy() resets the connection once and fails a held write', async () => {
    const conn = new FakeConnection();
    const d = new DeviceDuplex(conn);
    conn.accept = false;
    const failed = new Promise<Error | null | undefined>((resolve) => d.write(Buffer.from('z'), resolve));
    d.destroy();
    d.destroy();
    expect(conn.resets).toBe(1);
    expect(await failed).toBeInstanceOf(Error);
    await once(d, 'close');
  });

  it('releases held dones when destroyed, so the device window is not pinned', () => {
    const conn = new FakeConnection();
    const d = new DeviceDuplex(conn);
    d.pause();
    let dones = 0;
    conn.sink!.onData(Buffer.alloc(d.readableHighWaterMark), () => dones++);
    conn.sink!.onData(Buffer.alloc(10), () => dones++);
    expect(dones).toBe(0);
    d.destroy();
    expect(dones).toBe(2);
  });
});

describe('DeviceDuplex over the emulated iPhone (echo service)', () => {
  let vd: VirtualDevice | undefined;
  let registry: DeviceRegistry | undefined;
  afterEach(async () => {
    await registry?.shutdown();
    vd?.unplug();
  });

  async function device(): Promise<Device> {
    const devices = muxDevices();
    registry = devices.registry;
    vd = createVirtualDevice();
    const attached = once(registry, 'attached') as Promise<[Device]>;
    devices.mux.addDevice(vd.transport, vd.info);
    return (await attached)[0];
  }

  it('echoes 4 MiB intact through pipe() with backpressure both ways', async () => {
    const dev = await device();
    const d = new DeviceDuplex(await dev.connect(ECHO_PORT));
    const data = randomBytes(4 * 1024 * 1024);
    const want = createHash('sha256').update(data).digest('hex');
    const hash = createHash('sha256');
    let got = 0;
    const done = new Promise<void>((resolve) => {
      d.on('data', (b: Buffer) => {
        hash.update(b);
        got += b.length;
        if (got === data.length) resolve();
      });
    });
    let falseWrites = 0;
    for (let off = 0; off < data.length; off += 65536) {
      if (!d.write(data.subarray(off, off + 65536))) {
        falseWrites++;
        await once(d, 'drain');
      }
    }
    await done;
    expect(hash.digest('hex')).toBe(want);
    expect(falseWrites).toBeGreaterThan(0);
    d.destroy();
  });

  it('a paused reader throttles the device: no more than the window plus one buffer is held', async () => {
    const dev = await device();
    const d = new DeviceDuplex(await dev.connect(ECHO_PORT));
    d.pause();
    const data = Buffer.alloc(2 * 1024 * 1024, 7);
    d.write(data);
    await new Promise((r) => setTimeout(r, 200));
    // Echoed bytes buffered on our side: bounded by the readable buffer plus our receive window.
    expect(d.readableLength).toBeLessThanOrEqual(d.readableHighWaterMark + 131072 + 65536);
    let got = 0;
    d.on('data', (b: Buffer) => { got += b.length; });
    d.resume();
    const deadline = Date.now() + 5000;
    while (got < data.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(got).toBe(data.length);
    d.destroy();
  });
});
