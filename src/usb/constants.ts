/**
 * Every number of the USB layer, in one place. Names follow usbmuxd's where it has one, so logs
 * and code can be compared side by side. Origins are given as section numbers of
 * docs/usbmux-protocol.md (the shared protocol reference) and the USB 2.0 specification.
 */

/** Apple's USB vendor id (§1.1). */
export const APPLE_VENDOR_ID = 0x05ac;

/** An inclusive range of USB product ids. */
export interface PidRange {
  readonly first: number;
  readonly last: number;
  /** What the range is, for logs. */
  readonly name: string;
}

/**
 * Product ids handled without looking at the interfaces (§1.1, usbmuxd HEAD). Devices outside
 * these ranges are still handled when they expose a usbmux interface (see match.ts).
 */
export const APPLE_MUX_PID_RANGES: readonly PidRange[] = [
  { first: 0x1290, last: 0x12af, name: 'iOS device' },
  { first: 0x1901, last: 0x1905, name: 'Apple Silicon restore' },
  { first: 0x8600, last: 0x8600, name: 'T2 coprocessor' },
];

/** The usbmux interface: class 255 (vendor specific), subclass 254, protocol 2 (§1.4). */
export const MUX_INTERFACE_CLASS = 0xff;
export const MUX_INTERFACE_SUBCLASS = 0xfe;
export const MUX_INTERFACE_PROTOCOL = 2;

/** Size in bytes of each bulk-IN buffer (usbmuxd `USB_MRU`, §1.7). */
export const USB_MRU = 16384;
/** Bulk-IN transfers kept in flight (usbmuxd `NUM_RX_LOOPS`, §1.7). */
export const NUM_RX_LOOPS = 3;
/** Largest mux packet in bytes we send, header included (usbmuxd `USB_MTU` = 3 × USB_MRU, §1.7). */
export const USB_MTU = 49152;
/** Default ceiling in bytes of in-flight bulk-OUT data before `send()` returns false (ours). */
export const OUT_HIGH_WATER = 4 * USB_MTU;
/** wMaxPacketSize in bytes assumed when the OUT endpoint's cannot be read (§1.5). */
export const FALLBACK_MAX_PACKET_SIZE = 64;
/** Bulk transfer timeout in ms: none (§1.7). */
export const BULK_TIMEOUT_MS = 0;

/** bmRequestType for a device-to-host standard request to the device (USB 2.0 §9.3). */
export const REQUEST_TYPE_STANDARD_IN = 0x80;
/** bmRequestType for Apple's vendor requests: IN, vendor, recipient device (§1.3). */
export const REQUEST_TYPE_VENDOR_IN = 0xc0;
/** Standard GET_DESCRIPTOR request number (USB 2.0 table 9-4). */
export const REQUEST_GET_DESCRIPTOR = 6;
/** String descriptor type, in the high byte of wValue (USB 2.0 table 9-5). */
export const DESCRIPTOR_TYPE_STRING = 3;
/**
 * wLength in bytes for string descriptor reads. A descriptor's bLength is one byte, so 255 holds
 * any string (usbmuxd asks for 1032; the device returns at most bLength either way).
 */
export const STRING_DESCRIPTOR_MAX_LENGTH = 255;
/** Most characters kept from a serial string (§1.6). */
export const SERIAL_MAX_CHARS = 255;
/** Length of the newer UDID format that gets a hyphen after 8 characters (§1.6). */
export const SERIAL_HYPHENATED_LENGTH = 24;

/** Apple vendor request: read the current USB mode; wLength 4 (§1.3). */
export const APPLE_REQUEST_GET_MODE = 0x45;
export const GET_MODE_LENGTH = 4;
/** Apple vendor request: switch to the mode in wIndex; one reply byte, 0 = switching (§1.3). */
export const APPLE_REQUEST_SET_MODE = 0x52;
export const SET_MODE_LENGTH = 1;
/** Timeout in ms of every control request (§1.3, §1.6). */
export const CONTROL_TIMEOUT_MS = 1000;
/** Desired mode when USBMUXD_DEFAULT_DEVICE_MODE is unset: 1, the initial mode (§1.3). */
export const DEFAULT_DEVICE_MODE = 1;
/** Environment variable naming the desired device mode (§1.3, §6.11). */
export const DEVICE_MODE_ENV = 'USBMUXD_DEFAULT_DEVICE_MODE';

/** Interval in ms of the device-list poll used when libusb has no hotplug (§1.2). */
export const POLL_INTERVAL_MS = 1000;
/**
 * How long in ms close() waits for the callbacks of cancelled transfers before it releases the
 * interface anyway (a transfer libusb never completes must not hold the device for good).
 */
export const POLL_END_TIMEOUT_MS = 1000;

/** libusb speed codes (`enum libusb_speed`). node-usb does not expose them; sysfs does (backend). */
export const LIBUSB_SPEED_UNKNOWN = 0;
export const LIBUSB_SPEED_LOW = 1;
export const LIBUSB_SPEED_FULL = 2;
export const LIBUSB_SPEED_HIGH = 3;
export const LIBUSB_SPEED_SUPER = 4;
export const LIBUSB_SPEED_SUPER_PLUS = 5;

/** ConnectionSpeed in bits per second for each libusb speed (§1.5); anything else is HIGH. */
export const CONNECTION_SPEED_BPS: Readonly<Record<number, number>> = {
  [LIBUSB_SPEED_LOW]: 1_500_000,
  [LIBUSB_SPEED_FULL]: 12_000_000,
  [LIBUSB_SPEED_HIGH]: 480_000_000,
  [LIBUSB_SPEED_SUPER]: 5_000_000_000,
  [LIBUSB_SPEED_SUPER_PLUS]: 10_000_000_000,
};
/** The speed reported when it is unknown (§1.5: UNKNOWN counts as high speed). */
export const DEFAULT_CONNECTION_SPEED_BPS = 480_000_000;

/**
 * libusb ABI numbers (libusb.h `enum libusb_transfer_status` / `enum libusb_error`), repeated here
 * so the transport and opener branch on them without loading the native module; a unit test
 * checks them against node-usb's exports. A transfer callback's LibUSBException carries a
 * transfer status; a thrown one (submit, open, claim …) carries a (negative) error number.
 */
export const LIBUSB_TRANSFER_ERROR = 1;
export const LIBUSB_TRANSFER_TIMED_OUT = 2;
export const LIBUSB_TRANSFER_CANCELLED = 3;
export const LIBUSB_TRANSFER_STALL = 4;
export const LIBUSB_TRANSFER_NO_DEVICE = 5;
export const LIBUSB_TRANSFER_OVERFLOW = 6;
export const LIBUSB_ERROR_IO = -1;
export const LIBUSB_ERROR_ACCESS = -3;
export const LIBUSB_ERROR_NO_DEVICE = -4;
export const LIBUSB_ERROR_NOT_FOUND = -5;
export const LIBUSB_ERROR_BUSY = -6;
export const LIBUSB_ERROR_PIPE = -9;
export const LIBUSB_ERROR_NOT_SUPPORTED = -12;
