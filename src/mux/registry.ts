/**
 * The device set: DeviceIDs, one MuxSession per device, and the attached / detached / paired
 * events the server and preflight listen to. A device becomes visible as soon as its version
 * handshake completes, always: preflight (src/preflight) runs beside it and never hides a device
 * (usbmuxd keeps a device hidden until its preflight ends, and for good when lockdown fails).
 */
import { EventEmitter } from 'node:events';
import { InvalidConfigError } from '../errors.js';
import type { Logger } from '../log.js';
import type { DeviceDirectory, DeviceInfo, DeviceRegistryEvents, MuxDevice } from './api.js';
import { ACK_TIMEOUT_MS, CONNECT_TIMEOUT_MS, SHORT_TRANSFER_QUANTUM, TX_WINDOW, VERSION_TIMEOUT_MS, WINDOW_SHIFT } from './constants.js';
import { MuxSession } from './session.js';
import type { SessionOwner } from './session.js';
import type { Transport } from './transport.js';

export interface DeviceRegistryOptions {
  log: Logger;
  /** Default connect timeout in ms (CONNECT_TIMEOUT_MS). */
  connectTimeoutMs?: number;
  /** Wait in ms for the device's VERSION reply (VERSION_TIMEOUT_MS). */
  versionTimeoutMs?: number;
  /** Safety-net delayed-ACK timer in ms (ACK_TIMEOUT_MS). */
  ackDelayMs?: number;
  /** Receive window we advertise per connection, bytes; a multiple of 256 up to 0xFFFF00 (TX_WINDOW). */
  window?: number;
  /**
   * Bytes; an IN transfer whose length is not a multiple of this ends any mux packet in progress
   * (SHORT_TRANSFER_QUANTUM, true of USB). 1 lets packets span transfers at any byte.
   */
  shortTransferQuantum?: number;
}

const MAX_WINDOW = 0xffff << WINDOW_SHIFT;

function positive(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) throw new InvalidConfigError(`${name} must be a positive number, got ${value}`);
  return value;
}

export class DeviceRegistry extends EventEmitter<DeviceRegistryEvents> implements DeviceDirectory, SessionOwner {
  /** Next DeviceID: from 1, never reused within a run. */
  private nextId = 1;
  /** Every known device, visible or not, in DeviceID order (Map keeps insertion order). */
  private readonly devices = new Map<number, MuxSession>();
  private readonly log: Logger;
  private readonly connectTimeoutMs: number;
  private readonly versionTimeoutMs: number;
  private readonly ackDelayMs: number;
  private readonly window: number;
  private readonly shortTransferQuantum: number;

  constructor(options: DeviceRegistryOptions) {
    super();
    this.log = options.log;
    this.connectTimeoutMs = positive('connectTimeoutMs', options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS);
    this.versionTimeoutMs = positive('versionTimeoutMs', options.versionTimeoutMs ?? VERSION_TIMEOUT_MS);
    this.ackDelayMs = positive('ackDelayMs', options.ackDelayMs ?? ACK_TIMEOUT_MS);
    const window = positive('window', options.window ?? TX_WINDOW);
    if (window % (1 << WINDOW_SHIFT) !== 0 || window > MAX_WINDOW) {
      throw new InvalidConfigError(`window must be a multiple of 256 up to ${MAX_WINDOW}, got ${window}`);
    }
    this.window = window;
    this.shortTransferQuantum = positive('shortTransferQuantum', options.shortTransferQuantum ?? SHORT_TRANSFER_QUANTUM);
  }

  /** Take a new device: give it the next DeviceID and start its handshake. */
  addDevice(transport: Transport, info: DeviceInfo): MuxDevice {
    const id = this.nextId++;
    const session = new MuxSession(transport, this, {
      id,
      info,
      log: this.log.child({ dev: id }),
      connectTimeoutMs: this.connectTimeoutMs,
      versionTimeoutMs: this.versionTimeoutMs,
      ackDelayMs: this.ackDelayMs,
      window: this.window,
      shortTransferQuantum: this.shortTransferQuantum,
    });
    this.devices.set(id, session);
    this.log.info({ dev: id, udid: info.serial, location: info.locationId }, 'device added');
    session.start();
    return session;
  }

  list(): MuxDevice[] {
    const visible: MuxDevice[] = [];
    for (const session of this.devices.values()) if (session.visible) visible.push(session);
    return visible;
  }

  get(id: number): MuxDevice | undefined {
    return this.devices.get(id);
  }

  count(): number {
    return this.devices.size;
  }

  markPaired(id: number): void {
    const session = this.devices.get(id);
    if (session === undefined) {
      this.log.debug({ dev: id }, 'markPaired for an unknown device ignored');
      return;
    }
    this.emit('paired', session);
  }

  /** RST every connection of every device, let the RSTs reach the transports, close them. */
  async shutdown(): Promise<void> {
    await Promise.all([...this.devices.values()].map((session) => session.shutdown()));
  }

  onActive(session: MuxSession): void {
    this.log.info({ dev: session.id, udid: session.info.serial }, 'device attached');
    this.emit('attached', session);
  }

  onDead(session: MuxSession, err: Error | undefined): void {
    this.devices.delete(session.id);
    if (!session.wasAnnounced) {
      this.log.info({ dev: session.id, err }, 'device removed before its handshake completed');
      return;
    }
    this.log.info({ dev: session.id }, 'device detached');
    this.emit('detached', session);
  }
}
