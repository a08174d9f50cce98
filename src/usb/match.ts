/**
 * Pure decisions about a USB device, from its descriptors alone: is it ours, which configuration
 * and interface carry usbmux, what is its UDID, which mode is it in and should we switch it, how
 * fast is it and where is it. No I/O; node-usb's descriptor objects fit these shapes, and the unit
 * tests feed hand-built fixtures.
 */
import {
  APPLE_MUX_PID_RANGES,
  APPLE_VENDOR_ID,
  CONNECTION_SPEED_BPS,
  DEFAULT_CONNECTION_SPEED_BPS,
  DEFAULT_DEVICE_MODE,
  FALLBACK_MAX_PACKET_SIZE,
  LIBUSB_SPEED_FULL,
  LIBUSB_SPEED_HIGH,
  LIBUSB_SPEED_LOW,
  LIBUSB_SPEED_SUPER,
  LIBUSB_SPEED_SUPER_PLUS,
  LIBUSB_SPEED_UNKNOWN,
  MUX_INTERFACE_CLASS,
  MUX_INTERFACE_PROTOCOL,
  MUX_INTERFACE_SUBCLASS,
  SERIAL_HYPHENATED_LENGTH,
  SERIAL_MAX_CHARS,
} from './constants.js';

/** The endpoint descriptor fields we read (node-usb's EndpointDescriptor fits). */
export interface EndpointDesc {
  readonly bEndpointAddress: number;
  readonly bmAttributes: number;
  readonly wMaxPacketSize: number;
}

/** One alternate setting of an interface (node-usb's InterfaceDescriptor fits). */
export interface InterfaceDesc {
  readonly bInterfaceNumber: number;
  readonly bAlternateSetting: number;
  readonly bInterfaceClass: number;
  readonly bInterfaceSubClass: number;
  readonly bInterfaceProtocol: number;
  readonly endpoints: readonly EndpointDesc[];
}

/** A configuration: interfaces, each a list of alternate settings (node-usb's ConfigDescriptor fits). */
export interface ConfigDesc {
  readonly bConfigurationValue: number;
  readonly interfaces: readonly (readonly InterfaceDesc[])[];
}

/** The device descriptor fields we read (node-usb's DeviceDescriptor fits). */
export interface DeviceDesc {
  readonly idVendor: number;
  readonly idProduct: number;
  readonly bNumConfigurations: number;
}

/** Why a device is handled: its product id is listed, or it exposes a usbmux interface. */
export type MatchReason = 'product-id' | 'mux-interface';

/** The chosen configuration and interface of a device, and its bulk endpoints. */
export interface MuxSelection {
  readonly configurationValue: number;
  readonly interfaceNumber: number;
  /** Every interface number of this configuration (kernel drivers are detached from all). */
  readonly configurationInterfaces: readonly number[];
  readonly inEndpoint: number;
  readonly outEndpoint: number;
  /** wMaxPacketSize of the OUT endpoint in bytes; decides the zero-length-packet rule. */
  readonly outMaxPacketSize: number;
}

const ENDPOINT_DIR_IN = 0x80;
const TRANSFER_TYPE_MASK = 0x03;
const TRANSFER_TYPE_BULK = 2;
/** Bits 0..10 of wMaxPacketSize are the size (USB 2.0 §9.6.6). */
const MAX_PACKET_SIZE_MASK = 0x7ff;

/** True for a product id in one of the usbmux ranges. */
export function isMuxProductId(productId: number): boolean {
  return APPLE_MUX_PID_RANGES.some((r) => productId >= r.first && productId <= r.last);
}

/** True for class 255 / subclass 254 / protocol 2, all three (HEAD usbmuxd accepts any one). */
export function isMuxInterface(iface: InterfaceDesc): boolean {
  return (
    iface.bInterfaceClass === MUX_INTERFACE_CLASS &&
    iface.bInterfaceSubClass === MUX_INTERFACE_SUBCLASS &&
    iface.bInterfaceProtocol === MUX_INTERFACE_PROTOCOL
  );
}

/** True when any alternate setting of any interface of any configuration is a usbmux interface. */
export function hasMuxInterface(configs: readonly ConfigDesc[]): boolean {
  return configs.some((c) => c.interfaces.some((alts) => alts.some(isMuxInterface)));
}

/**
 * Whether we handle this device: Apple's vendor id and a listed product id, or any usbmux
 * interface (so a new product such as 0x12B1 needs no code change). undefined = not ours.
 */
export function matchDevice(device: DeviceDesc, configs: readonly ConfigDesc[]): MatchReason | undefined {
  if (device.idVendor !== APPLE_VENDOR_ID) return undefined;
  if (isMuxProductId(device.idProduct)) return 'product-id';
  return hasMuxInterface(configs) ? 'mux-interface' : undefined;
}

function bulkPair(iface: InterfaceDesc): { in: EndpointDesc; out: EndpointDesc } | undefined {
  if (iface.endpoints.length !== 2) return undefined;
  let inEp: EndpointDesc | undefined;
  let outEp: EndpointDesc | undefined;
  for (const ep of iface.endpoints) {
    if ((ep.bmAttributes & TRANSFER_TYPE_MASK) !== TRANSFER_TYPE_BULK) return undefined;
    if ((ep.bEndpointAddress & ENDPOINT_DIR_IN) !== 0) inEp = ep;
    else outEp = ep;
  }
  return inEp && outEp ? { in: inEp, out: outEp } : undefined;
}

/** The usable wMaxPacketSize, or the 64-byte fallback when the descriptor says 0 (§1.5). */
export function maxPacketSize(ep: EndpointDesc): number {
  const size = ep.wMaxPacketSize & MAX_PACKET_SIZE_MASK;
  return size > 0 ? size : FALLBACK_MAX_PACKET_SIZE;
}

/**
 * Configurations that carry a usable usbmux interface, highest configuration value first (the
 * opener tries the next one when setting a configuration fails). Usable: alternate setting 0,
 * exactly 255/254/2, exactly two endpoints, one bulk IN and one bulk OUT.
 */
export function selectMuxConfigurations(configs: readonly ConfigDesc[]): MuxSelection[] {
  const found: MuxSelection[] = [];
  for (const config of configs) {
    const numbers: number[] = [];
    let pick: MuxSelection | undefined;
    for (const alts of config.interfaces) {
      const alt0 = alts.find((a) => a.bAlternateSetting === 0);
      if (!alt0) continue;
      numbers.push(alt0.bInterfaceNumber);
      if (pick || !isMuxInterface(alt0)) continue;
      const pair = bulkPair(alt0);
      if (!pair) continue;
      pick = {
        configurationValue: config.bConfigurationValue,
        interfaceNumber: alt0.bInterfaceNumber,
        configurationInterfaces: numbers,
        inEndpoint: pair.in.bEndpointAddress,
        outEndpoint: pair.out.bEndpointAddress,
        outMaxPacketSize: maxPacketSize(pair.out),
      };
    }
    if (pick) found.push(pick);
  }
  return found.sort((a, b) => b.configurationValue - a.configurationValue);
}

/** The first LANGID of string descriptor 0 (bytes 2..3, LE), or undefined when there is none. */
export function parseLangId(descriptor: Buffer): number | undefined {
  if (descriptor.length < 4) return undefined;
  const declared = descriptor.readUInt8(0);
  if (declared < 4) return undefined;
  return descriptor.readUInt16LE(2);
}

/**
 * A string descriptor (2-byte header, then UTF-16LE) to ASCII as usbmuxd does (§1.6): a unit
 * whose high byte is set or whose low byte is ≥ 0x80 becomes '?', a NUL unit ends the string,
 * at most 255 characters are kept. The length is the smaller of bLength and the bytes received.
 */
export function decodeSerialDescriptor(descriptor: Buffer): string {
  if (descriptor.length < 2) return '';
  const end = Math.min(descriptor.readUInt8(0), descriptor.length);
  let out = '';
  for (let off = 2; off + 1 < end && out.length < SERIAL_MAX_CHARS; off += 2) {
    const unit = descriptor.readUInt16LE(off);
    if (unit === 0) break;
    out += unit > 0x7f ? '?' : String.fromCharCode(unit);
  }
  return out;
}

/** The UDID clients see: 24-character serials get a hyphen after the 8th character (§1.6). */
export function serialToUdid(serial: string): string {
  if (serial.length !== SERIAL_HYPHENATED_LENGTH) return serial;
  return `${serial.slice(0, 8)}-${serial.slice(8)}`;
}

/** Device USB modes (§1.3); 0 = unknown. */
export type DeviceMode = 0 | 1 | 2 | 3 | 4 | 5;

const VALERIA_CLASS = 0xff;
const VALERIA_SUBCLASS = 42;
const VALERIA_PROTOCOL = 0xff;
const CDC_CLASS = 2;
const CDC_NCM_SUBCLASS = 0x0d;

/** Guess the current mode from the descriptors, per the table of §1.3. */
export function guessMode(bNumConfigurations: number, configs: readonly ConfigDesc[]): DeviceMode {
  if (bNumConfigurations === 1) return 5;
  if (bNumConfigurations <= 4) return 1;
  if (bNumConfigurations === 6) return 4;
  if (bNumConfigurations !== 5) return 0;
  const fifth = configs.find((c) => c.bConfigurationValue === 5);
  if (!fifth) return 0;
  const alt0s = fifth.interfaces.flatMap((alts) => alts.filter((a) => a.bAlternateSetting === 0));
  if (!alt0s.some(isMuxInterface)) return 0;
  const valeria = alt0s.some(
    (a) => a.bInterfaceClass === VALERIA_CLASS && a.bInterfaceSubClass === VALERIA_SUBCLASS && a.bInterfaceProtocol === VALERIA_PROTOCOL,
  );
  if (valeria) return 2;
  const ncm = alt0s.some((a) => a.bInterfaceClass === CDC_CLASS && a.bInterfaceSubClass === CDC_NCM_SUBCLASS);
  return ncm ? 3 : 0;
}

/**
 * The desired mode from USBMUXD_DEFAULT_DEVICE_MODE with C `atoi` semantics (leading digits, else
 * 0, which means "never switch"); 1 when unset.
 */
export function parseDeviceMode(value: string | undefined): number {
  if (value === undefined) return DEFAULT_DEVICE_MODE;
  const m = /^\s*([+-]?\d+)/.exec(value);
  return m?.[1] === undefined ? 0 : Number.parseInt(m[1], 10);
}

/** Whether to send SET_MODE: desired in 1..5, the guess known, and different (§1.3 step 4). */
export function shouldSwitchMode(desired: number, guess: DeviceMode): boolean {
  return desired >= 1 && desired <= 5 && guess > 0 && guess !== desired;
}

/** ConnectionSpeed in bits/s for a libusb speed code (§1.5). */
export function connectionSpeed(libusbSpeed: number): number {
  return CONNECTION_SPEED_BPS[libusbSpeed] ?? DEFAULT_CONNECTION_SPEED_BPS;
}

/**
 * The libusb speed code for the Linux sysfs `speed` attribute (Mbit/s as text: 1.5, 12, 480,
 * 5000, 10000, 20000). node-usb has no libusb_get_device_speed, so the backend reads sysfs.
 */
export function libusbSpeedFromSysfs(text: string): number {
  switch (text.trim()) {
    case '1.5':
      return LIBUSB_SPEED_LOW;
    case '12':
      return LIBUSB_SPEED_FULL;
    case '480':
      return LIBUSB_SPEED_HIGH;
    case '5000':
      return LIBUSB_SPEED_SUPER;
    case '10000':
    case '20000':
      return LIBUSB_SPEED_SUPER_PLUS;
    default:
      return LIBUSB_SPEED_UNKNOWN;
  }
}

/** usbmuxd's LocationID: `(bus << 16) | address`, both 8-bit libusb values (§1.5). */
export function locationId(bus: number, address: number): number {
  return (((bus & 0xff) << 16) | (address & 0xff)) >>> 0;
}
