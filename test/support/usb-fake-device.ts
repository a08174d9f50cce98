/**
 * A node-usb Device stand-in for the USB unit tests, driven by descriptor fixtures
 * (test/support/usb-descriptors.ts). It answers the control requests the opener sends, can fail
 * set-configuration / claim on demand, and records everything it was asked to do.
 */
import * as nodeUsb from 'usb';
import type { ConfigDescriptor, Device, DeviceDescriptor, Endpoint } from 'usb';
import * as C from '../../src/usb/constants.js';
import type { BusDevice } from '../../src/usb/bus.js';
import { stringDescriptor } from './usb-descriptors.js';
import type { DeviceFixture } from './usb-descriptors.js';

/**
 * A real node-usb InEndpoint (the opener checks `instanceof`) whose transfers are simulated: no
 * native transfer; a submitted one stays in flight until cancelled, then calls back CANCELLED on
 * the next turn (as libusb does).
 */
export class FakeInEndpoint extends nodeUsb.InEndpoint {
  override makeTransfer(_timeout: number, callback: (error: nodeUsb.LibUSBException | undefined, buffer: Buffer, actualLength: number) => void): nodeUsb.Transfer {
    // A LibUSBException cannot be constructed from JS; the transport reads only its errno.
    const report = callback as unknown as (error: Error | undefined, buffer: Buffer, actualLength: number) => void;
    let buffer: Buffer | undefined;
    const transfer = {
      submit(next: Buffer): unknown {
        buffer = next;
        return transfer;
      },
      cancel(): boolean {
        const held = buffer;
        if (held === undefined) return false;
        buffer = undefined;
        setImmediate(() => {
          report(usbError(C.LIBUSB_TRANSFER_CANCELLED), held, 0);
        });
        return true;
      },
    };
    return transfer as unknown as nodeUsb.Transfer;
  }
}

export type UsbError = Error & { errno: number };

/** What node-usb's LibUSBException looks like (it cannot be constructed from JS). */
export function usbError(errno: number): UsbError {
  return Object.assign(new Error(`libusb ${errno}`), { errno });
}

export interface ControlCall {
  readonly requestType: number;
  readonly request: number;
  readonly value: number;
  readonly index: number;
  readonly length: number;
}

/** A node-usb Device stand-in driven by descriptor fixtures; records what the opener does. */
export class FakeDevice implements BusDevice {
  readonly busNumber: number = 1;
  readonly deviceAddress: number;
  readonly portNumbers: readonly number[];
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

  constructor(fixture: DeviceFixture, active: number, address = 2) {
    this.deviceAddress = address;
    this.portNumbers = [address - 1];
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
        return address & 0x80 ? new FakeInEndpoint(self, desc) : new nodeUsb.OutEndpoint(self, desc);
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
