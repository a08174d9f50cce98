/**
 * Continuous mDNS browsing for `_apple-mobdev2._tcp.local` (Wi-Fi iPhones with "Show this iPhone
 * when on Wi-Fi") on every interface, IPv4 and IPv6, with no system mDNS daemon: we bind UDP 5353
 * ourselves (SO_REUSEADDR, beside avahi-daemon or anyone else) through `multicast-dns`.
 *
 * I/O shell around two pure parts: the record cache (mdns-cache.ts: TTLs, goodbyes, cache flush,
 * the instance view and its up/changed/down events) and the query schedule (browse-schedule.ts).
 *
 * Sockets: one per family, both bound to port 5353 on the wildcard address, each a member of the
 * group on every selected interface (IPv4 224.0.0.251 joined by the interface's address, IPv6
 * ff02::fb by `::%ifname`; the v6 socket is v6-only so IPv4 never arrives twice). One socket per
 * family means every packet is handled once, and we manage memberships ourselves
 * (`multicast: false`), because multicast-dns would rejoin every 5 s and reset the multicast
 * interface to 0.0.0.0 (wifi-devices.md §7.2). Queries go out on each interface explicitly: IPv6 to
 * `ff02::fb%ifname`; IPv4 after setting the multicast interface to that interface's address, one
 * send at a time (the setting is per socket). That also avoids ENETUNREACH on hosts without a
 * multicast route. Queries never set the QU bit: a unicast reply to port 5353 would reach only one
 * of the sockets sharing it, possibly avahi's.
 *
 * Arrival interface: IPv6 packets from a link-local source carry `%ifname` in rinfo; otherwise the
 * source is matched against the local subnets (longest prefix), which is all Node allows for IPv4
 * (no IP_PKTINFO). A packet from an interface we do not browse on, or from a source on none of our
 * links (RFC 6762 §11), is dropped and counted (`stats.unknownInterface`).
 *
 * Interfaces are polled (`os.networkInterfaces()`, every `pollIntervalMs`): a new or changed one
 * is joined and queried at once and the backoff restarts; what was learnt on a vanished one goes
 * (down, reason `interface-gone`).
 *
 *   stopped ──start()──► running ──stop()──► stopped
 *                          │ per family: binding ──ready──► open ──socket error (bind)──► closed
 *                          │                                   ▲                        │ 30 s
 *                          │                                   └──────── binding ◄──────┘
 *
 * Hostile traffic (malformed packets, oversized TXT, floods of fake instances) is dropped and
 * counted in `stats`, with one warning per kind per minute; nothing a packet holds can throw out
 * of the socket handler.
 */
import { createSocket } from 'node:dgram';
import type { RemoteInfo, Socket } from 'node:dgram';
import { EventEmitter } from 'node:events';
import makeMdns from 'multicast-dns';
import type { MulticastDNS } from 'multicast-dns';
import type { Answer, Question } from 'dns-packet';
import type { Logger } from '../log.js';
import { BrowseSchedule, DEFAULT_MAX_REQUERY_MS } from './browse-schedule.js';
import { interfacesFingerprint, interfaceForAddress, listInterfaces } from './interfaces.js';
import type { ArrivalInterface, InterfaceSource, LocalInterface } from './interfaces.js';
import { interfaceKey, MobdevCache } from './mdns-cache.js';
import type { CacheEvent, CacheOptions, CacheQuestion, DownReason, MobdevAdvert } from './mdns-cache.js';
import { extractRecords, isPlausibleResponse, MOBDEV2_SERVICE } from './mdns-records.js';
import type { MdnsRecord } from './mdns-records.js';

export type { AdvertAddress, DownReason, MobdevAdvert } from './mdns-cache.js';

export const MDNS_PORT = 5353;
export const MDNS_GROUP_V4 = '224.0.0.251';
export const MDNS_GROUP_V6 = 'ff02::fb';
const DEFAULT_POLL_MS = 3000;
const REBIND_MS = 30_000;
const QUESTION_MIN_INTERVAL_MS = 1000;
const MAX_KNOWN_ANSWERS = 24;
const WARN_INTERVAL_MS = 60_000;

export interface MdnsBrowserEvents {
  /** A phone's advert is complete (PTR, SRV and at least one address). */
  up: [advert: MobdevAdvert];
  /** Its addresses, interfaces, port or TXT changed. */
  changed: [advert: MobdevAdvert, previous: MobdevAdvert];
  /** Gone: goodbye, every address or the PTR expired, or its interface went away. */
  down: [advert: MobdevAdvert, reason: DownReason];
  /**
   * A phone that is up answered or announced again with nothing changed (a re-announcement when
   * its Wi-Fi came back, an answer to resolve()): it is there now.
   */
  seen: [advert: MobdevAdvert];
}

export interface MdnsBrowserOptions {
  readonly log: Logger;
  /** UDP port (5353; tests use another to stay off the LAN's mDNS). */
  readonly port?: number;
  /** Browse only on these interface names (default: every interface with an address, loopback excluded). */
  readonly interfaces?: readonly string[];
  /** Include loopback interfaces (tests on a bare `lo`). */
  readonly includeInternal?: boolean;
  /** Address families to browse on (default both). */
  readonly families?: readonly (4 | 6)[];
  readonly pollIntervalMs?: number;
  /** Cap of the browse-query backoff (default 2 min). */
  readonly maxRequeryMs?: number;
  readonly cache?: CacheOptions;
  /** For tests: the interface list source (default os.networkInterfaces). */
  readonly interfaceSource?: InterfaceSource;
}

export interface MdnsBrowserStats {
  packets: number;
  malformed: number;
  unknownInterface: number;
  rejectedRecords: number;
  refusedRecords: number;
  queriesSent: number;
  sendErrors: number;
}

interface FamilySocket {
  readonly family: 4 | 6;
  readonly socket: Socket;
  readonly mdns: MulticastDNS;
  ready: boolean;
  closed: boolean;
  /** interface name → the membership argument used (IPv4 address / `::%name`) */
  readonly memberships: Map<string, string>;
}

interface PendingSend {
  readonly iface: LocalInterface;
  readonly questions: Question[];
  readonly answers: Answer[];
}

export class MdnsBrowser extends EventEmitter<MdnsBrowserEvents> {
  readonly stats: MdnsBrowserStats = { packets: 0, malformed: 0, unknownInterface: 0, rejectedRecords: 0, refusedRecords: 0, queriesSent: 0, sendErrors: 0 };
  private readonly log: Logger;
  private readonly port: number;
  private readonly cache: MobdevCache;
  private readonly schedule: BrowseSchedule;
  private readonly families: readonly (4 | 6)[];
  private readonly sockets = new Map<4 | 6, FamilySocket>();
  private ifaces: LocalInterface[] = [];
  private fingerprint = '';
  private running = false;
  private pollTimer: NodeJS.Timeout | undefined;
  private scheduleTimer: NodeJS.Timeout | undefined;
  private cacheTimer: NodeJS.Timeout | undefined;
  private readonly rebindTimers = new Set<NodeJS.Timeout>();
  private readonly lastAsked = new Map<string, number>();
  private readonly lastWarn = new Map<string, { at: number; suppressed: number }>();
  private readonly v4Queue: { iface: LocalInterface; packet: PendingSend }[] = [];
  private v4Sending = false;

  constructor(private readonly opts: MdnsBrowserOptions) {
    super();
    this.log = opts.log;
    this.port = opts.port ?? MDNS_PORT;
    this.cache = new MobdevCache(opts.cache);
    this.schedule = new BrowseSchedule(monotonicMs(), opts.maxRequeryMs ?? DEFAULT_MAX_REQUERY_MS);
    this.families = opts.families ?? [4, 6];
  }

  /** Every phone currently up. */
  adverts(): MobdevAdvert[] {
    return this.cache.adverts();
  }

  /** The interfaces browsed on now. */
  interfaces(): readonly LocalInterface[] {
    return this.ifaces;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.ifaces = this.selectInterfaces();
    this.fingerprint = interfacesFingerprint(this.ifaces);
    this.log.info({ interfaces: this.ifaces.map((i) => i.name), port: this.port }, 'mDNS: browsing for %s', MOBDEV2_SERVICE);
    for (const family of this.families) this.open(family);
    this.pollTimer = setInterval(() => { this.guard('poll', () => { this.poll(); }); }, this.opts.pollIntervalMs ?? DEFAULT_POLL_MS);
    this.pollTimer.unref();
  }

  /** Asks again now, on every interface, and restarts the backoff (e.g. after a resume). */
  refresh(): void {
    if (!this.running) return;
    this.schedule.reset(monotonicMs());
    this.armSchedule();
  }

  /**
   * Asks every interface now for one instance's SRV and TXT and its host's addresses (e.g. when
   * its heartbeat failed: is it still there, at which address?). A browse query would not do:
   * the phone stays silent about a PTR we list as a known answer. Answers arrive as events.
   */
  resolve(instance: string): void {
    if (!this.running) return;
    const name = `${instance}.${MOBDEV2_SERVICE}`;
    const target = this.cache.adverts().find((a) => a.instance.toLowerCase() === instance.toLowerCase())?.target;
    const questions: CacheQuestion[] = [];
    for (const iface of this.ifaces) {
      const on = { ifaceKey: iface.name, iface: { name: iface.name, index: iface.index } };
      questions.push({ ...on, name, type: 'SRV' }, { ...on, name, type: 'TXT' });
      if (target !== undefined) questions.push({ ...on, name: target, type: 'A' }, { ...on, name: target, type: 'AAAA' });
    }
    this.ask(questions);
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    for (const t of [this.pollTimer, this.scheduleTimer, this.cacheTimer, ...this.rebindTimers]) if (t !== undefined) clearTimeout(t);
    this.rebindTimers.clear();
    this.v4Queue.length = 0;
    const closing = [...this.sockets.values()].map((fs) => this.close(fs));
    this.sockets.clear();
    await Promise.all(closing);
  }

  // ── sockets ───────────────────────────────────────────────────────────────────────────────

  private open(family: 4 | 6): void {
    const socket = createSocket(family === 4 ? { type: 'udp4', reuseAddr: true } : { type: 'udp6', reuseAddr: true, ipv6Only: true });
    const mdns = makeMdns({
      socket,
      type: family === 4 ? 'udp4' : 'udp6',
      ip: family === 4 ? MDNS_GROUP_V4 : MDNS_GROUP_V6,
      interface: family === 4 ? '0.0.0.0' : '::',
      bind: family === 4 ? '0.0.0.0' : '::',
      port: this.port,
      multicast: false,
    });
    const fs: FamilySocket = { family, socket, mdns, ready: false, closed: false, memberships: new Map() };
    // Screen datagrams before multicast-dns decodes them: queries are of no use to a browser, and
    // a header whose counts cannot fit makes dns-packet allocate before it fails (mdns-records.ts).
    const decode = socket.listeners('message');
    socket.removeAllListeners('message');
    socket.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
      if (!isPlausibleResponse(msg)) {
        if (msg.length >= 3 && ((msg[2] ?? 0) & 0x80) !== 0) this.onWarning(fs, new Error('implausible DNS header'));
        return;
      }
      for (const l of decode) Reflect.apply(l, socket, [msg, rinfo]);
    });
    this.sockets.set(family, fs);
    mdns.on('ready', () => {
      this.guard('ready', () => {
        if (fs.closed) return;
        fs.ready = true;
        socket.setMulticastTTL(255);
        socket.setMulticastLoopback(true);
        this.syncMemberships(fs);
        this.schedule.reset(monotonicMs());
        this.armSchedule();
      });
    });
    mdns.on('response', (packet: unknown, rinfo: RemoteInfo) => { this.guard('response', () => { this.onResponse(fs, packet, rinfo); }); });
    mdns.on('warning', (err: unknown) => { this.onWarning(fs, err); });
    mdns.on('error', (err: unknown) => {
      // bind failed (EADDRINUSE without SO_REUSEADDR on the other socket, EACCES): retry later.
      // multicast-dns reports one bind failure twice (socket error and bind callback): once is enough
      if (fs.closed) return;
      this.log.error({ err, family, port: this.port }, 'mDNS: cannot bind UDP %d for IPv%d; retrying in %d s', this.port, family, REBIND_MS / 1000);
      void this.close(fs).then(() => {
        if (!this.running || this.sockets.get(family) !== fs) return;
        this.sockets.delete(family);
        const t = setTimeout(() => { this.rebindTimers.delete(t); if (this.running) this.open(family); }, REBIND_MS);
        t.unref();
        this.rebindTimers.add(t);
      });
    });
  }

  private close(fs: FamilySocket): Promise<void> {
    if (fs.closed) return Promise.resolve();
    fs.closed = true;
    for (const arg of fs.memberships.values()) {
      try {
        fs.socket.dropMembership(fs.family === 4 ? MDNS_GROUP_V4 : MDNS_GROUP_V6, arg);
      } catch {
        // the interface may be gone already; closing the socket drops the membership anyway
      }
    }
    fs.memberships.clear();
    return new Promise((resolve) => {
      try {
        fs.mdns.destroy(() => { resolve(); });
      } catch {
        resolve(); // never bound: nothing to close
      }
    });
  }

  private syncMemberships(fs: FamilySocket): void {
    const group = fs.family === 4 ? MDNS_GROUP_V4 : MDNS_GROUP_V6;
    const wanted = new Map<string, string>();
    for (const iface of this.ifaces) {
      const arg = membershipArg(fs.family, iface);
      if (arg !== undefined) wanted.set(iface.name, arg);
    }
    for (const [name, arg] of fs.memberships) {
      if (wanted.get(name) === arg) continue;
      try {
        fs.socket.dropMembership(group, arg);
      } catch {
        // gone with its interface
      }
      fs.memberships.delete(name);
    }
    for (const [name, arg] of wanted) {
      if (fs.memberships.has(name)) continue;
      try {
        fs.socket.addMembership(group, arg);
        fs.memberships.set(name, arg);
      } catch (err) {
        // e.g. ENODEV on an interface without MULTICAST; polled again on the next change
        this.warnLimited(`join:${fs.family}:${name}`, { err, iface: name, family: fs.family }, 'mDNS: cannot join the group on an interface');
      }
    }
  }

  // ── receiving ─────────────────────────────────────────────────────────────────────────────

  private onResponse(fs: FamilySocket, packet: unknown, rinfo: RemoteInfo): void {
    this.stats.packets++;
    const iface = this.arrival(fs.family, rinfo.address);
    if (iface === undefined) {
      this.stats.unknownInterface++;
      return;
    }
    const { records, rejected } = extractRecords(packet, (name) => this.cache.isTarget(name));
    if (this.log.isLevelEnabled('trace')) this.log.trace({ from: rinfo.address, iface: iface.name, records: records.map((r) => r.type) }, 'mDNS: response');
    if (rejected.length > 0) {
      this.stats.rejectedRecords += rejected.length;
      this.warnLimited(`rejected:${rejected[0] ?? ''}`, { from: rinfo.address, reasons: [...new Set(rejected)] }, 'mDNS: records dropped (malformed or oversized)');
    }
    if (records.length === 0) return;
    const result = this.cache.ingest(records, iface, monotonicMs(), rinfo.address);
    if (result.refused.length > 0) {
      this.stats.refusedRecords += result.refused.length;
      this.warnLimited(`refused:${result.refused[0] ?? ''}`, { from: rinfo.address, reasons: [...new Set(result.refused)], tracked: this.cache.size }, 'mDNS: too many instances or records; new ones are ignored');
    }
    this.emitAll(result.events);
    this.emitSeen(records, result.events);
    this.ask(result.questions);
    this.armCache();
  }

  /** 'seen' for each up instance a packet names (live records) that got no up/changed from it. */
  private emitSeen(records: readonly MdnsRecord[], events: readonly CacheEvent[]): void {
    const named = new Set<string>();
    for (const r of records) if ('instance' in r && r.ttl > 0) named.add(r.instance.toLowerCase());
    for (const e of events) named.delete(e.advert.instance.toLowerCase());
    for (const instance of named) {
      const advert = this.cache.advertOf(instance);
      if (advert === undefined) continue;
      try {
        this.emit('seen', advert);
      } catch (err) {
        this.log.error({ err, event: 'seen' }, 'mDNS: an event listener threw');
      }
    }
  }

  /** The interface a packet from `address` came in on; undefined = drop it. */
  private arrival(family: 4 | 6, address: string): ArrivalInterface | undefined {
    const pct = address.indexOf('%');
    let iface: LocalInterface | undefined;
    if (pct >= 0) {
      const name = address.slice(pct + 1);
      iface = this.ifaces.find((i) => i.name === name || String(i.index) === name);
      if (iface === undefined) return undefined; // an interface we do not browse on
    } else {
      iface = interfaceForAddress(this.ifaces, family, address);
    }
    // RFC 6762 §11: a response from a source that is on none of our links (say, unicast from
    // across a router to an exposed port 5353) is not a neighbour's: drop it
    return iface === undefined ? undefined : { name: iface.name, index: iface.index };
  }

  private onWarning(fs: FamilySocket, err: unknown): void {
    const code = err instanceof Error && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
    if (code === undefined) {
      // dns-packet could not decode a datagram
      this.stats.malformed++;
      this.warnLimited('malformed', { err, family: fs.family }, 'mDNS: malformed packet dropped');
    } else {
      this.warnLimited(`socket:${code}`, { err, family: fs.family }, 'mDNS: socket warning');
    }
  }

  // ── sending ───────────────────────────────────────────────────────────────────────────────

  private armSchedule(): void {
    if (!this.running) return;
    if (this.scheduleTimer !== undefined) clearTimeout(this.scheduleTimer);
    const wait = Math.max(0, this.schedule.nextAt() - monotonicMs());
    this.scheduleTimer = setTimeout(() => {
      this.scheduleTimer = undefined;
      this.guard('browse', () => {
        const now = monotonicMs();
        if (this.schedule.due(now)) {
          this.browseAll(now);
          this.schedule.sent(now);
        }
        this.armSchedule();
      });
    }, wait);
    this.scheduleTimer.unref();
  }

  private armCache(): void {
    if (!this.running) return;
    if (this.cacheTimer !== undefined) clearTimeout(this.cacheTimer);
    this.cacheTimer = undefined;
    const next = this.cache.nextDeadline();
    if (next === undefined) return;
    this.cacheTimer = setTimeout(() => {
      this.cacheTimer = undefined;
      this.guard('expire', () => {
        const { events, questions } = this.cache.tick(monotonicMs());
        this.emitAll(events);
        this.ask(questions);
        this.armCache();
      });
    }, Math.max(0, next - monotonicMs()));
    this.cacheTimer.unref();
  }

  /** The browse query, with our known answers for that interface, on every interface and family. */
  private browseAll(now: number): void {
    for (const iface of this.ifaces) {
      const answers: Answer[] = this.cache.knownAnswers(iface.name, now).slice(0, MAX_KNOWN_ANSWERS).map((k) => ({
        type: 'PTR', name: MOBDEV2_SERVICE, ttl: k.ttl, data: `${k.instance}.${MOBDEV2_SERVICE}`,
      }));
      this.sendOn(iface, { iface, questions: [{ type: 'PTR', name: MOBDEV2_SERVICE }], answers });
    }
  }

  private ask(questions: readonly CacheQuestion[]): void {
    if (questions.length === 0) return;
    const now = monotonicMs();
    if (this.lastAsked.size > 4096) this.lastAsked.clear();
    const byIface = new Map<string, Question[]>();
    for (const q of questions) {
      const k = `${q.ifaceKey}|${q.type}|${q.name.toLowerCase()}`;
      const last = this.lastAsked.get(k);
      if (last !== undefined && now - last < QUESTION_MIN_INTERVAL_MS) continue;
      this.lastAsked.set(k, now);
      let list = byIface.get(q.ifaceKey);
      if (list === undefined) byIface.set(q.ifaceKey, (list = []));
      list.push({ type: q.type, name: q.name });
    }
    for (const [ifaceKey, qs] of byIface) {
      // an unknown interface ('') is asked on all of them
      for (const iface of this.ifaces) if (ifaceKey === '' || iface.name === ifaceKey) this.sendOn(iface, { iface, questions: qs, answers: [] });
    }
  }

  private sendOn(iface: LocalInterface, packet: PendingSend): void {
    for (const fs of this.sockets.values()) {
      if (!fs.ready || fs.closed || !fs.memberships.has(iface.name)) continue;
      if (fs.family === 6) {
        this.stats.queriesSent++;
        fs.mdns.query({ questions: packet.questions, answers: packet.answers }, { port: this.port, address: `${MDNS_GROUP_V6}%${iface.name}` }, (err: Error | null) => { this.onSent(err, 6, iface); });
      } else {
        this.v4Queue.push({ iface, packet });
        this.pumpV4();
      }
    }
  }

  /** IPv4: the multicast interface is a socket option, so sends go one at a time. */
  private pumpV4(): void {
    const fs = this.sockets.get(4);
    if (this.v4Sending || fs === undefined || !fs.ready || fs.closed) return;
    const next = this.v4Queue.shift();
    if (next === undefined) return;
    const addr = membershipArg(4, next.iface);
    if (addr === undefined) { this.pumpV4(); return; }
    try {
      fs.socket.setMulticastInterface(addr);
    } catch (err) {
      this.onSent(err instanceof Error ? err : new Error(String(err)), 4, next.iface);
      this.pumpV4();
      return;
    }
    this.v4Sending = true;
    this.stats.queriesSent++;
    fs.mdns.query({ questions: next.packet.questions, answers: next.packet.answers }, { port: this.port, address: MDNS_GROUP_V4 }, (err: Error | null) => {
      this.v4Sending = false;
      this.onSent(err, 4, next.iface);
      this.pumpV4();
    });
  }

  private onSent(err: Error | null | undefined, family: 4 | 6, iface: LocalInterface): void {
    if (err === null || err === undefined) return;
    this.stats.sendErrors++;
    this.warnLimited(`send:${family}:${iface.name}`, { err, family, iface: iface.name }, 'mDNS: query not sent');
  }

  // ── interfaces ────────────────────────────────────────────────────────────────────────────

  private selectInterfaces(): LocalInterface[] {
    const all = listInterfaces({ ...(this.opts.interfaceSource === undefined ? {} : { source: this.opts.interfaceSource }), includeInternal: this.opts.includeInternal === true });
    const only = this.opts.interfaces;
    return only === undefined ? all : all.filter((i) => only.includes(i.name));
  }

  private poll(): void {
    const next = this.selectInterfaces();
    const fp = interfacesFingerprint(next);
    if (fp === this.fingerprint) return;
    const gone = this.ifaces.filter((i) => !next.some((n) => n.name === i.name));
    this.log.info({ interfaces: next.map((i) => i.name), gone: gone.map((i) => i.name) }, 'mDNS: interfaces changed');
    this.ifaces = next;
    this.fingerprint = fp;
    const now = monotonicMs();
    for (const g of gone) this.emitAll(this.cache.dropInterface(interfaceKey({ name: g.name, index: g.index }), now));
    for (const fs of this.sockets.values()) if (fs.ready && !fs.closed) this.syncMemberships(fs);
    this.schedule.reset(now);
    this.armSchedule();
    this.armCache();
  }

  // ── plumbing ──────────────────────────────────────────────────────────────────────────────

  private emitAll(events: readonly CacheEvent[]): void {
    for (const e of events) {
      try {
        if (e.type === 'up') {
          this.log.info({ instance: e.advert.instance, addresses: e.advert.addresses.map((a) => a.host ?? a.address) }, 'mDNS: phone advertised');
          this.emit('up', e.advert);
        } else if (e.type === 'changed') {
          this.log.info({ instance: e.advert.instance, addresses: e.advert.addresses.map((a) => a.host ?? a.address) }, 'mDNS: advert changed');
          this.emit('changed', e.advert, e.previous);
        } else {
          this.log.info({ instance: e.advert.instance, reason: e.reason }, 'mDNS: phone gone');
          this.emit('down', e.advert, e.reason);
        }
      } catch (err) {
        // a listener's bug must not stop the other events or reach the socket handler
        this.log.error({ err, event: e.type }, 'mDNS: an event listener threw');
      }
    }
  }

  private guard(what: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.log.error({ err, what }, 'mDNS: unexpected error; the browser carries on');
    }
  }

  private warnLimited(kind: string, obj: object, msg: string): void {
    const now = monotonicMs();
    if (this.lastWarn.size > 256) this.lastWarn.clear();
    const w = this.lastWarn.get(kind);
    if (w !== undefined && now - w.at < WARN_INTERVAL_MS) {
      w.suppressed++;
      return;
    }
    this.lastWarn.set(kind, { at: now, suppressed: 0 });
    this.log.warn({ ...obj, suppressedBefore: w?.suppressed ?? 0 }, msg);
  }
}

/** Milliseconds on a clock that wall-clock steps (NTP, suspend) do not move: TTLs are durations. */
function monotonicMs(): number {
  return performance.now();
}

/** What joins/sends on an interface: its first IPv4 address, or `::%name` if it has IPv6. */
function membershipArg(family: 4 | 6, iface: LocalInterface): string | undefined {
  const a = iface.addresses.find((x) => x.family === family);
  if (a === undefined) return undefined;
  return family === 4 ? a.address : `::%${iface.name}`;
}
