/**
 * UsbBackend: finds usbmux devices and hands each one to mux as a Transport.
 *
 * Per device (keyed by "bus-address"), one small state machine:
 *
 *      seen (scan, hotplug attach, poll)        claimed + info
 *   ──────────────────────────────────► opening ──────────────► attached ──┐
 *                                          │ failed / mode switch / not ours   │ transport fails
 *                                          ▼                                   ▼
 *                                       ignored ◄──────────────────────────────┘
 *   any state ── detach / gone from the list ──► (removed; an attached transport ends with
 *                                                 UsbDeviceGoneError → mux sees onClose once)
 *
 * An ignored device is not retried until it leaves and comes back (usbmuxd does the same).
 *
 * Discovery follows usbmuxd (§1.2) on node-usb's hotplug: enumerate at start, then libusb hotplug
 * (`usb.on('attach' | 'detach')` through bus.ts, unref'd so shutdown never waits on it). Where libusb has no
 * hotplug we poll the device list ourselves every `pollIntervalMs` with a set diff (node-usb's own
 * fallback polls every 500 ms on a timer it never unrefs). With `hotplug: false` (-n) arrivals
 * after the initial scan are ignored but departures are still handled; `rediscover()` (SIGUSR2)
 * scans again.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { Logger } from '../log.js';
import type { UsbDeviceInfo } from '../devices/api.js';
import type { Transport } from '../mux/transport.js';
import { nodeUsbBus } from './bus.js';
import type { BusDevice, UsbBus } from './bus.js';
import { APPLE_VENDOR_ID, DEVICE_MODE_ENV, POLL_INTERVAL_MS } from './constants.js';
import { DeviceOpener } from './device-opener.js';
import type { OpenOutcome } from './device-opener.js';
import { libusbErrno } from './errors.js';
import { connectionSpeed, libusbSpeedFromSysfs, locationId, matchDevice, parseDeviceMode, serialToUdid } from './match.js';
import type { MatchReason } from './match.js';
import { UsbTransport } from './usb-transport.js';

export interface UsbBackendOptions {
  readonly log: Logger;
  /** A device is claimed and ready: mux takes the transport from here. */
  onAttach(transport: Transport, info: UsbDeviceInfo): void;
  /** false = -n: no arrival handling after the initial scan (departures still are). Default true. */
  readonly hotplug?: boolean;
  /** Device-list poll interval in ms when libusb has no hotplug. Default 1000. */
  readonly pollIntervalMs?: number;
  /** Bulk-IN transfers in flight per device. Default 3. */
  readonly rxTransfers?: number;
  /** Size in bytes of each bulk-IN transfer. Default 16384. */
  readonly rxTransferSize?: number;
  /** In-flight OUT bytes per device above which send() returns false. Default 4 × 49152. */
  readonly outHighWater?: number;
  /** Desired device mode (§1.3). Default: $USBMUXD_DEFAULT_DEVICE_MODE, else 1. */
  readonly deviceMode?: number;
  /** The bus to watch. Default: node-usb's libusb (tests pass a fake). */
  readonly bus?: UsbBus;
}

type EntryState = 'opening' | 'attached' | 'ignored';

interface Entry {
  readonly key: string;
  state: EntryState;
  /** Left the bus; whatever is still running for it must end. */
  gone: boolean;
  transport: UsbTransport | undefined;
}

const USB_DEVFS = '/dev/bus/usb';

function keyOf(device: BusDevice): string {
  return `${device.busNumber}-${device.deviceAddress}`;
}

/** ConnectionSpeed from sysfs (node-usb exposes no libusb_get_device_speed); high speed if unknown. */
async function readSpeed(device: BusDevice): Promise<number> {
  const ports = device.portNumbers;
  if (ports.length === 0) return connectionSpeed(0);
  try {
    const text = await readFile(`/sys/bus/usb/devices/${device.busNumber}-${ports.join('.')}/speed`, 'utf8');
    return connectionSpeed(libusbSpeedFromSysfs(text));
  } catch {
    return connectionSpeed(0);
  }
}

export class UsbBackend {
  private readonly log: Logger;
  private readonly entries = new Map<string, Entry>();
  private readonly pending = new Set<Promise<void>>();
  private readonly desiredMode: number;
  private readonly bus: UsbBus;
  private state: 'idle' | 'running' | 'unavailable' | 'stopped' = 'idle';
  private watching: 'hotplug' | 'poll' | 'none' = 'none';
  private pollTimer: NodeJS.Timeout | undefined;
  private listFailures = 0;

  constructor(private readonly options: UsbBackendOptions) {
    this.log = options.log.child({ layer: 'usb' });
    this.desiredMode = options.deviceMode ?? parseDeviceMode(process.env[DEVICE_MODE_ENV]);
    this.bus = options.bus ?? nodeUsbBus();
  }

  /** Enumerate the devices present and start following arrivals and departures. */
  start(): void {
    if (this.state !== 'idle') return;
    if (this.bus.unavailable) {
      this.state = 'unavailable';
      this.log.info('USB unavailable (libusb could not be initialised); running without USB');
      return;
    }
    this.state = 'running';
    const found = this.scan(false);
    if (found === 0) {
      this.log.info(existsSync(USB_DEVFS) ? 'no USB devices found; waiting for devices' : 'no USB bus found; waiting for devices');
    }
    this.watch();
  }

  /** Scan the bus again (usbmuxd's SIGUSR2 with -n): add newcomers, drop the departed. */
  rediscover(): void {
    if (this.state === 'running') this.scan(true);
  }

  /** Stop watching, end every device's transport and wait until nothing is in flight. */
  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    const wasRunning = this.state === 'running';
    this.state = 'stopped';
    if (wasRunning) this.unwatch();
    await Promise.all([...this.pending]);
    const closing: Promise<void>[] = [];
    for (const entry of this.entries.values()) {
      if (entry.transport) closing.push(entry.transport.close());
    }
    this.entries.clear();
    await Promise.all(closing);
  }

  private watch(): void {
    let hotplug = false;
    try {
      hotplug = this.bus.hotplugSupported();
    } catch (err) {
      this.log.debug({ errno: libusbErrno(err) }, 'libusb hotplug query failed');
    }
    if (hotplug) {
      this.watching = 'hotplug';
      this.bus.on('detach', this.onHotplugDetach);
      if (this.options.hotplug !== false) this.bus.on('attach', this.onHotplugAttach);
      this.bus.unrefHotplug();
      return;
    }
    if (this.options.hotplug === false) return;
    this.watching = 'poll';
    this.log.debug('libusb has no hotplug; polling the device list');
    this.pollTimer = setInterval(() => {
      this.scan(true);
    }, this.options.pollIntervalMs ?? POLL_INTERVAL_MS);
    this.pollTimer.unref();
  }

  private unwatch(): void {
    if (this.watching === 'hotplug') {
      this.bus.off('attach', this.onHotplugAttach);
      this.bus.off('detach', this.onHotplugDetach);
    } else if (this.pollTimer) {
      clearInterval(this.pollTimer);
      this.pollTimer = undefined;
    }
    this.watching = 'none';
  }

  private readonly onHotplugAttach = (device: BusDevice): void => {
    if (this.state === 'running') this.consider(device);
  };

  private readonly onHotplugDetach = (device: BusDevice): void => {
    this.departed(keyOf(device));
  };

  /** Mark-and-sweep over libusb's device list; returns how many devices are present. */
  private scan(sweep: boolean): number {
    let devices: BusDevice[];
    try {
      devices = this.bus.list();
      this.listFailures = 0;
    } catch (err) {
      if (this.listFailures++ === 0) this.log.warn({ errno: libusbErrno(err) }, 'listing USB devices failed');
      return 0;
    }
    const present = new Set<string>();
    for (const device of devices) {
      present.add(keyOf(device));
      this.consider(device);
    }
    if (sweep) {
      for (const key of [...this.entries.keys()]) if (!present.has(key)) this.departed(key);
    }
    return devices.length;
  }

  private consider(device: BusDevice): void {
    const key = keyOf(device);
    if (this.entries.has(key) || device.deviceDescriptor.idVendor !== APPLE_VENDOR_ID) return;
    const entry: Entry = { key, state: 'opening', gone: false, transport: undefined };
    this.entries.set(key, entry);
    let reason: MatchReason | undefined;
    try {
      reason = matchDevice(device.deviceDescriptor, device.allConfigDescriptors);
    } catch (err) {
      this.log.debug({ usb: key, errno: libusbErrno(err) }, 'reading configuration descriptors failed');
    }
    if (reason === undefined) {
      entry.state = 'ignored';
      this.log.debug({ usb: key, productId: device.deviceDescriptor.idProduct }, 'Apple device without usbmux; ignored');
      return;
    }
    const log = this.log.child({ usb: key });
    log.debug({ productId: device.deviceDescriptor.idProduct, reason }, 'found a usbmux device');
    const opener = new DeviceOpener(device, { log, desiredMode: this.desiredMode });
    const job = Promise.all([opener.run(), readSpeed(device)]).then(([outcome, speed]) => {
      this.opened(entry, device, outcome, speed, log);
    });
    this.pending.add(job);
    void job.finally(() => this.pending.delete(job));
  }

  private opened(entry: Entry, device: BusDevice, outcome: OpenOutcome, speed: number, log: Logger): void {
    if (outcome.kind !== 'claimed') {
      entry.state = 'ignored';
      return;
    }
    const transport = new UsbTransport(outcome.claimed, {
      log,
      ...(this.options.rxTransfers !== undefined && { rxTransfers: this.options.rxTransfers }),
      ...(this.options.rxTransferSize !== undefined && { rxTransferSize: this.options.rxTransferSize }),
      ...(this.options.outHighWater !== undefined && { outHighWater: this.options.outHighWater }),
    });
    if (entry.gone || this.state !== 'running') {
      // Left (or we are stopping) while it was being opened: release it, never announce it.
      void transport.close();
      entry.state = 'ignored';
      return;
    }
    entry.transport = transport;
    entry.state = 'attached';
    const info: UsbDeviceInfo = {
      connectionType: 'USB',
      serial: serialToUdid(outcome.usbSerial),
      usbSerial: outcome.usbSerial,
      productId: device.deviceDescriptor.idProduct,
      locationId: locationId(device.busNumber, device.deviceAddress),
      speed,
    };
    log.info({ udid: info.serial, location: `0x${info.locationId.toString(16)}`, config: outcome.selection.configurationValue }, 'USB device ready');
    this.options.onAttach(transport, info);
  }

  private departed(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    entry.gone = true;
    this.log.info({ usb: key }, 'USB device left');
    entry.transport?.deviceGone();
  }
}
