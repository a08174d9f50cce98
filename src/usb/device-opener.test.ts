import * as nodeUsb from 'usb';
import { describe, expect, it } from 'vitest';
import { iphone } from '../../test/support/usb-descriptors.js';
import { FakeDevice } from '../../test/support/usb-fake-device.js';
import { silentLogger } from '../log.js';
import * as C from './constants.js';
import { DeviceOpener } from './device-opener.js';
import { NoMuxInterfaceError, UsbOpenError } from './errors.js';

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
