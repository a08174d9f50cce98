/**
 * Errors of the USB layer. Each names its consequence: a device that fails while opening is never
 * announced to mux (it stays ignored until it is unplugged, as in usbmuxd); a device whose
 * transport fails is dropped (mux tears down its connections and Listen clients get Detached).
 * Branch on `code` or on `libusbErrno`, never on the message.
 */
import { MuxdError } from '../errors.js';

/** The step of the opener that failed. */
export type OpenStep = 'open' | 'serial' | 'mode' | 'configure' | 'claim' | 'endpoints';

/** Opening, configuring or claiming a device failed; the device is not attached. */
export class UsbOpenError extends MuxdError {
  readonly code = 'MUXD_ERR_USB_OPEN';
  constructor(
    readonly step: OpenStep,
    /** libusb's error number (LIBUSB_ERROR_*), when libusb raised it. */
    readonly libusbErrno: number | undefined,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** An Apple device has no configuration with a usable usbmux interface; it is ignored. */
export class NoMuxInterfaceError extends MuxdError {
  readonly code = 'MUXD_ERR_USB_NO_MUX_INTERFACE';
}

/** The device went away (hotplug detach, or a transfer ended with NO_DEVICE); it is dropped. */
export class UsbDeviceGoneError extends MuxdError {
  readonly code = 'MUXD_ERR_USB_DEVICE_GONE';
}

/** A bulk endpoint stalled; the device is dropped (usbmuxd does the same). */
export class UsbStallError extends MuxdError {
  readonly code = 'MUXD_ERR_USB_STALL';
  constructor(
    readonly direction: 'in' | 'out',
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** Any other bulk transfer failure (error, timeout, overflow, failed submit); the device is dropped. */
export class UsbTransferError extends MuxdError {
  readonly code = 'MUXD_ERR_USB_TRANSFER';
  constructor(
    readonly direction: 'in' | 'out',
    /** The libusb transfer status (LIBUSB_TRANSFER_*) or error number (LIBUSB_ERROR_*). */
    readonly libusbErrno: number | undefined,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** The libusb error number carried by a node-usb exception, if any (never parses the message). */
export function libusbErrno(err: unknown): number | undefined {
  if (err instanceof Error && 'errno' in err && typeof err.errno === 'number') return err.errno;
  return undefined;
}
