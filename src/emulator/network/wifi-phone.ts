/**
 * The network face of an emulated iPhone: the same phone (its Pairing = its key and trusted hosts,
 * its lockdown values) reachable over TCP the way a paired iPhone is over Wi-Fi.
 *
 *   TCP 62078        lockdownd (network-lockdown.ts): sessions with TLS, Pair refused,
 *                    StartService → a fresh port (service-launcher.ts)
 *   StartService     com.apple.mobile.heartbeat (TLS, heartbeat.ts),
 *                    com.apple.mobile.[insecure_]notification_proxy
 *   TCP 7, 9, 19     echo, discard, source (for proxied Connect and direct dialling)
 *   mDNS             `<mac>@<fe80>._apple-mobdev2._tcp.local` with identifier and authTags
 *                    (mdns-advertiser.ts), when `mdns` is given and the phone's Wi-Fi switch
 *                    (lockdown EnableWifiConnections, `pairing.wifiConnections`) is on: switching
 *                    it off says goodbye, switching it on announces; a new trusted host re-announces
 *                    with its tag
 *
 *   ( new ) --start()--> [ UP ] --freeze()--> [ FROZEN ] (no byte out, nothing read, no mDNS, no
 *                          ^  |                   |       FIN or RST: a radio gone quiet)
 *                          |  +<----- thaw() -----+
 *                          |  stop(): goodbye, listeners and connections closed --> [ STOPPED ]
 *
 * Knobs (mutable at runtime): `heartbeat.knobs` and `heartbeat.sleepyTime()`, `goodbye()` /
 * `advertise()`, `setAdvert({ mac, txt, families, identifier })` (a private MAC, an old MAC-only
 * advert, an IPv6-only one), `refreshAddresses()` after the interface's address changed (an IP
 * change: goodbye for the old address, announcement of the new one), `announceOnLinkUp = false`
 * (a link that comes back is not announced again: hosts must find the phone by themselves).
 *
 * A silent loss that a host's kernel also sees (no ACKs at all) needs the link to go away; in a
 * network namespace `ip link set dev X down` does it (test/support/netns.ts). freeze() is what a
 * process alone can do: the kernel still accepts and acknowledges.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { Server } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { PlistObject } from 'plist';
import type { Logger } from '../../log.js';
import { HEARTBEAT_SERVICE, HeartbeatService } from '../heartbeat.js';
import type { HeartbeatKnobs } from '../heartbeat.js';
import { NOTIFICATION_PROXY_SERVICE, SECURE_NOTIFICATION_PROXY_SERVICE, defaultLockdownValues } from '../lockdown.js';
import { createLockdownService } from '../lockdown-session.js';
import { createNotificationProxyService } from '../notification-proxy.js';
import type { Pairing } from '../pairing.js';
import type { Service } from '../service.js';
import { DISCARD_PORT, ECHO_PORT, LOCKDOWN_PORT, SOURCE_PORT, createDiscardService, createEchoService, createSourceService } from '../services.js';
import { emptyStats } from '../stats.js';
import type { EmulatorStats } from '../stats.js';
import { mobdev2TxtStrings, newMobdev2Identifier } from './auth-tag.js';
import { Mobdev2Advertiser } from './mdns-advertiser.js';
import type { AdvertFamilies } from './mdns-advertiser.js';
import type { Mobdev2Advert } from './mdns-records.js';
import { NetworkLockdownResponder } from './network-lockdown.js';
import { ServiceLauncher } from './service-launcher.js';
import type { LaunchableService } from './service-launcher.js';
import { ConnectionTracker } from './socket-connection.js';

export type PlainServiceName = 'echo' | 'discard' | 'source';
export type TxtStyle = 'tags' | 'mac-only';

export interface NetworkAdvertOptions {
  /** The interface whose addresses are advertised (and that the mDNS sockets are pinned to). */
  readonly interfaceName: string;
  /** Which address families are advertised, and on which (default dual). */
  readonly families?: AdvertFamilies;
  /** `tags` (default): identifier + one authTag per trusted host; `mac-only`: an empty TXT (old iOS). */
  readonly txt?: TxtStyle;
  /**
   * The MAC of the instance name: default the hardware one (lockdown WiFiAddress, the pair
   * record's WiFiMACAddress); `private` makes a random locally administered one (iOS 17.1+ / 26.4).
   */
  readonly mac?: string;
  /** The TXT identifier (default a fresh UUID; a fake copies the real phone's). */
  readonly identifier?: string;
  /** The SRV target (default `iPhone-<last three octets of the hardware MAC>.local`). */
  readonly hostName?: string;
  /** mDNS port (default 5353). */
  readonly port?: number;
  readonly announcements?: number;
  readonly announceIntervalMs?: number;
  /**
   * Poll the interface every this many ms (0: never, the default): an address change is announced
   * (goodbye for the old one), and a link that comes back up is announced again, as a phone does
   * when its Wi-Fi returns. While the link is down nothing changes (no goodbye can leave anyway).
   */
  readonly watchMs?: number;
}

export interface NetworkPhoneOptions {
  readonly udid: string;
  readonly pairing: Pairing;
  /** Lockdown values over the defaults for this UDID. */
  readonly values?: PlistObject;
  /** The one address every port is bound to: `::` (default: all, both families) or e.g. 127.0.0.2. */
  readonly bind?: string;
  /** lockdownd's port (default 62078; clients never dial another). */
  readonly lockdownPort?: number;
  /** Ports of echo, discard and source; null leaves one out (default 7, 9, 19). */
  readonly servicePorts?: Partial<Record<PlainServiceName, number | null>>;
  /** A port of echo/discard/source that cannot be bound (EACCES below 1024 without root) is left out, not fatal. */
  readonly optionalServicePorts?: boolean;
  readonly heartbeat?: Partial<HeartbeatKnobs>;
  /** The mDNS advert; none: no multicast at all (the in-process loopback face). */
  readonly mdns?: NetworkAdvertOptions;
  readonly log?: Logger;
}

export interface AdvertChange {
  readonly mac?: string;
  readonly txt?: TxtStyle;
  readonly families?: AdvertFamilies;
  readonly identifier?: string;
}

export interface NetworkPhoneStatus {
  readonly udid: string;
  readonly bind: string;
  readonly lockdownPort: number;
  readonly ports: Readonly<Record<string, number>>;
  /** TCP connections accepted so far, per listener (lockdownd, echo, discard, source). */
  readonly accepted: Readonly<Record<string, number>>;
  /** Bytes the discard service has taken so far (benches read when a transfer has arrived). */
  readonly discardBytes: number;
  readonly unavailablePorts: readonly { readonly service: string; readonly port: number; readonly error: string }[];
  readonly frozen: boolean;
  readonly connections: number;
  /** The advert as sent (TXT strings as text), its state and families. */
  readonly advert: (Omit<Mobdev2Advert, 'txt'> & { readonly txt: readonly string[]; readonly state: string; readonly families: AdvertFamilies }) | undefined;
  readonly heartbeat: { readonly knobs: HeartbeatKnobs; readonly stats: HeartbeatService['stats']; readonly open: number };
  readonly pairedHosts: readonly string[];
  /** lockdown EnableWifiConnections: without it there is no advert. */
  readonly wifiConnections: boolean;
  readonly announceOnLinkUp: boolean;
}

/** Lowercase colon-separated MAC, e.g. a4:c3:f0:12:34:56. */
export function normalizeMac(mac: string): string | undefined {
  const m = /^([0-9a-f]{1,2})[:-]([0-9a-f]{1,2})[:-]([0-9a-f]{1,2})[:-]([0-9a-f]{1,2})[:-]([0-9a-f]{1,2})[:-]([0-9a-f]{1,2})$/i.exec(mac.trim());
  return m === null ? undefined : m.slice(1).map((o) => o.toLowerCase().padStart(2, '0')).join(':');
}

/** A random locally administered unicast MAC (the private Wi-Fi address of newer iOS). */
export function randomPrivateMac(): string {
  const bytes = randomBytes(6);
  bytes[0] = ((bytes[0] ?? 0) & 0xfc) | 0x02;
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** IPv4 and IPv6 (zone-less) addresses of `name` in this network namespace; link-local IPv6 first. */
export function interfaceAddresses(name: string): { ipv4: string[]; ipv6: string[] } {
  const list = networkInterfaces()[name] ?? [];
  const ipv4 = list.filter((a) => a.family === 'IPv4').map((a) => a.address);
  const v6 = list.filter((a) => a.family === 'IPv6').map((a) => a.address.replace(/%.*$/, ''));
  const linkLocal = v6.filter((a) => a.toLowerCase().startsWith('fe80:'));
  return { ipv4, ipv6: [...linkLocal, ...v6.filter((a) => !linkLocal.includes(a))] };
}

/** Whether the link is up (sysfs operstate, as this namespace sees it) and its addresses. */
function interfaceState(name: string): { up: boolean; key: string } {
  let operstate = 'unknown';
  try {
    operstate = readFileSync(`/sys/class/net/${name}/operstate`, 'utf8').trim();
  } catch {
    // no such interface (any more): treated as down
    operstate = 'down';
  }
  const { ipv4, ipv6 } = interfaceAddresses(name);
  return { up: operstate === 'up' || operstate === 'unknown', key: [...ipv4, ...ipv6].join(',') };
}

function listen(server: Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, exclusive: true }, () => {
      server.off('error', reject);
      const address = server.address();
      resolve(typeof address === 'object' && address !== null ? address.port : port);
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => {
      resolve();
    });
  });
}

export class NetworkPhone {
  readonly udid: string;
  readonly pairing: Pairing;
  readonly heartbeat: HeartbeatService;
  readonly stats: EmulatorStats = emptyStats();
  readonly tracker = new ConnectionTracker();
  readonly launcher: ServiceLauncher;
  readonly hardwareMac: string;
  private readonly bindValue: string;
  private readonly lockdownPortWanted: number;
  private readonly servers: Server[] = [];
  private readonly ports: Record<string, number> = {};
  private readonly accepted: Record<string, number> = {};
  private readonly unavailable: { service: string; port: number; error: string }[] = [];
  private readonly lockdown: Service;
  private advertiser: Mobdev2Advertiser | undefined;
  private advertOptions: NetworkAdvertOptions | undefined;
  private instanceMac: string | undefined;
  private identifier: string;
  private stopped = false;
  private watchTimer: NodeJS.Timeout | undefined;
  private instanceTail: string | undefined;
  private lastSeen: { up: boolean; key: string } | undefined;
  private unsubscribeIdentity: (() => void) | undefined;
  /** Whether a link that comes back up is announced again (a phone does; tests turn it off). */
  announceOnLinkUp = true;

  constructor(private readonly options: NetworkPhoneOptions) {
    this.udid = options.udid;
    this.pairing = options.pairing;
    this.bindValue = options.bind ?? '::';
    this.lockdownPortWanted = options.lockdownPort ?? LOCKDOWN_PORT;
    this.heartbeat = new HeartbeatService(options.heartbeat);
    const values = { ...defaultLockdownValues(options.udid), ...options.values };
    const wifi = values['WiFiAddress'];
    this.hardwareMac = (typeof wifi === 'string' ? normalizeMac(wifi) : undefined) ?? 'a4:c3:f0:12:34:56';
    this.advertOptions = options.mdns;
    this.identifier = options.mdns?.identifier ?? newMobdev2Identifier();
    const notificationProxy = createNotificationProxyService(this.pairing);
    const catalog = new Map<string, LaunchableService>([
      [HEARTBEAT_SERVICE, { service: this.heartbeat, ssl: true, needsSession: true }],
      [SECURE_NOTIFICATION_PROXY_SERVICE, { service: notificationProxy, ssl: true, needsSession: true }],
      [NOTIFICATION_PROXY_SERVICE, { service: notificationProxy, ssl: false, needsSession: false }],
    ]);
    this.launcher = new ServiceLauncher({ host: this.bindValue, catalog, tracker: this.tracker, pairing: this.pairing, ...(options.log === undefined ? {} : { log: options.log }) });
    const lockdownOptions = { udid: options.udid, pairing: this.pairing, values };
    this.lockdown = createLockdownService(lockdownOptions, new NetworkLockdownResponder(lockdownOptions, this.launcher));
  }

  /** Start a phone face: every listener bound, then the advert announced. */
  static async start(options: NetworkPhoneOptions): Promise<NetworkPhone> {
    const phone = new NetworkPhone(options);
    try {
      await phone.bindAll();
    } catch (err) {
      await phone.stop();
      throw err;
    }
    phone.startWatch();
    phone.unsubscribeIdentity = phone.pairing.onIdentityChange(() => {
      void phone.identityChanged();
    });
    phone.startAdvert();
    return phone;
  }

  /** Whether the phone advertises now (mDNS configured and its Wi-Fi switch on). */
  get advertising(): boolean {
    return this.advertiser !== undefined;
  }

  /** Whether this phone has an mDNS advert at all (advertised or not). */
  get hasAdvert(): boolean {
    return this.advertOptions !== undefined;
  }

  get bind(): string {
    return this.bindValue;
  }

  get lockdownPort(): number {
    return this.ports['lockdownd'] ?? this.lockdownPortWanted;
  }

  get advert(): Mobdev2Advert | undefined {
    return this.advertiser?.advert;
  }

  get mdns(): Mobdev2Advertiser | undefined {
    return this.advertiser;
  }

  get frozen(): boolean {
    return this.tracker.frozen;
  }

  /** Go silent: nothing read or sent on any connection, no mDNS; no FIN, no RST, no goodbye. */
  freeze(): void {
    this.tracker.freeze();
    this.advertiser?.silence();
  }

  thaw(): void {
    this.tracker.thaw();
    this.advertiser?.speak();
  }

  /** Withdraw the advert (TTL 0). The TCP side stays up. */
  async goodbye(): Promise<void> {
    await this.advertiser?.goodbye();
  }

  advertise(): void {
    this.advertiser?.advertise();
  }

  /** Re-read the interface's addresses (and the trusted hosts' tags) and re-announce. */
  refreshAddresses(): void {
    const advertiser = this.advertiser;
    const mdns = this.advertOptions;
    if (advertiser === undefined || mdns === undefined) return;
    advertiser.update(this.buildAdvert(mdns));
  }

  /** Change how the phone advertises; a change of families re-makes the sockets (goodbye first). */
  async setAdvert(change: AdvertChange): Promise<void> {
    const current = this.advertOptions;
    if (current === undefined) return;
    if (change.mac !== undefined) this.instanceMac = this.resolveMac(change.mac);
    if (change.identifier !== undefined) this.identifier = change.identifier;
    const familiesChanged = change.families !== undefined && change.families !== (current.families ?? 'dual');
    this.advertOptions = { ...current, ...(change.txt === undefined ? {} : { txt: change.txt }), ...(change.families === undefined ? {} : { families: change.families }) };
    if (familiesChanged) {
      await this.advertiser?.stop();
      this.advertiser = undefined;
      this.startAdvert();
      return;
    }
    this.refreshAddresses();
  }

  status(): NetworkPhoneStatus {
    const advertiser = this.advertiser;
    const families = this.advertOptions?.families ?? 'dual';
    return {
      udid: this.udid,
      bind: this.bindValue,
      lockdownPort: this.lockdownPort,
      ports: { ...this.ports },
      accepted: { ...this.accepted },
      discardBytes: this.stats.discardBytes,
      unavailablePorts: [...this.unavailable],
      frozen: this.frozen,
      connections: this.tracker.size,
      advert:
        advertiser === undefined
          ? undefined
          : { ...advertiser.advert, txt: advertiser.advert.txt.map((b) => b.toString('utf8')), state: advertiser.state, families },
      heartbeat: { knobs: { ...this.heartbeat.knobs }, stats: { ...this.heartbeat.stats }, open: this.heartbeat.openConnections },
      pairedHosts: this.pairing.pairedHostIds(),
      wifiConnections: this.pairing.wifiConnections,
      announceOnLinkUp: this.announceOnLinkUp,
    };
  }

  /** Goodbye, then every listener and connection closed. Idempotent. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.unsubscribeIdentity?.();
    if (this.watchTimer !== undefined) clearInterval(this.watchTimer);
    await this.advertiser?.stop();
    this.tracker.detachAll(); // every socket destroyed (a phone switched off sends no FIN either)
    await Promise.all([this.launcher.stop(), ...this.servers.map(closeServer)]);
  }

  private async bindAll(): Promise<void> {
    await this.serve('lockdownd', this.lockdownPortWanted, this.lockdown, false);
    const wanted = this.options.servicePorts ?? {};
    const plain: [PlainServiceName, number | null | undefined, () => Service][] = [
      ['echo', wanted.echo, createEchoService],
      ['discard', wanted.discard, () => createDiscardService(this.stats)],
      ['source', wanted.source, createSourceService],
    ];
    const defaults: Record<PlainServiceName, number> = { echo: ECHO_PORT, discard: DISCARD_PORT, source: SOURCE_PORT };
    for (const [name, port, make] of plain) {
      if (port === null) continue;
      await this.serve(name, port ?? defaults[name], make(), this.options.optionalServicePorts === true);
    }
    await this.launcher.start();
  }

  private async serve(name: string, port: number, service: Service, optional: boolean): Promise<void> {
    const server = createServer({ pauseOnConnect: true }, (socket) => {
      this.accepted[name] = (this.accepted[name] ?? 0) + 1;
      this.tracker.serve(socket, service, { port: this.ports[name] ?? port });
      if (!this.tracker.frozen) socket.resume();
    });
    try {
      this.ports[name] = await listen(server, this.bindValue, port);
    } catch (err) {
      if (!optional) throw err;
      const message = err instanceof Error ? err.message : String(err);
      this.unavailable.push({ service: name, port, error: message });
      this.options.log?.warn({ service: name, port, err }, 'emulated phone: service port not available, left out');
      return;
    }
    server.on('error', (err) => {
      this.options.log?.warn({ err, service: name }, 'emulated phone: listener failed');
    });
    this.servers.push(server);
  }

  private resolveMac(mac: string): string {
    if (mac === 'private') return randomPrivateMac();
    if (mac === 'hardware') return this.hardwareMac;
    return normalizeMac(mac) ?? this.hardwareMac;
  }

  /** The Wi-Fi switch or the trusted hosts changed: advertise, withdraw, or re-announce the tags. */
  private async identityChanged(): Promise<void> {
    const advertiser = this.advertiser;
    if (this.stopped) return;
    if (!this.pairing.wifiConnections) {
      if (advertiser === undefined) return;
      this.advertiser = undefined;
      this.options.log?.info('emulated phone: Wi-Fi connections switched off, advert withdrawn');
      await advertiser.stop();
      return;
    }
    if (advertiser === undefined) {
      this.options.log?.info('emulated phone: Wi-Fi connections switched on, advertising');
      this.startAdvert();
    } else {
      this.refreshAddresses();
    }
  }

  private startAdvert(): void {
    const mdns = this.advertOptions;
    if (mdns === undefined || this.stopped || !this.pairing.wifiConnections) return;
    this.instanceMac ??= this.resolveMac(mdns.mac ?? 'hardware');
    const advertiser = new Mobdev2Advertiser({
      advert: this.buildAdvert(mdns),
      interfaceName: mdns.interfaceName,
      families: mdns.families ?? 'dual',
      ...(mdns.port === undefined ? {} : { port: mdns.port }),
      ...(mdns.announcements === undefined ? {} : { announcements: mdns.announcements }),
      ...(mdns.announceIntervalMs === undefined ? {} : { announceIntervalMs: mdns.announceIntervalMs }),
      ...(this.options.log === undefined ? {} : { log: this.options.log }),
    });
    this.advertiser = advertiser;
    advertiser.start();
    if (this.tracker.frozen) advertiser.silence();
  }

  private startWatch(): void {
    const mdns = this.advertOptions;
    if (mdns === undefined || (mdns.watchMs ?? 0) <= 0) return;
    this.lastSeen = interfaceState(mdns.interfaceName);
    this.watchTimer = setInterval(() => {
      this.watchInterface();
    }, mdns.watchMs);
    this.watchTimer.unref();
  }

  /** Link back up: announce again; addresses changed while up: re-announce with the new ones. */
  private watchInterface(): void {
    const mdns = this.advertOptions;
    if (mdns === undefined) return;
    const now = interfaceState(mdns.interfaceName);
    const before = this.lastSeen;
    this.lastSeen = now;
    if (!now.up || before === undefined || this.advertiser === undefined) return;
    if (!before.up) {
      if (!this.announceOnLinkUp) {
        this.options.log?.info({ interface: mdns.interfaceName }, 'emulated phone: link up, not announcing (announceOnLinkUp off)');
        return;
      }
      this.options.log?.info({ interface: mdns.interfaceName }, 'emulated phone: link up, announcing again');
      this.refreshAddresses();
      this.advertiser.reannounce();
    } else if (before.key !== now.key) {
      this.options.log?.info({ interface: mdns.interfaceName, addresses: now.key }, 'emulated phone: addresses changed, announcing');
      this.refreshAddresses();
    }
  }

  /** The advert as the interface and the pairing are right now. */
  private buildAdvert(mdns: NetworkAdvertOptions): Mobdev2Advert {
    const families = mdns.families ?? 'dual';
    const { ipv4, ipv6 } = interfaceAddresses(mdns.interfaceName);
    const mac = this.instanceMac ?? this.hardwareMac;
    // The instance names the link-local address even in an IPv4-only advert, as a phone does; a
    // link that is coming back has no fe80:: for a moment, and the name must not flap meanwhile.
    const linkLocal = ipv6.find((a) => a.toLowerCase().startsWith('fe80:'));
    if (linkLocal !== undefined) this.instanceTail = linkLocal;
    this.instanceTail ??= ipv6[0] ?? ipv4[0] ?? '::';
    const tail = this.instanceTail;
    return {
      instance: `${mac}@${tail}`,
      host: mdns.hostName ?? `iPhone-${this.hardwareMac.split(':').slice(3).join('')}.local`,
      port: this.lockdownPort,
      ipv4: families === 'ipv6' ? [] : ipv4,
      ipv6: families === 'ipv4' ? [] : ipv6,
      txt: (mdns.txt ?? 'tags') === 'tags' ? mobdev2TxtStrings(this.identifier, this.pairing.pairedHostIds()) : [],
    };
  }
}

/** The first 127.0.0.x tried for an in-process phone (127.0.0.1 is left to everything else). */
export const FIRST_LOOPBACK_HOST = 2;

/**
 * The network face of an in-process phone (`--virtual-device`) on a loopback address, without
 * any multicast: the daemon registers it as a manual network device, and clients that dial the
 * NetworkAddress themselves (libimobiledevice's `ideviceinfo -n`) reach lockdownd on
 * `<address>:62078`. With no `address`, 127.0.0.2, .3, … are tried until 62078 is free there.
 * Ports below 1024 (echo 7, discard 9, source 19) need root; without it they are left out and
 * listed in `status().unavailablePorts`.
 */
export async function startLoopbackFace(
  phone: { readonly udid: string; readonly pairing: Pairing },
  options: {
    readonly address?: string;
    readonly values?: PlistObject;
    readonly heartbeat?: Partial<HeartbeatKnobs>;
    /** Other ports for echo, discard and source (e.g. above 1024 without root); null leaves one out. */
    readonly servicePorts?: Partial<Record<PlainServiceName, number | null>>;
    readonly log?: Logger;
  } = {},
): Promise<NetworkPhone> {
  const base: NetworkPhoneOptions = {
    udid: phone.udid,
    pairing: phone.pairing,
    optionalServicePorts: true,
    ...(options.servicePorts === undefined ? {} : { servicePorts: options.servicePorts }),
    ...(options.values === undefined ? {} : { values: options.values }),
    ...(options.heartbeat === undefined ? {} : { heartbeat: options.heartbeat }),
    ...(options.log === undefined ? {} : { log: options.log }),
  };
  if (options.address !== undefined) return NetworkPhone.start({ ...base, bind: options.address });
  for (let host = FIRST_LOOPBACK_HOST; ; host++) {
    try {
      return await NetworkPhone.start({ ...base, bind: `127.0.0.${host}` });
    } catch (err) {
      if (host >= 254 || !(err instanceof Error && 'code' in err && err.code === 'EADDRINUSE')) throw err;
    }
  }
}
