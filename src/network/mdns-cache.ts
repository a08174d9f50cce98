/**
 * The mDNS record cache of `_apple-mobdev2._tcp` and the instance view derived from it: which
 * phones advertise, where, and when that changes. Pure: time comes in as `now` (ms), records come
 * in already validated (mdns-records.ts); the browser (mdns-browser.ts) does the I/O and the timers.
 *
 * Records are kept per arrival interface (RFC 6762 §10: a cache is per interface; a link-local
 * address means nothing on another link). Rules applied (RFC 6762):
 *   - TTL: a record lives TTL seconds from its arrival (capped, MAX_TTL_SECONDS), and is
 *     re-queried at 80, 85, 90 and 95 % of it (+0–2 % jitter) while it belongs to an instance (§5.2);
 *   - goodbye (TTL 0): the record goes 1 s later (§10.1), so an immediate correction wins;
 *   - cache-flush bit: the other records of that name and type on that interface received more than
 *     1 s earlier go 1 s later (§10.2): how an address change replaces the old address;
 *   - SRV and TXT are unique records (one per instance, RFC 6763): a new one replaces the old one.
 *
 * Per instance (lower-cased instance label); events are emitted on the arrows marked (…):
 *
 *            a PTR, SRV or TXT of it arrives
 *   absent ───────────────────────────────► pending ── its last record expires ──► absent
 *                                            │   ▲
 *      PTR live, SRV live and ≥ 1 address    │   │ PTR or every address expired / goodbye
 *      of the SRV target              (up)   ▼   │ or its interface went (down: reason)
 *                                           present ──┐ addresses, interfaces, port
 *                                              ▲      │ or TXT differ (changed)
 *                                              └──────┘
 *
 * Bounded against a hostile LAN: at most `maxInstances` instances, `maxInstancesPerSource` first
 * announced by one sender, and `maxRecords` records (records of a new instance beyond that are
 * refused and counted: instances we track are never evicted by newcomers), `maxAddresses` per
 * target and interface; TXT size is bounded before it gets here. A flood from one host thus
 * leaves room for the phones; a flood from many forged sources fills the cache until its records
 * expire (TTLs are capped, mdns-records.ts).
 */
import type { ArrivalInterface } from './interfaces.js';
import { dialHost } from './interfaces.js';
import { escapedFullServiceName, MOBDEV2_SERVICE, nameKey, parseInstanceName, parseMobdevTxt } from './mdns-records.js';
import type { MdnsRecord } from './mdns-records.js';

/** One address of an advert, on the interface it was learnt on. */
export interface AdvertAddress {
  readonly family: 4 | 6;
  /** Without zone. */
  readonly address: string;
  /** The interface the record arrived on (undefined only if the caller could not tell; the browser drops such packets). */
  readonly interfaceName: string | undefined;
  /** OS interface index, 0 when unknown. */
  readonly interfaceIndex: number;
  /** What to give net.connect: `fe80::…%ifname` for link-local; undefined if that cannot be built. */
  readonly host: string | undefined;
  /** TTL of the address record as received, in seconds. */
  readonly ttl: number;
}

/** A phone's `_apple-mobdev2._tcp` advert as currently known (fits identity.ts `AdvertIdentity`). */
export interface MobdevAdvert {
  /** The instance label, unescaped, as advertised: `aa:bb:cc:dd:ee:ff@fe80::…`. */
  readonly instance: string;
  /** For EscapedFullServiceName: `<escaped instance>._apple-mobdev2._tcp.local.` */
  readonly fullServiceName: string;
  /** The MAC of the instance name, normalised (may be a private MAC on iOS 17.1+/26.4+). */
  readonly mac: string | undefined;
  /** The fe80:: address of the instance name (without zone), if any. */
  readonly nameAddress: string | undefined;
  /** Raw TXT `identifier`; undefined when absent or no TXT yet. */
  readonly identifier: Buffer | undefined;
  /** Raw TXT `authTag` / `authTag#N` values. */
  readonly authTags: readonly Buffer[];
  /** Whether a TXT record is known (a phone that sends none is an old, MAC-only one). */
  readonly hasTxt: boolean;
  /** SRV port (62078 on phones; dial 62078 regardless, as every client does). */
  readonly port: number | undefined;
  /** SRV target host name. */
  readonly target: string | undefined;
  /** Every address, IPv4 first, then by interface and address. */
  readonly addresses: readonly AdvertAddress[];
  /** The interfaces the PTR was seen on. */
  readonly interfaces: readonly ArrivalInterface[];
  /** TTL of the PTR as received (seconds). */
  readonly ttl: number;
}

export type DownReason = 'goodbye' | 'expired' | 'interface-gone';

export type CacheEvent =
  | { readonly type: 'up'; readonly advert: MobdevAdvert }
  | { readonly type: 'changed'; readonly advert: MobdevAdvert; readonly previous: MobdevAdvert }
  | { readonly type: 'down'; readonly advert: MobdevAdvert; readonly reason: DownReason };

export type QuestionType = 'PTR' | 'SRV' | 'TXT' | 'A' | 'AAAA';

/** A question to send on one interface (a refresh, or a record an instance still lacks). */
export interface CacheQuestion {
  readonly ifaceKey: string;
  readonly iface: ArrivalInterface;
  readonly name: string;
  readonly type: QuestionType;
}

export type Refusal = 'instance-cap' | 'source-cap' | 'record-cap' | 'address-cap';

export interface IngestResult {
  readonly events: CacheEvent[];
  readonly questions: CacheQuestion[];
  readonly refused: Refusal[];
}

export interface CacheOptions {
  readonly maxInstances?: number;
  readonly maxRecords?: number;
  readonly maxAddresses?: number;
  /** Most instances first announced by one source address (one host flooding fakes cannot fill the cache). */
  readonly maxInstancesPerSource?: number;
  /** Random source for refresh jitter, [0, 1). */
  readonly random?: () => number;
}

export const DEFAULT_MAX_INSTANCES = 256;
export const DEFAULT_MAX_RECORDS = 4096;
export const DEFAULT_MAX_ADDRESSES = 16;
export const DEFAULT_MAX_INSTANCES_PER_SOURCE = 16;
const GRACE_MS = 1000;
const REFRESH_POINTS = [0.8, 0.85, 0.9, 0.95];
/** Records shorter-lived than this are not refreshed (nothing useful fits in their life). */
const MIN_REFRESH_TTL_S = 2;

interface Entry {
  readonly key: string;
  readonly ifaceKey: string;
  readonly iface: ArrivalInterface;
  readonly record: MdnsRecord;
  /** lower-cased instance label, for PTR/SRV/TXT */
  readonly instanceKey: string | undefined;
  readonly receivedAt: number;
  expiresAt: number;
  goodbye: boolean;
  refreshStep: number;
  nextRefreshAt: number | undefined;
}

interface InstanceState {
  label: string;
  /** The source address that first told us of it. */
  source: string | undefined;
  view: MobdevAdvert | undefined;
  fingerprint: string;
  cause: DownReason;
}

export function interfaceKey(iface: ArrivalInterface): string {
  return iface.name ?? '';
}

export class MobdevCache {
  private readonly entries = new Map<string, Entry>();
  private readonly instances = new Map<string, InstanceState>();
  // Indexes, so that the work of one packet is proportional to the instances it names, not to the
  // cache (a hostile LAN may send thousands of packets a second).
  /** PTR/SRV/TXT entries by lower-cased instance label */
  private readonly byInstance = new Map<string, Set<Entry>>();
  /** A/AAAA entries by host name */
  private readonly byHost = new Map<string, Set<Entry>>();
  /** SRV entries by target host name */
  private readonly srvByTarget = new Map<string, Set<Entry>>();
  private readonly perSource = new Map<string, number>();
  /** No deadline is earlier than this (it may be stale-early after removals: tick() recomputes it). */
  private earliest: number | undefined;
  private readonly maxInstances: number;
  private readonly maxRecords: number;
  private readonly maxAddresses: number;
  private readonly maxPerSource: number;
  private readonly random: () => number;

  constructor(opts: CacheOptions = {}) {
    this.maxInstances = opts.maxInstances ?? DEFAULT_MAX_INSTANCES;
    this.maxRecords = opts.maxRecords ?? DEFAULT_MAX_RECORDS;
    this.maxAddresses = opts.maxAddresses ?? DEFAULT_MAX_ADDRESSES;
    this.maxPerSource = opts.maxInstancesPerSource ?? DEFAULT_MAX_INSTANCES_PER_SOURCE;
    this.random = opts.random ?? Math.random;
  }

  get size(): { readonly instances: number; readonly records: number } {
    return { instances: this.instances.size, records: this.entries.size };
  }

  /** Is `name` (lower-cased) the SRV target of some instance we track? (address records are kept only then) */
  isTarget(name: string): boolean {
    return this.srvByTarget.has(name);
  }

  /** Records of one response packet that arrived on `iface` from `source` (the sender's address). */
  ingest(records: readonly MdnsRecord[], iface: ArrivalInterface, now: number, source?: string): IngestResult {
    const ifaceKey = interfaceKey(iface);
    const touched = new Set<string>();
    const touchedHosts = new Set<string>();
    const refused: Refusal[] = [];
    for (const rec of records) {
      const instanceKey = 'instance' in rec ? rec.instance.toLowerCase() : undefined;
      if (instanceKey !== undefined && !this.instances.has(instanceKey)) {
        if (rec.ttl === 0) continue; // a goodbye for something we never knew
        if (this.instances.size >= this.maxInstances) { refused.push('instance-cap'); continue; }
        if (source !== undefined && this.countFrom(source) >= this.maxPerSource) { refused.push('source-cap'); continue; }
      }
      const key = entryKey(ifaceKey, rec);
      const old = this.entries.get(key);
      if (old === undefined && this.entries.size >= this.maxRecords) { refused.push('record-cap'); continue; }
      if (old === undefined && (rec.type === 'A' || rec.type === 'AAAA') && rec.ttl > 0 && this.countAddresses(ifaceKey, rec.name) >= this.maxAddresses) {
        refused.push('address-cap');
        continue;
      }
      if (rec.flush) this.flushOthers(ifaceKey, rec, key, now);
      if (rec.ttl === 0) {
        if (old !== undefined) {
          old.expiresAt = Math.min(old.expiresAt, now + GRACE_MS);
          old.goodbye = true;
          old.nextRefreshAt = undefined;
          this.lower(old.expiresAt);
        }
      } else {
        // a plain refresh (same content, same TTL) of an instance that is up changes no view: skip
        // the recomputation (the common case, and what a flood of re-announcements costs us)
        const refreshOnly = old !== undefined && !old.goodbye && sameRecord(old.record, rec)
          && (instanceKey === undefined || this.instances.get(instanceKey)?.view !== undefined);
        if (instanceKey !== undefined && !this.instances.has(instanceKey) && 'instance' in rec) {
          this.instances.set(instanceKey, { label: rec.instance, source, view: undefined, fingerprint: '', cause: 'expired' });
          if (source !== undefined) this.perSource.set(source, (this.perSource.get(source) ?? 0) + 1);
        }
        const entry: Entry = { key, ifaceKey, iface, record: rec, instanceKey, receivedAt: now, expiresAt: now + rec.ttl * 1000, goodbye: false, refreshStep: 0, nextRefreshAt: undefined };
        entry.nextRefreshAt = this.refreshTime(entry);
        if (old !== undefined) this.removeEntry(old);
        this.addEntry(entry);
        if (refreshOnly) continue;
      }
      if (instanceKey !== undefined) touched.add(instanceKey);
      else touchedHosts.add(rec.name);
    }
    for (const host of touchedHosts) for (const k of this.instancesOfTarget(host)) touched.add(k);
    const events = this.update(touched, now);
    const questions = this.missing(touched, ifaceKey, iface, now);
    return { events, questions, refused };
  }

  /** Drop what expired by `now`; the questions whose refresh time has come (each asked once per point). */
  tick(now: number): { events: CacheEvent[]; questions: CacheQuestion[] } {
    const touched = new Set<string>();
    const questions: CacheQuestion[] = [];
    const asked = new Set<string>();
    this.earliest = undefined;
    for (const e of [...this.entries.values()]) {
      if (e.expiresAt <= now) {
        this.removeEntry(e);
        this.touch(e, touched, e.goodbye ? 'goodbye' : 'expired');
        continue;
      }
      if (e.nextRefreshAt !== undefined && e.nextRefreshAt <= now) {
        e.refreshStep++;
        e.nextRefreshAt = this.refreshTime(e);
        if (this.belongsToInstance(e)) {
          const q = questionFor(e);
          const qk = `${q.ifaceKey}|${q.type}|${q.name}`;
          if (!asked.has(qk)) { asked.add(qk); questions.push(q); }
        }
      }
      this.lower(deadlineOf(e));
    }
    return { events: this.update(touched, now), questions };
  }

  /** An interface went away: everything learnt on it goes now. */
  dropInterface(ifaceKey: string, now: number): CacheEvent[] {
    const touched = new Set<string>();
    for (const e of [...this.entries.values()]) {
      if (e.ifaceKey !== ifaceKey) continue;
      this.removeEntry(e);
      this.touch(e, touched, 'interface-gone');
    }
    return this.update(touched, now);
  }

  /** The earliest time tick() has something to do, or undefined when the cache is empty. */
  nextDeadline(): number | undefined {
    return this.entries.size === 0 ? undefined : this.earliest;
  }

  /** PTR answers we know on an interface with more than half their TTL left (RFC 6762 §7.1 known-answer suppression). */
  knownAnswers(ifaceKey: string, now: number): { instance: string; ttl: number }[] {
    const out: { instance: string; ttl: number }[] = [];
    for (const e of this.entries.values()) {
      if (e.ifaceKey !== ifaceKey || e.record.type !== 'PTR' || e.goodbye) continue;
      const total = e.record.ttl * 1000;
      const left = e.expiresAt - now;
      if (left > total / 2) out.push({ instance: e.record.instance, ttl: Math.floor(left / 1000) });
    }
    return out;
  }

  /** The advert of an instance that is up (label in any case), if it is. */
  advertOf(instance: string): MobdevAdvert | undefined {
    return this.instances.get(instance.toLowerCase())?.view;
  }

  /** Every instance currently up. */
  adverts(): MobdevAdvert[] {
    const out: MobdevAdvert[] = [];
    for (const s of this.instances.values()) if (s.view !== undefined) out.push(s.view);
    return out;
  }

  private touch(e: Entry, touched: Set<string>, cause: DownReason): void {
    const keys = e.instanceKey !== undefined ? [e.instanceKey] : this.instancesOfTarget(e.record.name);
    for (const k of keys) {
      touched.add(k);
      const s = this.instances.get(k);
      if (s !== undefined) s.cause = cause;
    }
  }

  private refreshTime(e: Entry): number | undefined {
    if (e.record.ttl < MIN_REFRESH_TTL_S || e.refreshStep >= REFRESH_POINTS.length) return undefined;
    const point = (REFRESH_POINTS[e.refreshStep] ?? 1) + this.random() * 0.02;
    return e.receivedAt + Math.floor(e.record.ttl * 1000 * point);
  }

  private belongsToInstance(e: Entry): boolean {
    return e.instanceKey !== undefined || this.isTarget(e.record.name);
  }

  private countFrom(source: string): number {
    return this.perSource.get(source) ?? 0;
  }

  private addEntry(e: Entry): void {
    this.entries.set(e.key, e);
    indexAdd(e.instanceKey !== undefined ? this.byInstance : this.byHost, e.instanceKey ?? e.record.name, e);
    if (e.record.type === 'SRV') indexAdd(this.srvByTarget, e.record.target, e);
    this.lower(deadlineOf(e));
  }

  private removeEntry(e: Entry): void {
    if (this.entries.get(e.key) !== e) return;
    this.entries.delete(e.key);
    indexDelete(e.instanceKey !== undefined ? this.byInstance : this.byHost, e.instanceKey ?? e.record.name, e);
    if (e.record.type === 'SRV') indexDelete(this.srvByTarget, e.record.target, e);
  }

  private lower(t: number): void {
    if (this.earliest === undefined || t < this.earliest) this.earliest = t;
  }

  private countAddresses(ifaceKey: string, name: string): number {
    let n = 0;
    for (const e of this.byHost.get(name) ?? []) if (e.ifaceKey === ifaceKey) n++;
    return n;
  }

  private flushOthers(ifaceKey: string, rec: MdnsRecord, key: string, now: number): void {
    // PTR is a shared record: a flush bit on it means nothing (RFC 6762 §10.2)
    if (rec.type === 'PTR') return;
    const set = 'instance' in rec ? this.byInstance.get(rec.instance.toLowerCase()) : this.byHost.get(rec.name);
    for (const e of set ?? []) {
      if (e.key === key || e.ifaceKey !== ifaceKey || e.record.type !== rec.type || e.record.name !== rec.name) continue;
      if (e.receivedAt < now - GRACE_MS) {
        e.expiresAt = Math.min(e.expiresAt, now + GRACE_MS);
        e.nextRefreshAt = undefined;
        this.lower(e.expiresAt);
      }
    }
  }

  private instancesOfTarget(host: string): string[] {
    const out = new Set<string>();
    for (const e of this.srvByTarget.get(host) ?? []) if (e.instanceKey !== undefined) out.add(e.instanceKey);
    return [...out];
  }

  private update(touched: Set<string>, now: number): CacheEvent[] {
    const events: CacheEvent[] = [];
    for (const k of touched) {
      const state = this.instances.get(k);
      if (state === undefined) continue;
      const view = this.view(k, state.label, now);
      const fingerprint = view === undefined ? '' : fingerprintOf(view);
      const previous = state.view;
      if (previous === undefined && view !== undefined) events.push({ type: 'up', advert: view });
      else if (previous !== undefined && view === undefined) events.push({ type: 'down', advert: previous, reason: state.cause });
      else if (previous !== undefined && view !== undefined && fingerprint !== state.fingerprint) events.push({ type: 'changed', advert: view, previous });
      state.view = view;
      state.fingerprint = fingerprint;
      state.cause = 'expired';
      if (view === undefined && !this.hasEntries(k)) {
        this.instances.delete(k);
        if (state.source !== undefined) {
          const n = (this.perSource.get(state.source) ?? 1) - 1;
          if (n <= 0) this.perSource.delete(state.source);
          else this.perSource.set(state.source, n);
        }
      }
    }
    return events;
  }

  private hasEntries(instanceKey: string): boolean {
    return (this.byInstance.get(instanceKey)?.size ?? 0) > 0;
  }

  private view(instanceKey: string, label: string, now: number): MobdevAdvert | undefined {
    const ptrs: Entry[] = [];
    let srv: Entry | undefined;
    let txt: Entry | undefined;
    const targets = new Map<string, Set<string>>(); // target → interfaces whose SRV names it
    for (const e of this.byInstance.get(instanceKey) ?? []) {
      if (e.expiresAt <= now) continue;
      const r = e.record;
      if (r.type === 'PTR') ptrs.push(e);
      else if (r.type === 'SRV') {
        if (srv === undefined || e.receivedAt >= srv.receivedAt) srv = e;
        let set = targets.get(r.target);
        if (set === undefined) targets.set(r.target, (set = new Set()));
        set.add(e.ifaceKey);
      } else if (r.type === 'TXT' && (txt === undefined || e.receivedAt >= txt.receivedAt)) txt = e;
    }
    if (ptrs.length === 0 || srv === undefined || srv.record.type !== 'SRV') return undefined;
    const addresses: AdvertAddress[] = [];
    for (const e of [...targets.keys()].flatMap((t) => [...(this.byHost.get(t) ?? [])])) {
      const r = e.record;
      if ((r.type !== 'A' && r.type !== 'AAAA') || e.expiresAt <= now) continue;
      const family = r.type === 'A' ? 4 : 6;
      if (addresses.some((a) => a.address === r.address && a.interfaceName === e.iface.name)) continue;
      addresses.push({ family, address: r.address, interfaceName: e.iface.name, interfaceIndex: e.iface.index, host: dialHost(r.address, e.iface.name), ttl: r.ttl });
    }
    if (addresses.length === 0) return undefined;
    addresses.sort((a, b) => a.family - b.family || byCodePoint(a.interfaceName ?? '', b.interfaceName ?? '') || byCodePoint(a.address, b.address));
    const parsedTxt = txt?.record.type === 'TXT' ? parseMobdevTxt(txt.record.txt) : { identifier: undefined, authTags: [] };
    const { mac, linkLocal } = parseInstanceName(label);
    const interfaces: ArrivalInterface[] = [];
    for (const p of ptrs) if (!interfaces.some((i) => i.name === p.iface.name)) interfaces.push(p.iface);
    interfaces.sort((a, b) => byCodePoint(a.name ?? '', b.name ?? ''));
    const newestPtr = ptrs.reduce((a, b) => (b.receivedAt > a.receivedAt ? b : a));
    return {
      instance: label,
      fullServiceName: escapedFullServiceName(label),
      mac,
      nameAddress: linkLocal,
      identifier: parsedTxt.identifier,
      authTags: parsedTxt.authTags,
      hasTxt: txt !== undefined,
      port: srv.record.port,
      target: srv.record.target,
      addresses,
      interfaces,
      ttl: newestPtr.record.ttl,
    };
  }

  /** For instances still pending: ask what they lack on the interface this packet came from. */
  private missing(touched: Set<string>, ifaceKey: string, iface: ArrivalInterface, now: number): CacheQuestion[] {
    const out: CacheQuestion[] = [];
    for (const k of touched) {
      const state = this.instances.get(k);
      if (state === undefined || state.view !== undefined) continue;
      let hasPtr = false;
      let srvTarget: string | undefined;
      let hasTxt = false;
      for (const e of this.byInstance.get(k) ?? []) {
        if (e.ifaceKey !== ifaceKey || e.expiresAt <= now || e.goodbye) continue;
        if (e.record.type === 'PTR') hasPtr = true;
        else if (e.record.type === 'SRV') srvTarget = e.record.target;
        else if (e.record.type === 'TXT') hasTxt = true;
      }
      if (!hasPtr) continue; // only chase instances announced on this interface
      const name = `${state.label}.${MOBDEV2_SERVICE}`;
      if (srvTarget === undefined) out.push({ ifaceKey, iface, name, type: 'SRV' });
      if (!hasTxt) out.push({ ifaceKey, iface, name, type: 'TXT' });
      if (srvTarget !== undefined) {
        out.push({ ifaceKey, iface, name: srvTarget, type: 'A' }, { ifaceKey, iface, name: srvTarget, type: 'AAAA' });
      }
    }
    return out;
  }
}

function entryKey(ifaceKey: string, rec: MdnsRecord): string {
  switch (rec.type) {
    case 'PTR':
      return `${ifaceKey}|PTR|${rec.instance.toLowerCase()}`;
    case 'SRV':
    case 'TXT':
      return `${ifaceKey}|${rec.type}|${rec.name}`;
    case 'A':
    case 'AAAA':
      return `${ifaceKey}|${rec.type}|${rec.name}|${rec.address}`;
  }
}

function sameRecord(a: MdnsRecord, b: MdnsRecord): boolean {
  if (a.ttl !== b.ttl) return false;
  switch (a.type) {
    case 'PTR':
      return b.type === 'PTR' && a.instance === b.instance;
    case 'SRV':
      return b.type === 'SRV' && a.port === b.port && a.target === b.target;
    case 'TXT':
      return b.type === 'TXT' && a.txt.length === b.txt.length && a.txt.every((t, i) => t.equals(b.txt[i] ?? Buffer.alloc(0)));
    case 'A':
    case 'AAAA':
      return b.type === a.type && a.address === b.address;
  }
}

function deadlineOf(e: Entry): number {
  return e.nextRefreshAt !== undefined ? Math.min(e.expiresAt, e.nextRefreshAt) : e.expiresAt;
}

function indexAdd<K>(index: Map<K, Set<Entry>>, key: K, e: Entry): void {
  let set = index.get(key);
  if (set === undefined) index.set(key, (set = new Set()));
  set.add(e);
}

function indexDelete<K>(index: Map<K, Set<Entry>>, key: K, e: Entry): void {
  const set = index.get(key);
  if (set === undefined) return;
  set.delete(e);
  if (set.size === 0) index.delete(key);
}

function questionFor(e: Entry): CacheQuestion {
  const r = e.record;
  return { ifaceKey: e.ifaceKey, iface: e.iface, type: r.type, name: r.type === 'PTR' ? nameKey(MOBDEV2_SERVICE) : r.name };
}

function fingerprintOf(a: MobdevAdvert): string {
  return JSON.stringify([
    a.port,
    a.target,
    a.identifier?.toString('hex'),
    a.authTags.map((t) => t.toString('hex')),
    a.hasTxt,
    a.addresses.map((x) => `${x.address}%${x.interfaceName ?? ''}`),
    a.interfaces.map((i) => i.name ?? ''),
  ]);
}

/**
 * Order of names and addresses by code unit: stable and enough for a deterministic list.
 * (localeCompare would load ICU's collation data, about 6 MiB of resident memory, the first time
 * a phone is seen.)
 */
function byCodePoint(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
