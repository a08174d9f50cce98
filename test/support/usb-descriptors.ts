/**
 * Descriptor fixtures for the USB unit tests, built like node-usb's descriptor objects (only the
 * fields src/usb reads). The iPhone matches test/usb-emulation/iphone.py: four configurations,
 * usbmux (255/254/2, OUT 0x04, IN 0x85) in configurations 3 and 4.
 */
import type { ConfigDesc, DeviceDesc, EndpointDesc, InterfaceDesc } from '../../src/usb/match.js';

export interface DeviceFixture {
  readonly device: DeviceDesc & { readonly iSerialNumber: number };
  readonly configs: ConfigDesc[];
}

const BULK = 2;
const INTERRUPT = 3;

export function ep(address: number, kind = BULK, wMaxPacketSize = 512): EndpointDesc {
  return { bEndpointAddress: address, bmAttributes: kind, wMaxPacketSize };
}

export function iface(number: number, cls: number, sub: number, proto: number, endpoints: EndpointDesc[] = [], alt = 0): InterfaceDesc {
  return {
    bInterfaceNumber: number,
    bAlternateSetting: alt,
    bInterfaceClass: cls,
    bInterfaceSubClass: sub,
    bInterfaceProtocol: proto,
    endpoints,
  };
}

export function config(value: number, interfaces: InterfaceDesc[][]): ConfigDesc {
  return { bConfigurationValue: value, interfaces };
}

export const ptp = (n = 0): InterfaceDesc => iface(n, 6, 1, 1, [ep(0x81), ep(0x02), ep(0x83, INTERRUPT, 64)]);
export const mux = (n = 1, endpoints: EndpointDesc[] = [ep(0x04), ep(0x85)]): InterfaceDesc => iface(n, 0xff, 0xfe, 2, endpoints);
const ethernet = (n = 2): InterfaceDesc[] => [iface(n, 0xff, 0xfd, 1, [], 0), iface(n, 0xff, 0xfd, 1, [ep(0x06), ep(0x87)], 1)];

export function iphoneConfigs(): ConfigDesc[] {
  return [
    config(1, [[ptp()]]),
    config(2, [[iface(0, 1, 1, 0)]]),
    config(3, [[ptp()], [mux()]]),
    config(4, [[ptp()], [mux()], ethernet()]),
  ];
}

/** A real iPhone in its initial mode (05ac:12a8). */
export function iphone(): DeviceFixture {
  return { device: { idVendor: 0x05ac, idProduct: 0x12a8, bNumConfigurations: 4, iSerialNumber: 3 }, configs: iphoneConfigs() };
}

/** A product id outside every listed range that still carries usbmux (Vision Pro-like 0x12B1). */
export function visionProLike(): DeviceFixture {
  return { device: { idVendor: 0x05ac, idProduct: 0x12b1, bNumConfigurations: 4, iSerialNumber: 3 }, configs: iphoneConfigs() };
}

/** An Apple keyboard: Apple's vendor id, HID only. */
export function appleKeyboard(): DeviceFixture {
  return {
    device: { idVendor: 0x05ac, idProduct: 0x024f, bNumConfigurations: 1, iSerialNumber: 0 },
    configs: [config(1, [[iface(0, 3, 1, 1, [ep(0x81, INTERRUPT, 8)])]])],
  };
}

/** Not Apple at all, though it has an interface shaped like usbmux. */
export function nonApple(): DeviceFixture {
  return { device: { idVendor: 0x18d1, idProduct: 0x4ee7, bNumConfigurations: 1, iSerialNumber: 3 }, configs: [config(1, [[mux(0)]])] };
}

/** A device with `n` configurations, the last one holding `lastInterfaces`. */
export function withConfigurations(n: number, lastInterfaces: InterfaceDesc[][]): DeviceFixture {
  const configs: ConfigDesc[] = [];
  for (let v = 1; v < n; v++) configs.push(config(v, [[ptp()]]));
  configs.push(config(n, lastInterfaces));
  return { device: { idVendor: 0x05ac, idProduct: 0x12a8, bNumConfigurations: n, iSerialNumber: 3 }, configs };
}

/** A USB string descriptor: bLength, type 3, UTF-16LE units. */
export function stringDescriptor(text: string): Buffer {
  const body = Buffer.from(text, 'utf16le');
  return Buffer.concat([Buffer.from([2 + body.length, 3]), body]);
}
