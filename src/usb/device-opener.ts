/**
 * DeviceOpener: from a matching node-usb Device to a claimed usbmux interface.
 *
 *   opening ──► reading-serial ──► mode ──► configuring ──► claiming ──► claimed
 *      │              │              │           │              │
 *      │              │              ├─► mode-switched  (SET_MODE answered 0: the device drops off
 *      │              │              │                   the bus and comes back in the new mode)
 *      └──────────────┴──────────────┴───────────┴──────────────┴──► failed (handle closed, logged once)
 *
 * opening        libusb open.
 * reading-serial string descriptor 0 (first LANGID), then iSerialNumber in that language (§1.6).
 * mode           GET_MODE (0xC0/0x45, reply only logged; a STALL is normal on some devices), then
 *                SET_MODE (0xC0/0x52) only if USBMUXD_DEFAULT_DEVICE_MODE asks for a mode other
 *                than the one guessed from the descriptors (default 1: a mode-1 device is left alone).
 * configuring    pick the highest configuration with an exact 255/254/2 interface (match.ts); if it
 *                is not the active one (0 = unconfigured counts), detach kernel drivers from that
 *                configuration's interfaces and set it; on failure try the next lower candidate.
 * claiming       claim the interface, find its bulk endpoints.
 *
 * Errors branch on the LibUSBException errno, never on its text. Control requests are control
 * plane, so promises are fine here.
 */
import type { ConfigDescriptor, DeviceDescriptor, Endpoint } from 'usb';
import { InEndpoint, OutEndpoint } from 'usb';
import type { Logger } from '../log.js';
import {
  APPLE_REQUEST_GET_MODE,
  APPLE_REQUEST_SET_MODE,
  CONTROL_TIMEOUT_MS,
  DESCRIPTOR_TYPE_STRING,
  GET_MODE_LENGTH,
  LIBUSB_ERROR_NO_DEVICE,
  LIBUSB_ERROR_NOT_FOUND,
  LIBUSB_ERROR_NOT_SUPPORTED,
  REQUEST_GET_DESCRIPTOR,
  REQUEST_TYPE_STANDARD_IN,
  REQUEST_TYPE_VENDOR_IN,
  SET_MODE_LENGTH,
  STRING_DESCRIPTOR_MAX_LENGTH,
} from './constants.js';
import { NoMuxInterfaceError, UsbOpenError, libusbErrno } from './errors.js';
import type { OpenStep } from './errors.js';
import { decodeSerialDescriptor, guessMode, parseLangId, selectMuxConfigurations, shouldSwitchMode } from './match.js';
import type { MuxSelection } from './match.js';
import type { ClaimedInterface } from './usb-transport.js';

/**
 * The node-usb Device surface the opener needs (usb.Device satisfies it); tests pass a fake.
 * Interface numbers, not indexes, go to the `__` methods (libusb's own arguments).
 */
export interface OpenableDevice {
  readonly busNumber: number;
  readonly deviceAddress: number;
  readonly deviceDescriptor: DeviceDescriptor;
  readonly configDescriptor: ConfigDescriptor | undefined;
  readonly allConfigDescriptors: ConfigDescriptor[];
  timeout: number;
  open(defaultConfig?: boolean): void;
  close(): void;
  controlTransfer(
    bmRequestType: number,
    bRequest: number,
    wValue: number,
    wIndex: number,
    length: number,
    callback: (error: Error | undefined, buffer: Buffer | number | undefined) => void,
  ): unknown;
  setConfiguration(desired: number, callback: (error: Error | undefined) => void): void;
  interface(interfaceNumber: number): { endpoint(address: number): Endpoint | undefined };
  __claimInterface(interfaceNumber: number): void;
  __releaseInterface(interfaceNumber: number, callback: (error?: Error) => void): void;
  __isKernelDriverActive(interfaceNumber: number): boolean;
  __detachKernelDriver(interfaceNumber: number): void;
}

export type OpenerState = 'opening' | 'reading-serial' | 'mode' | 'configuring' | 'claiming' | 'claimed' | 'mode-switched' | 'failed';

export type OpenOutcome =
  | { readonly kind: 'claimed'; readonly claimed: ClaimedInterface; readonly usbSerial: string; readonly selection: MuxSelection }
  | { readonly kind: 'mode-switched'; readonly mode: number }
  | { readonly kind: 'failed'; readonly error: Error };

export interface OpenerOptions {
  readonly log: Logger;
  /** Desired device mode (USBMUXD_DEFAULT_DEVICE_MODE, parsed); 1 leaves mode-1 devices alone. */
  readonly desiredMode: number;
}

function stepError(step: OpenStep, message: string, cause: unknown): Error {
  if (cause instanceof UsbOpenError || cause instanceof NoMuxInterfaceError) return cause;
  return new UsbOpenError(step, libusbErrno(cause), message, { cause });
}

export class DeviceOpener {
  state: OpenerState = 'opening';
  private opened = false;

  constructor(
    private readonly device: OpenableDevice,
    private readonly options: OpenerOptions,
  ) {}

  /** Run the machine once. Never rejects: a failure closes the handle, is logged once and returned. */
  async run(): Promise<OpenOutcome> {
    const { log } = this.options;
    try {
      this.state = 'opening';
      this.openHandle();
      this.state = 'reading-serial';
      const usbSerial = await this.readSerial();
      this.state = 'mode';
      const switched = await this.negotiateMode();
      if (switched !== undefined) {
        this.state = 'mode-switched';
        this.closeHandle();
        log.info({ mode: switched }, 'device is switching USB mode; waiting for it to come back');
        return { kind: 'mode-switched', mode: switched };
      }
      this.state = 'configuring';
      const selection = await this.configure();
      this.state = 'claiming';
      const claimed = this.claim(selection);
      this.state = 'claimed';
      log.debug({ config: selection.configurationValue, iface: selection.interfaceNumber, usbSerial }, 'claimed the usbmux interface');
      return { kind: 'claimed', claimed, usbSerial, selection };
    } catch (err) {
      const failedIn = this.state;
      this.state = 'failed';
      this.closeHandle();
      const error = err instanceof Error ? err : new Error(String(err));
      if (libusbErrno(error) === LIBUSB_ERROR_NO_DEVICE) log.info({ step: failedIn }, 'device left while it was being opened');
      else log.warn({ err: error, step: failedIn }, 'could not open the USB device; ignoring it until it is replugged');
      return { kind: 'failed', error };
    }
  }

  private openHandle(): void {
    try {
      this.device.open();
      this.opened = true;
      this.device.timeout = CONTROL_TIMEOUT_MS;
    } catch (err) {
      throw stepError('open', 'libusb open failed', err);
    }
  }

  private closeHandle(): void {
    if (!this.opened) return;
    this.opened = false;
    try {
      this.device.close();
    } catch (err) {
      this.options.log.debug({ err }, 'closing the USB handle failed');
    }
  }

  private control(requestType: number, request: number, value: number, index: number, length: number): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      this.device.controlTransfer(requestType, request, value, index, length, (error, data) => {
        if (error) reject(error);
        else resolve(Buffer.isBuffer(data) ? data : Buffer.alloc(0));
      });
    });
  }

  private async readSerial(): Promise<string> {
    const index = this.device.deviceDescriptor.iSerialNumber;
    if (index === 0) throw new UsbOpenError('serial', undefined, 'device has no serial number string');
    try {
      const wValue = DESCRIPTOR_TYPE_STRING << 8;
      const langs = await this.control(REQUEST_TYPE_STANDARD_IN, REQUEST_GET_DESCRIPTOR, wValue, 0, STRING_DESCRIPTOR_MAX_LENGTH);
      const langId = parseLangId(langs);
      if (langId === undefined) throw new UsbOpenError('serial', undefined, 'device reports no string language');
      const raw = await this.control(REQUEST_TYPE_STANDARD_IN, REQUEST_GET_DESCRIPTOR, wValue | index, langId, STRING_DESCRIPTOR_MAX_LENGTH);
      const serial = decodeSerialDescriptor(raw);
      if (serial.length === 0) throw new UsbOpenError('serial', undefined, 'empty serial number');
      return serial;
    } catch (err) {
      throw stepError('serial', 'reading the serial number failed', err);
    }
  }

  /** Returns the mode the device is switching to, or undefined to carry on in the current mode. */
  private async negotiateMode(): Promise<number | undefined> {
    const { log, desiredMode } = this.options;
    try {
      const reply = await this.control(REQUEST_TYPE_VENDOR_IN, APPLE_REQUEST_GET_MODE, 0, 0, GET_MODE_LENGTH);
      log.debug({ reply: reply.toString('hex') }, 'GET_MODE');
    } catch (err) {
      if (libusbErrno(err) === LIBUSB_ERROR_NO_DEVICE) throw stepError('mode', 'device gone', err);
      log.debug({ errno: libusbErrno(err) }, 'GET_MODE not answered; carrying on');
    }
    const guess = guessMode(this.device.deviceDescriptor.bNumConfigurations, this.device.allConfigDescriptors);
    if (!shouldSwitchMode(desiredMode, guess)) return undefined;
    try {
      const reply = await this.control(REQUEST_TYPE_VENDOR_IN, APPLE_REQUEST_SET_MODE, 0, desiredMode, SET_MODE_LENGTH);
      if (reply.length >= 1 && reply.readUInt8(0) === 0) return desiredMode;
      log.info({ guess, desiredMode, reply: reply.toString('hex') }, 'device refused the USB mode switch; using its current mode');
    } catch (err) {
      if (libusbErrno(err) === LIBUSB_ERROR_NO_DEVICE) throw stepError('mode', 'device gone', err);
      log.info({ guess, desiredMode, errno: libusbErrno(err) }, 'USB mode switch failed; using the current mode');
    }
    return undefined;
  }

  private async configure(): Promise<MuxSelection> {
    const candidates = selectMuxConfigurations(this.device.allConfigDescriptors);
    if (candidates.length === 0) throw new NoMuxInterfaceError('no configuration has a usable usbmux interface');
    const current = this.device.configDescriptor?.bConfigurationValue ?? 0;
    let lastError: unknown;
    for (const candidate of candidates) {
      if (candidate.configurationValue === current) return candidate;
      this.detachKernelDrivers(candidate.configurationInterfaces);
      try {
        await this.setConfiguration(candidate.configurationValue);
        this.options.log.debug({ from: current, to: candidate.configurationValue }, 'set configuration');
        return candidate;
      } catch (err) {
        if (libusbErrno(err) === LIBUSB_ERROR_NO_DEVICE) throw stepError('configure', 'device gone', err);
        this.options.log.debug({ config: candidate.configurationValue, errno: libusbErrno(err) }, 'set configuration failed; trying the next');
        lastError = err;
      }
    }
    throw stepError('configure', 'no usbmux configuration could be set', lastError);
  }

  private setConfiguration(value: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.device.setConfiguration(value, (error) => {
        if (error) reject(error);
        else resolve();
      });
    });
  }

  private detachKernelDrivers(interfaces: readonly number[]): void {
    for (const n of interfaces) {
      try {
        if (this.device.__isKernelDriverActive(n)) this.device.__detachKernelDriver(n);
      } catch (err) {
        const errno = libusbErrno(err);
        if (errno === LIBUSB_ERROR_NO_DEVICE) throw stepError('configure', 'device gone', err);
        // NOT_FOUND (no driver, ENODATA) and NOT_SUPPORTED are expected; anything else is worth a line.
        if (errno !== LIBUSB_ERROR_NOT_FOUND && errno !== LIBUSB_ERROR_NOT_SUPPORTED) {
          this.options.log.debug({ iface: n, errno }, 'detaching the kernel driver failed');
        }
      }
    }
  }

  private claim(selection: MuxSelection): ClaimedInterface {
    const device = this.device;
    const ifaceNumber = selection.interfaceNumber;
    try {
      device.__claimInterface(ifaceNumber);
    } catch (err) {
      throw stepError('claim', `claiming interface ${ifaceNumber} failed`, err);
    }
    let bulkIn: Endpoint | undefined;
    let bulkOut: Endpoint | undefined;
    try {
      const iface = device.interface(ifaceNumber);
      bulkIn = iface.endpoint(selection.inEndpoint);
      bulkOut = iface.endpoint(selection.outEndpoint);
    } catch (err) {
      this.releaseQuietly(ifaceNumber);
      throw stepError('endpoints', 'interface not found after configuration', err);
    }
    if (!(bulkIn instanceof InEndpoint) || !(bulkOut instanceof OutEndpoint)) {
      this.releaseQuietly(ifaceNumber);
      throw new UsbOpenError('endpoints', undefined, 'bulk endpoints not found on the claimed interface');
    }
    const log = this.options.log;
    // From here on the transport owns the handle; the opener no longer closes it.
    this.opened = false;
    return {
      bulkIn,
      bulkOut,
      outMaxPacketSize: selection.outMaxPacketSize,
      release(done: (err?: Error) => void): void {
        device.__releaseInterface(ifaceNumber, (error) => {
          // A gone device cannot be released; closing the handle is all that is left to do.
          if (error && libusbErrno(error) !== LIBUSB_ERROR_NO_DEVICE) log.debug({ errno: libusbErrno(error) }, 'release failed');
          try {
            device.close();
            done();
          } catch (err) {
            done(err instanceof Error ? err : new Error(String(err)));
          }
        });
      },
    };
  }

  private releaseQuietly(ifaceNumber: number): void {
    this.device.__releaseInterface(ifaceNumber, () => undefined);
  }
}
