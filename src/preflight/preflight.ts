/**
 * The preflight manager: one DevicePreflight per device, started when the registry announces the
 * device (Attached has gone out already: preflight never hides a device), cancelled when it is
 * detached or the daemon stops.
 *
 *   registry 'attached' ──▶ new DevicePreflight(device).start()   (at most one per DeviceID;
 *                                                                  USB devices only)
 *   registry 'paired'   ──▶ preflight.pairedElsewhere()           (a client saved a record)
 *   registry 'detached' ──▶ preflight.cancel()                     (connections reset, forgotten)
 *   stop()              ──▶ cancel all, wait (bounded) until no step is in flight
 *
 * It talks to lockdownd through the device directory (Device.connect), not through our own
 * client socket as usbmuxd does, so it never competes with clients for the socket's limits.
 */
import type { Logger } from '../log.js';
import type { DeviceDirectory, Device } from '../devices/index.js';
import type { PairRecordStore } from '../pairrecords/index.js';
import { DevicePreflight } from './device-preflight.js';
import type { PreflightState } from './device-preflight.js';
import { LOCKDOWN_TIMEOUT_MS } from '../lockdown/index.js';

export interface PreflightOptions {
  readonly directory: DeviceDirectory;
  readonly store: PairRecordStore;
  readonly log: Logger;
  /** Bound on every lockdown round trip (LOCKDOWN_TIMEOUT_MS). */
  readonly timeoutMs?: number;
  /** How long stop() waits for steps in flight (a record being saved) before it returns. */
  readonly stopTimeoutMs?: number;
}

const STOP_TIMEOUT_MS = 2000;

export class Preflight {
  private readonly directory: DeviceDirectory;
  private readonly store: PairRecordStore;
  private readonly log: Logger;
  private readonly timeoutMs: number;
  private readonly stopTimeoutMs: number;
  private readonly running = new Map<number, DevicePreflight>();
  private started = false;

  constructor(options: PreflightOptions) {
    this.directory = options.directory;
    this.store = options.store;
    this.log = options.log;
    this.timeoutMs = options.timeoutMs ?? LOCKDOWN_TIMEOUT_MS;
    this.stopTimeoutMs = options.stopTimeoutMs ?? STOP_TIMEOUT_MS;
  }

  /** Listen to the registry, and preflight the devices it already lists. */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.directory.on('attached', this.onAttached);
    this.directory.on('detached', this.onDetached);
    this.directory.on('paired', this.onPaired);
    for (const device of this.directory.list()) this.onAttached(device);
  }

  /** Where the preflight of a device stands (undefined when it has none, e.g. detached). */
  stateOf(deviceId: number): PreflightState | undefined {
    return this.running.get(deviceId)?.state;
  }

  /** Settles once the device's preflight has no step in flight (tests, diagnostics). */
  settled(deviceId: number): Promise<void> {
    return this.running.get(deviceId)?.settled() ?? Promise.resolve();
  }

  /** Cancel every preflight and stop listening; resolves when nothing is in flight (bounded). */
  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    this.directory.off('attached', this.onAttached);
    this.directory.off('detached', this.onDetached);
    this.directory.off('paired', this.onPaired);
    const all = [...this.running.values()];
    this.running.clear();
    for (const p of all) p.cancel('daemon stopping');
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => { timer = setTimeout(resolve, this.stopTimeoutMs); });
    await Promise.race([Promise.all(all.map((p) => p.settled())), deadline]);
    clearTimeout(timer);
  }

  private readonly onAttached = (device: Device): void => {
    // A network device is only ever announced once its pair record has been proven in a session,
    // and phones refuse to pair over the network anyway: there is nothing to preflight.
    if (device.info.connectionType !== 'USB') return;
    if (this.running.has(device.id)) return;
    const preflight = new DevicePreflight(device, {
      store: this.store,
      markPaired: (id) => { this.directory.markPaired(id); },
      log: this.log,
      timeoutMs: this.timeoutMs,
    });
    this.running.set(device.id, preflight);
    preflight.start();
  };

  private readonly onDetached = (device: Device): void => {
    const preflight = this.running.get(device.id);
    if (preflight === undefined) return;
    this.running.delete(device.id);
    preflight.cancel('device detached');
  };

  private readonly onPaired = (device: Device): void => {
    this.running.get(device.id)?.pairedElsewhere();
  };
}
