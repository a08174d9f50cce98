/**
 * A small in-memory DeviceDirectory for server tests that do not need the real mux engine:
 * devices whose `connect` the test scripts (accept, refuse, hang) and connections that record
 * what the server wrote and let the test play the device side.
 */
import { EventEmitter } from 'node:events';
import type {
  CloseReason,
  ConnectionSink,
  Device,
  DeviceConnection,
  DeviceDirectory,
  DeviceEvents,
  DeviceInfo,
} from '../../src/devices/index.js';
import { ConnectionRefusedError, ConnectTimeoutError, DeviceGoneError } from '../../src/devices/index.js';

export class FakeConnection implements DeviceConnection {
  readonly localPort: number;
  readonly remotePort: number;
  readonly written: Buffer[] = [];
  sink: ConnectionSink | undefined;
  resetCount = 0;
  endCount = 0;
  closedWith: CloseReason | undefined;
  /** What `write` returns (flip to false to simulate a full window). */
  accepting = true;

  constructor(localPort: number, remotePort: number) {
    this.localPort = localPort;
    this.remotePort = remotePort;
  }

  get writtenBytes(): Buffer {
    return Buffer.concat(this.written);
  }

  write(chunk: Buffer): boolean {
    this.written.push(chunk);
    return this.accepting;
  }

  /** Finish then close: this fake has nothing in flight, so it closes at once. */
  end(): void {
    this.endCount += 1;
    this.close('local-end');
  }

  reset(): void {
    this.resetCount += 1;
    this.close('local-reset');
  }

  attach(sink: ConnectionSink): void {
    this.sink = sink;
  }

  /** Device side: send payload; resolves when the server called `done`. */
  deliver(payload: Buffer): Promise<void> {
    return new Promise((resolve) => {
      this.sink?.onData(payload, resolve);
    });
  }

  close(reason: CloseReason): void {
    if (this.closedWith !== undefined) return;
    this.closedWith = reason;
    this.sink?.onClose(reason);
  }
}

export type ConnectBehaviour = 'accept' | 'refuse' | 'timeout' | 'gone' | 'hang';

export class FakeDevice implements Device {
  readonly id: number;
  readonly info: DeviceInfo;
  visible: boolean;
  behaviour: ConnectBehaviour = 'accept';
  readonly connections: FakeConnection[] = [];
  /** Pending connects when behaviour is 'hang': resolve them by hand. */
  readonly pending: { port: number; resolve: (c: FakeConnection) => void }[] = [];
  private nextPort = 1;

  constructor(id: number, info: DeviceInfo, visible = true) {
    this.id = id;
    this.info = info;
    this.visible = visible;
  }

  connect(port: number): Promise<DeviceConnection> {
    switch (this.behaviour) {
      case 'accept':
        return Promise.resolve(this.open(port));
      case 'refuse':
        return Promise.reject(new ConnectionRefusedError(port));
      case 'timeout':
        return Promise.reject(new ConnectTimeoutError(port, 4000));
      case 'gone':
        return Promise.reject(new DeviceGoneError(this.id));
      case 'hang':
        return new Promise((resolve) => {
          this.pending.push({ port, resolve });
        });
    }
  }

  open(port: number): FakeConnection {
    const conn = new FakeConnection(this.nextPort++, port);
    this.connections.push(conn);
    return conn;
  }
}

export function fakeInfo(n: number): DeviceInfo {
  const serial = `0000803${n % 10}-001A2B3C4D5E6F7${n % 10}`;
  return { connectionType: 'USB', serial, usbSerial: serial.replace('-', ''), productId: 0x12a8, locationId: (1 << 16) | n, speed: 480000000 };
}

export class FakeDirectory extends EventEmitter<DeviceEvents> implements DeviceDirectory {
  readonly devices = new Map<number, FakeDevice>();
  readonly pairedCalls: number[] = [];
  private nextId = 1;

  /** Add a device; visible ones are announced. */
  add(info: DeviceInfo = fakeInfo(this.nextId), visible = true): FakeDevice {
    const device = new FakeDevice(this.nextId++, info, visible);
    this.devices.set(device.id, device);
    if (visible) this.emit('attached', device);
    return device;
  }

  remove(device: FakeDevice): void {
    this.devices.delete(device.id);
    this.emit('detached', device);
  }

  list(): Device[] {
    return [...this.devices.values()].filter((d) => d.visible);
  }

  get(id: number): Device | undefined {
    return this.devices.get(id);
  }

  count(): number {
    return this.devices.size;
  }

  markPaired(id: number): void {
    this.pairedCalls.push(id);
    const device = this.devices.get(id);
    if (device !== undefined) this.emit('paired', device);
  }
}
