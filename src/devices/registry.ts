/**
 * The device directory: DeviceIDs, the visible set, and the attached / detached / paired events the
 * server and preflight listen to, for devices of any kind. A provider (src/mux for USB) adds a
 * device with the link that reaches it; the link reports when the device is ready for clients and
 * when it is gone.
 *
 *   add() ──▶ pending ──link.ready()──▶ visible ──link.gone()──▶ gone (Detached)
 *               │                                                  ▲
 *               └──────────────── link.gone() (never announced) ───┘
 *
 * A device is announced as soon as its link is ready, always: preflight (src/preflight) runs beside
 * it and never hides one (usbmuxd keeps a device hidden until its preflight ends, and for good when
 * lockdown fails).
 */
import { EventEmitter } from 'node:events';
import type { Logger } from '../log.js';
import type { ConnectOptions, Device, DeviceConnection, DeviceDirectory, DeviceEvents, DeviceInfo, DeviceLink, DeviceSink, LinkContext } from './api.js';
import { DeviceGoneError } from './errors.js';

export interface DeviceRegistryOptions {
  readonly log: Logger;
}

type EntryState = 'pending' | 'visible' | 'gone';

/** One device: what clients see (Device) and what its link reports to (LinkContext). */
class Entry implements Device, LinkContext {
  state: EntryState = 'pending';
  /** Set by `DeviceRegistry.add` right after the link is made. */
  link: DeviceLink | undefined;

  constructor(
    readonly id: number,
    readonly info: DeviceInfo,
    readonly log: Logger,
    private readonly registry: DeviceRegistry,
  ) {}

  get visible(): boolean {
    return this.state === 'visible';
  }

  connect(port: number, options?: ConnectOptions): Promise<DeviceConnection> {
    if (this.state === 'gone' || this.link === undefined) return Promise.reject(new DeviceGoneError(this.id));
    return this.link.connect(port, options);
  }

  ready(): void {
    this.registry.onReady(this);
  }

  gone(err?: Error): void {
    this.registry.onGone(this, err);
  }
}

export class DeviceRegistry extends EventEmitter<DeviceEvents> implements DeviceDirectory, DeviceSink {
  /** Next DeviceID: from 1, never reused within a run. */
  private nextId = 1;
  /** Every known device, visible or not, in DeviceID order (Map keeps insertion order). */
  private readonly devices = new Map<number, Entry>();
  private readonly log: Logger;

  constructor(options: DeviceRegistryOptions) {
    super();
    this.log = options.log;
  }

  add(info: DeviceInfo, open: (context: LinkContext) => DeviceLink): Device {
    const id = this.nextId++;
    const entry = new Entry(id, info, this.log.child({ dev: id }), this);
    const link = open(entry);
    entry.link = link;
    this.devices.set(id, entry);
    this.log.info({ dev: id, udid: info.serial, connectionType: info.connectionType }, 'device added');
    link.start();
    return entry;
  }

  list(): Device[] {
    // USB before network, each in DeviceID order: clients that take the first entry with a
    // serial (appium, go-ios) then prefer the cable, as libusbmuxd's lookup does.
    const usb: Device[] = [];
    const network: Device[] = [];
    for (const entry of this.devices.values()) {
      if (!entry.visible) continue;
      if (entry.info.connectionType === 'USB') usb.push(entry);
      else network.push(entry);
    }
    return usb.concat(network);
  }

  get(id: number): Device | undefined {
    return this.devices.get(id);
  }

  count(): number {
    return this.devices.size;
  }

  markPaired(id: number): void {
    const entry = this.devices.get(id);
    if (entry === undefined) {
      this.log.debug({ dev: id }, 'markPaired for an unknown device ignored');
      return;
    }
    this.emit('paired', entry);
  }

  /** Daemon stop: every link ends its connections and releases its device. */
  async shutdown(): Promise<void> {
    const links: DeviceLink[] = [];
    for (const entry of this.devices.values()) if (entry.link !== undefined) links.push(entry.link);
    await Promise.all(links.map((link) => link.shutdown()));
  }

  /** @internal LinkContext.ready */
  onReady(entry: Entry): void {
    if (entry.state !== 'pending') return;
    entry.state = 'visible';
    this.log.info({ dev: entry.id, udid: entry.info.serial }, 'device attached');
    this.emit('attached', entry);
  }

  /** @internal LinkContext.gone */
  onGone(entry: Entry, err: Error | undefined): void {
    if (entry.state === 'gone') return;
    const wasVisible = entry.state === 'visible';
    entry.state = 'gone';
    this.devices.delete(entry.id);
    if (!wasVisible) {
      this.log.info({ dev: entry.id, err }, 'device removed before it was ready');
      return;
    }
    this.log.info({ dev: entry.id, err }, 'device detached');
    this.emit('detached', entry);
  }
}
