/**
 * USB devices into the directory: each transport that speaks the mux protocol (a USB interface, or
 * the in-memory pair of `--virtual-device`) becomes one MuxSession, added to the device directory
 * as that device's link. The mux settings are checked once, here, at startup.
 */
import type { Device, DeviceSink, UsbDeviceInfo } from '../devices/api.js';
import { CONNECT_TIMEOUT_MS } from '../devices/constants.js';
import { InvalidConfigError } from '../errors.js';
import { ACK_TIMEOUT_MS, END_ACK_TIMEOUT_MS, SHORT_TRANSFER_QUANTUM, TX_WINDOW, VERSION_TIMEOUT_MS, WINDOW_SHIFT } from './constants.js';
import { MuxSession } from './session.js';
import type { SessionOptions } from './session.js';
import type { Transport } from './transport.js';

export interface MuxProviderOptions {
  /** Default connect timeout in ms (CONNECT_TIMEOUT_MS). */
  readonly connectTimeoutMs?: number;
  /** After a client's end, reset a device that acks nothing new for this many ms (END_ACK_TIMEOUT_MS). */
  readonly endTimeoutMs?: number;
  /** Wait in ms for the device's VERSION reply (VERSION_TIMEOUT_MS). */
  readonly versionTimeoutMs?: number;
  /** Safety-net delayed-ACK timer in ms (ACK_TIMEOUT_MS). */
  readonly ackDelayMs?: number;
  /** Receive window we advertise per connection, bytes; a multiple of 256 up to 0xFFFF00 (TX_WINDOW). */
  readonly window?: number;
  /**
   * Bytes; an IN transfer whose length is not a multiple of this ends any mux packet in progress
   * (SHORT_TRANSFER_QUANTUM, true of USB). 1 lets packets span transfers at any byte.
   */
  readonly shortTransferQuantum?: number;
}

const MAX_WINDOW = 0xffff << WINDOW_SHIFT;

function positive(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) throw new InvalidConfigError(`${name} must be a positive number, got ${value}`);
  return value;
}

export class MuxProvider {
  private readonly sessionOptions: SessionOptions;
  /** Each device's session, for its counters (benchmarks, diagnostics). */
  private readonly sessions = new WeakMap<Device, MuxSession>();

  constructor(
    private readonly directory: DeviceSink,
    options: MuxProviderOptions = {},
  ) {
    const window = positive('window', options.window ?? TX_WINDOW);
    if (window % (1 << WINDOW_SHIFT) !== 0 || window > MAX_WINDOW) {
      throw new InvalidConfigError(`window must be a multiple of 256 up to ${MAX_WINDOW}, got ${window}`);
    }
    this.sessionOptions = {
      connectTimeoutMs: positive('connectTimeoutMs', options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS),
      endTimeoutMs: positive('endTimeoutMs', options.endTimeoutMs ?? END_ACK_TIMEOUT_MS),
      versionTimeoutMs: positive('versionTimeoutMs', options.versionTimeoutMs ?? VERSION_TIMEOUT_MS),
      ackDelayMs: positive('ackDelayMs', options.ackDelayMs ?? ACK_TIMEOUT_MS),
      window,
      shortTransferQuantum: positive('shortTransferQuantum', options.shortTransferQuantum ?? SHORT_TRANSFER_QUANTUM),
    };
  }

  /** Take a new device: the directory gives it a DeviceID, its session starts the handshake. */
  addDevice(transport: Transport, info: UsbDeviceInfo): Device {
    let session: MuxSession | undefined;
    const device = this.directory.add(info, (context) => (session = new MuxSession(transport, context, this.sessionOptions)));
    if (session !== undefined) this.sessions.set(device, session);
    return device;
  }

  /** The mux session behind a device this provider added. */
  sessionOf(device: Device): MuxSession | undefined {
    return this.sessions.get(device);
  }
}
