import * as nodeUsb from 'usb';
import type { ConfigDescriptor, Device, DeviceDescriptor, Endpoint } from 'usb';
import { describe, expect, it } from 'vitest';
import { iphone, stringDescriptor } from '../../test/support/usb-descriptors.js';
import type { DeviceFixture } from '../../test/support/usb-descriptors.js';
import { silentLogger } from '../log.js';
import * as C from './constants.js';
import { DeviceOpener } from './device-opener.js';
import type { OpenableDevice } from './device-opener.js';
import { NoMuxInterfaceError, UsbOpenError } from './errors.js';

type UsbError = Error & { errno: number };
function usbError(errno: number): UsbError {
  return Object.assign(new Error(`libusb ${errno}`), { errno });
}

interface ControlCall {
  readonly requestType: number;
  readonly request: number;
  readonly value: number;
  readonly index: number;
  readonly length: number;
}

/** A node-usb Device stand-in driven by descriptor fixtures; records what the opener does. */
class FakeDevice implements OpenableDevice {
  readonly busNumber = 1;
  readonly deviceAddress = 2;
  timeout = 0;
  readonly deviceDescriptor: DeviceDescriptor;
  readonly allConfigDescriptors: ConfigDescriptor[];
  active: number;
  opened = false;
  closes = 0;
  readonly controls: ControlCall[] = [];
  readonly setConfigs: number[] = [];
  readonly claimed: number[] = [];
  readonly detached: number[] = [];
  /** Interfaces that have a kernel driver bound. */
  driverOn = new Set<number>();
  failSetConfig = new Map<number, number>();
  claimError: number | undefined;
  serial = '00008030001A2B3C4D5E802E';
  getModeError: number | undefined;
  setModeReply: Buffer | number = Buffer.from([0]);

  constructor(fixture: DeviceFixture, active: number) {
    this.deviceDescriptor = { ...fixture.device } as unknown as DeviceDescriptor;
    this.allConfigDescriptors = fixture.configs as unknown as ConfigDescriptor[];
    this.active = active;
  }

  get configDescriptor(): ConfigDescriptor | undefined {
    return this.allConfigDescriptors.find((c) => c.bConfigurationValue === this.active);
  }

  open(): void {
    this.opened = true;
  }

  close(): void {
    this.opened = false;
    this.closes++;
  }

  controlTransfer(
    requestType: number,
    request: number,
    value: number,
    index: number,
    length: number,
    callback: (error: Error | undefined, buffer: Buffer | number | undefined) => void,
  ): void {
    this.controls.push({ requestType, request, value, index, length });
    const reply = (err: UsbError | undefined, data?: Buffer): void => {
      setImmediate(() => {
        callback(err, data);
      });
    };
    if (requestType === 0x80 && request === 6 && value === 0x0300) {
      reply(undefined, Buffer.from('04030904', 'hex'));
    } else if (requestType === 0x80 && request === 6 && value === 0x0303) {
      reply(undefined, stringDescriptor(this.serial).subarray(0, length));
    } else if (requestType === 0xc0 && request === C.APPLE_REQUEST_GET_MODE) {
      if (this.getModeError === undefined) reply(undefined, Buffer.from([3, 3, 3, 0]));
      else reply(usbError(this.getModeError));
    } else if (requestType === 0xc0 && request === C.APPLE_REQUEST_SET_MODE) {
      if (typeof this.setModeReply === 'number') reply(usbError(this.setModeReply));
      else reply(undefined, this.setModeReply);
    } else {
      reply(usbError(C.LIBUSB_ERROR_PIPE));
    }
  }

  setConfiguration(desired: number, callback: (error: Error | undefined) => void): void {
    this.setConfigs.push(desired);
    const fail = this.failSetConfig.get(desired);
    if (fail === undefined) this.active = desired;
    setImmediate(() => {
      callback(fail === undefined ? undefined : usbError(fail));
    });
  }

  interface(n: number): { endpoint(address: number): Endpoint | undefined } {
    const cfg = this.configDescriptor;
    const alts = cfg?.interfaces.find((a) => a[0]?.bInterfaceNumber === n);
    const alt0 = alts?.[0];
    if (!alt0) throw new Error(`Interface not found for address: ${n}`);
    const self = this as unknown as Device;
    return {
      endpoint(address: number): Endpoint | undefined {
        const desc = alt0.endpoints.find((e) => e.bEndpointAddress === address);
        if (!desc) return undefined;
        return address & 0x80 ? new nodeUsb.InEndpoint(self, desc) : new nodeUsb.OutEndpoint(self, desc);
      },
    };
  }

  __claimInterface(n: number): void {
    if (this.claimError !== undefined) throw usbError(this.claimError);
    this.claimed.push(n);
  }

  __releaseInterface(n: number, callback: (error?: Error) => void): void {
    this.claimed.splice(this.claimed.indexOf(n), 1);
    setImmediate(callback);
  }

  __isKernelDriverActive(n: number): boolean {
    if (!this.configDescriptor && this.active !== 0) throw usbError(C.LIBUSB_ERROR_NOT_FOUND);
    return this.driverOn.has(n);
  }

  __detachKernelDriver(n: number): void {
    this.detached.push(n);
    this.driverOn.delete(n);
  }
}

function open(device: FakeDevice, desiredMode = 1): ReturnType<DeviceOpener['run']> {
  return new DeviceOpener(device, { log: silentLogger(), desiredMode }).run();
}

describe('DeviceOpener', () => {
  it('from configuration 1: serial (langid first), GET_MODE, set 4, claim interface 1, bulk endpoints', async () => {
    const dev = new FakeDevice(iphone(), 1);
    const outcome = await open(dev);
    if (outcome.kind !== 'claimed') throw new Error(`expected claimed, got ${outcome.kind}`);
    expect(outcome.usbSerial).toBe('00008030001A2B3C4D5E802E');
    expect(dev.controls.map((c) => [c.requestType, c.request, c.value, c.index])).toEqual([
      [0x80, 6, 0x0300, 0],
      [0x80, 6, 0x0303, 0x0409],
      [0xc0, 0x45, 0, 0],
    ]);
    expect(dev.controls[2]?.length).toBe(4);
    expect(dev.setConfigs).toEqual([4]);
    expect(dev.claimed).toEqual([1]);
    expect(outcome.claimed.outMaxPacketSize).toBe(512);
    expect(outcome.claimed.bulkIn).toBeInstanceOf(nodeUsb.InEndpoint);
    expect(outcome.claimed.bulkOut).toBeInstanceOf(nodeUsb.OutEndpoint);
    expect(dev.timeout).toBe(C.CONTROL_TIMEOUT_MS);
    expect(dev.closes).toBe(0);
    await new Promise<void>((resolve) => {
      outcome.claimed.release(() => {
        resolve();
      });
    });
    expect(dev.claimed).toEqual([]);
    expect(dev.closes).toBe(1);
  });

  it('from the unconfigured state (0) it sets 4 too; already in 4 it sets nothing', async () => {
    const unconfigured = new FakeDevice(iphone(), 0);
    expect((await open(unconfigured)).kind).toBe('claimed');
    expect(unconfigured.setConfigs).toEqual([4]);
    const inFour = new FakeDevice(iphone(), 4);
    expect((await open(inFour)).kind).toBe('claimed');
    expect(inFour.setConfigs).toEqual([]);
  });

  it('detaches kernel drivers on the target configuration only, then sets it', async () => {
    const dev = new FakeDevice(iphone(), 1);
    dev.driverOn = new Set([0, 2]);
    await open(dev);
    expect(dev.detached).toEqual([0, 2]);
  });

  it('falls back to the next lower configuration when setting one fails', async () => {
    const dev = new FakeDevice(iphone(), 1);
    dev.failSetConfig.set(4, C.LIBUSB_ERROR_BUSY);
    const outcome = await open(dev);
    expect(outcome.kind === 'claimed' && outcome.selection.configurationValue).toBe(3);
    expect(dev.setConfigs).toEqual([4, 3]);
  });

  it('a STALLed GET_MODE is fine; mode 1 is left alone by default', async () => {
    const dev = new FakeDevice(iphone(), 1);
    dev.getModeError = C.LIBUSB_TRANSFER_STALL;
    expect((await open(dev)).kind).toBe('claimed');
    expect(dev.controls.some((c) => c.request === C.APPLE_REQUEST_SET_MODE)).toBe(false);
  });

  it('asks for another mode when told to; a 0 reply means the device re-enumerates', async () => {
    const dev = new FakeDevice(iphone(), 1);
    const outcome = await open(dev, 3);
    expect(outcome).toEqual({ kind: 'mode-switched', mode: 3 });
    const setMode = dev.controls.find((c) => c.request === C.APPLE_REQUEST_SET_MODE);
    expect(setMode).toEqual({ requestType: 0xc0, request: 0x52, value: 0, index: 3, length: 1 });
    expect(dev.opened).toBe(false);
    expect(dev.setConfigs).toEqual([]);
  });

  it('carries on in the current mode when SET_MODE is refused or STALLed', async () => {
    const refused = new FakeDevice(iphone(), 1);
    refused.setModeReply = Buffer.from([1]);
    expect((await open(refused, 3)).kind).toBe('claimed');
    const stalled = new FakeDevice(iphone(), 1);
    stalled.setModeReply = C.LIBUSB_TRANSFER_STALL;
    expect((await open(stalled, 3)).kind).toBe('claimed');
  });

  it('a failed claim closes the handle and reports UsbOpenError(claim) with the errno', async () => {
    const dev = new FakeDevice(iphone(), 1);
    dev.claimError = C.LIBUSB_ERROR_BUSY;
    const outcome = await open(dev);
    if (outcome.kind !== 'failed') throw new Error('expected failure');
    expect(outcome.error).toBeInstanceOf(UsbOpenError);
    expect(outcome.error instanceof UsbOpenError && [outcome.error.step, outcome.error.libusbErrno]).toEqual(['claim', C.LIBUSB_ERROR_BUSY]);
    expect(dev.opened).toBe(false);
    expect(dev.closes).toBe(1);
  });

  it('no usbmux configuration → NoMuxInterfaceError, handle closed', async () => {
    const fixture = iphone();
    const dev = new FakeDevice({ device: fixture.device, configs: fixture.configs.slice(0, 2) }, 1);
    const outcome = await open(dev);
    expect(outcome.kind === 'failed' && outcome.error).toBeInstanceOf(NoMuxInterfaceError);
    expect(dev.opened).toBe(false);
  });

  it('an empty serial fails at the serial step', async () => {
    const dev = new FakeDevice(iphone(), 1);
    dev.serial = '';
    const outcome = await open(dev);
    expect(outcome.kind === 'failed' && outcome.error instanceof UsbOpenError && outcome.error.step).toBe('serial');
    expect(dev.closes).toBe(1);
  });
});

describe('libusb numbers', () => {
  it('match node-usb exports', () => {
    expect([C.LIBUSB_TRANSFER_ERROR, C.LIBUSB_TRANSFER_TIMED_OUT, C.LIBUSB_TRANSFER_CANCELLED, C.LIBUSB_TRANSFER_STALL, C.LIBUSB_TRANSFER_NO_DEVICE, C.LIBUSB_TRANSFER_OVERFLOW]).toEqual([
      nodeUsb.usb.LIBUSB_TRANSFER_ERROR,
      nodeUsb.usb.LIBUSB_TRANSFER_TIMED_OUT,
      nodeUsb.usb.LIBUSB_TRANSFER_CANCELLED,
      nodeUsb.usb.LIBUSB_TRANSFER_STALL,
      nodeUsb.usb.LIBUSB_TRANSFER_NO_DEVICE,
      nodeUsb.usb.LIBUSB_TRANSFER_OVERFLOW,
    ]);
    expect([C.LIBUSB_ERROR_IO, C.LIBUSB_ERROR_ACCESS, C.LIBUSB_ERROR_NO_DEVICE, C.LIBUSB_ERROR_NOT_FOUND, C.LIBUSB_ERROR_BUSY, C.LIBUSB_ERROR_PIPE, C.LIBUSB_ERROR_NOT_SUPPORTED]).toEqual([
      nodeUsb.usb.LIBUSB_ERROR_IO,
      nodeUsb.usb.LIBUSB_ERROR_ACCESS,
      nodeUsb.usb.LIBUSB_ERROR_NO_DEVICE,
      nodeUsb.usb.LIBUSB_ERROR_NOT_FOUND,
      nodeUsb.usb.LIBUSB_ERROR_BUSY,
      nodeUsb.usb.LIBUSB_ERROR_PIPE,
      nodeUsb.usb.LIBUSB_ERROR_NOT_SUPPORTED,
    ]);
  });

  it('keep usbmuxd sizes', () => {
    expect([C.USB_MRU, C.NUM_RX_LOOPS, C.USB_MTU, C.OUT_HIGH_WATER]).toEqual([16384, 3, 49152, 196608]);
  });
});
