/**
 * Network devices: the provider that turns what discovery heard (and what the user named) into
 * proven, heartbeat-held devices in the directory.
 *
 *   advert (mDNS) ──match by authTag, then MAC──▶ candidate UDIDs ──┐
 *   manual address (--network-device, AddDevice) ──UniqueDeviceID──┤
 *                                                                  ▼
 *        one Reachability per UDID (dials its endpoints, proves, retries with backoff)
 *                    │ up: directory.add(Network info) ─▶ Attached        │ down: Detached,
 *                    ▼                                                     ▼ tunnels end
 *              NetworkLink (Connect ─▶ TCP to the proven endpoint)
 *
 * A UDID gets a Reachability once an advert or a manual address names it, and keeps it while it
 * has a pair record: the endpoints it was seen at stay hints for re-dialing after the advert is
 * gone (a sleeping phone says goodbye; it comes back at the same address more often than not).
 * An advert that replaces addresses (an IP change) drops the ones it no longer names, and when the
 * session is at one of those, the device is proven at the new address and moved there. Any sign
 * of the phone (an advert, a change, a re-announcement or an answer to our query: `advertSeen`)
 * makes a waiting device dial at once, not at the end of its backoff.
 * Only removing its manual address (with no advert naming it) or its record ends the effort.
 * Adverts that match no record are kept (bounded) and matched again when records may have changed.
 */
import type { DeviceSink, NetworkDeviceInfo } from '../devices/index.js';
import type { Logger } from '../log.js';
import { sessionCredentials } from '../lockdown/index.js';
import type { SessionCredentials } from '../lockdown/index.js';
import { describeEndpoint } from './dial.js';
import type { Endpoint } from './dial.js';
import { DeviceSession } from './device-session.js';
import { ManualAddress } from './manual-address.js';
import type { HeartbeatEnd } from './heartbeat.js';
import { NetworkLink } from './link.js';
import { Reachability } from './reachability.js';
import type { DownReason } from './reachability.js';
import { NetworkIdentityError } from './errors.js';
import { matchAdvert } from './identity.js';
import type { PairRecordIdentity } from './identity.js';
import type { MobdevAdvert } from './mdns-cache.js';
import { PairRecordNotFoundError } from '../pairrecords/index.js';

/** What the provider uses of a discovered `_apple-mobdev2._tcp` instance (MdnsBrowser's MobdevAdvert). */
export type Advert = Pick<MobdevAdvert, 'instance' | 'fullServiceName' | 'mac' | 'identifier' | 'authTags'> & {
  /** Where the phone said it is; each is an endpoint to dial. */
  readonly addresses: readonly Endpoint[];
};

/** A pair record as the provider uses it. */
export interface KnownRecord {
  readonly udid: string;
  readonly credentials: SessionCredentials;
}

/** Where pair records come from (FilePairRecordStore). */
export interface RecordSource {
  list(): Promise<string[]>;
  read(id: string): Promise<Buffer>;
  systemBuid(): Promise<string>;
}

export interface NetworkProviderOptions {
  readonly directory: DeviceSink;
  readonly records: RecordSource;
  readonly log: Logger;
  /** Bound on each TCP connect and lockdown round trip while proving. */
  readonly timeoutMs?: number;
  /** Connect timeout of clients' Connects (CONNECT_TIMEOUT_MS). */
  readonly connectTimeoutMs?: number;
  /** Ask discovery again about these instances (a device that named them cannot be reached). */
  readonly requery?: (instances: readonly string[]) => void;
  readonly initialBackoffMs?: number;
  readonly maxBackoffMs?: number;
  /** Heartbeat grace (tests). */
  readonly graceMs?: (intervalMs: number) => number;
}

export const PROVE_TIMEOUT_MS = 5000;
/** Adverts matching no record that are remembered for a later match; more are dropped (a flooded LAN). */
const MAX_UNMATCHED = 256;
/** Manual devices; a local user cannot make the daemon dial the whole internet. */
export const MAX_MANUAL = 64;
/** How soon adverts matching no record are matched again (a record may be saved meanwhile). */
const RECHECK_MS = 30_000;
/** Adverts make a waiting device dial at most this often (a LAN replaying one cannot make us dial in a loop). */
const POKE_MIN_INTERVAL_MS = 1000;

interface Tracked {
  readonly udid: string;
  readonly reach: Reachability;
  /** Adverts (by instance) that name this UDID. */
  readonly instances: Map<string, Advert>;
  /** Manual endpoints for this UDID. */
  readonly manual: Endpoint[];
  link: NetworkLink | undefined;
  /** When an advert last made it dial (performance.now()). */
  pokedAt: number;
}

export class NetworkProvider {
  private readonly opts: NetworkProviderOptions;
  private readonly log: Logger;
  private readonly timeoutMs: number;
  private readonly tracked = new Map<string, Tracked>();
  private readonly unmatched = new Map<string, Advert>();
  /** Pending re-match of `unmatched`. */
  private recheck: NodeJS.Timeout | undefined;
  /** Manual addresses whose UDID is not known yet, by address%interface. */
  private readonly asking = new Map<string, ManualAddress>();
  private stopped = false;

  constructor(options: NetworkProviderOptions) {
    this.opts = options;
    this.log = options.log;
    this.timeoutMs = options.timeoutMs ?? PROVE_TIMEOUT_MS;
  }

  /** UDIDs the provider is trying to reach or holds, with their state (tests, diagnostics). */
  states(): Map<string, string> {
    return new Map([...this.tracked].map(([udid, t]) => [udid, t.reach.current]));
  }

  /** A new or changed advert. Never rejects: a failure is logged (the advert is tried again later). */
  async advertUp(advert: Advert): Promise<void> {
    try {
      await this.match(advert);
    } catch (err) {
      this.log.warn({ err, instance: advert.instance }, 'network advert not handled');
      this.remember(advert);
    }
  }

  private remember(advert: Advert): void {
    this.unmatched.delete(advert.instance);
    if (this.unmatched.size < MAX_UNMATCHED) this.unmatched.set(advert.instance, advert);
    this.recheck ??= setTimeout(() => {
      this.recheck = undefined;
      void this.recordsChanged();
    }, RECHECK_MS).unref();
  }

  private async match(advert: Advert): Promise<void> {
    if (this.stopped) return;
    const records = await this.loadRecords();
    if (this.isStopped()) return;
    const udids = matchAdvert(advert, records.map(identityOf)).map((c) => c.udid);
    // The instance may have named other UDIDs before (records changed): take it from them.
    for (const t of this.tracked.values()) if (!udids.includes(t.udid) && t.instances.has(advert.instance)) this.dropInstance(t, advert.instance);
    if (udids.length === 0) {
      if (!this.unmatched.has(advert.instance)) {
        this.log.info({ instance: advert.instance, tags: advert.authTags.length, mac: advert.mac }, 'network device not shown: no pair record matches its advert');
      }
      this.remember(advert);
      return;
    }
    this.unmatched.delete(advert.instance);
    for (const udid of udids) {
      const t = this.track(udid);
      const previous = t.instances.get(advert.instance);
      t.instances.set(advert.instance, advert);
      // Addresses this advert replaced are the phone's word that it left them (an IP change).
      if (previous !== undefined) t.reach.forget(previous.addresses.filter((e) => !this.claimed(t, e)));
      t.reach.setEndpoints(advert.addresses);
      this.pokeFor(t);
      const session = t.reach.upSession;
      if (session !== undefined && !this.claimed(t, session.endpoint)) t.reach.relocate();
    }
  }

  /** A phone we know of answered or announced itself again, unchanged: a waiting device dials now. */
  advertSeen(instance: string): void {
    for (const t of this.tracked.values()) if (t.instances.has(instance)) this.pokeFor(t);
  }

  private pokeFor(t: Tracked): void {
    const now = performance.now();
    if (now - t.pokedAt < POKE_MIN_INTERVAL_MS) return;
    t.pokedAt = now;
    t.reach.poke();
  }

  /** Whether an advert or a manual address of `t` still names `e`. */
  private claimed(t: Tracked, e: Endpoint): boolean {
    const same = (x: Endpoint): boolean => x.address === e.address && x.interfaceIndex === e.interfaceIndex;
    return t.manual.some(same) || [...t.instances.values()].some((a) => a.addresses.some(same));
  }

  /** An advert said goodbye or expired: its endpoints are no longer a reason to dial. */
  advertDown(instance: string): void {
    this.unmatched.delete(instance);
    for (const t of [...this.tracked.values()]) if (t.instances.has(instance)) this.dropInstance(t, instance);
  }

  /**
   * Records may have changed (a SavePairRecord; or just time passing: a client may save a record
   * without naming a device): match the adverts nobody claimed again. Never rejects.
   */
  async recordsChanged(): Promise<void> {
    const pending = [...this.unmatched.values()];
    this.unmatched.clear();
    for (const advert of pending) await this.advertUp(advert);
    for (const t of this.tracked.values()) t.reach.poke();
  }

  /**
   * A device at a fixed address (VPNs, containers: where multicast does not reach). Without a
   * UDID the device is asked for it, now and again until it answers (src/network/manual-address.ts);
   * the session that follows proves it either way. Resolves with the UDID when it is known after
   * the first attempt, undefined while the address is still being asked; rejects when too many
   * manual devices exist, or, with `requireRecord` (a client's AddDevice, which wants an answer),
   * when the UDID has no pair record yet (NetworkIdentityError). Without it the device waits for
   * its record (the daemon's own --network-device and virtual phones, paired moments later).
   */
  async addManual(endpoint: Endpoint, udid?: string, requireRecord = false): Promise<string | undefined> {
    if (this.stopped) throw new NetworkIdentityError('the daemon is stopping');
    const count = [...this.tracked.values()].reduce((n, t) => n + t.manual.length, 0) + this.asking.size;
    if (count >= MAX_MANUAL) throw new NetworkIdentityError(`at most ${MAX_MANUAL} manual network devices`);
    if (udid !== undefined) {
      await this.manualFor(udid, endpoint, requireRecord);
      return udid;
    }
    const key = `${endpoint.address}%${endpoint.interfaceIndex}`;
    if (this.asking.has(key)) return undefined;
    let firstAttempt = true;
    let known: string | undefined;
    const asking = new ManualAddress({
      endpoint,
      log: this.log,
      timeoutMs: this.timeoutMs,
      onUdid: (id) => {
        this.asking.delete(key);
        // The first answer is the caller's to act on (AddDevice's Result); later ones are ours.
        if (firstAttempt) {
          known = id;
          return;
        }
        this.manualFor(id, endpoint, requireRecord).catch((err: unknown) => {
          this.log.warn({ udid: id, at: describeEndpoint(endpoint), err }, 'manual network device not added');
        });
      },
    });
    this.asking.set(key, asking);
    this.log.info({ at: describeEndpoint(endpoint) }, 'manual network device added; asking which phone it is');
    await asking.start();
    firstAttempt = false;
    if (known !== undefined) await this.manualFor(known, endpoint, requireRecord);
    return known;
  }

  private async manualFor(udid: string, endpoint: Endpoint, requireRecord: boolean): Promise<void> {
    if (requireRecord) {
      const records = await this.loadRecords();
      if (!records.some((r) => r.udid === udid)) throw new NetworkIdentityError(`no pair record for ${udid}: pair it over USB first`);
    }
    if (this.isStopped()) return;
    const t = this.track(udid);
    if (!t.manual.some((e) => e.address === endpoint.address && e.interfaceIndex === endpoint.interfaceIndex)) t.manual.push(endpoint);
    this.log.info({ udid, at: describeEndpoint(endpoint) }, 'manual network device known');
    t.reach.setEndpoints([endpoint]);
  }

  /** Forget manual endpoints by UDID, or by address; true when something was removed. */
  removeManual(what: { udid?: string | undefined; address?: string | undefined }): boolean {
    let removed = false;
    if (what.address !== undefined && what.udid === undefined) {
      for (const [key, m] of [...this.asking]) {
        if (m.endpoint.address !== what.address) continue;
        m.stop();
        this.asking.delete(key);
        removed = true;
      }
    }
    for (const t of [...this.tracked.values()]) {
      if (what.udid !== undefined && t.udid !== what.udid) continue;
      const gone = t.manual.filter((e) => what.address === undefined || e.address === what.address);
      if (gone.length === 0) continue;
      removed = true;
      for (const e of gone) t.manual.splice(t.manual.indexOf(e), 1);
      t.reach.forget(gone);
      this.log.info({ udid: t.udid, addresses: gone.map((e) => e.address) }, 'manual network device removed');
      this.untrackIfUnused(t);
    }
    return removed;
  }

  /** Daemon stop: sessions end, devices go (their links reset their connections). */
  stop(): Promise<void> {
    this.stopped = true;
    for (const m of this.asking.values()) m.stop();
    this.asking.clear();
    for (const t of this.tracked.values()) t.reach.stop();
    this.tracked.clear();
    this.unmatched.clear();
    if (this.recheck !== undefined) clearTimeout(this.recheck);
    this.recheck = undefined;
    return Promise.resolve();
  }

  /** Read after an await: stop() may have come meanwhile. */
  private isStopped(): boolean {
    return this.stopped;
  }

  private track(udid: string): Tracked {
    const existing = this.tracked.get(udid);
    if (existing !== undefined) return existing;
    const log = this.log.child({ udid });
    const t: Tracked = {
      udid,
      instances: new Map(),
      manual: [],
      link: undefined,
      pokedAt: -Infinity,
      reach: new Reachability({
        udid,
        log,
        prove: (endpoint, onEnd) => this.prove(udid, endpoint, log, onEnd),
        onUp: (session) => { this.up(t, session); },
        onDown: (session, why, err) => { this.down(t, session, why, err); },
        onUnreachable: () => { this.opts.requery?.([...t.instances.keys()]); },
        ...(this.opts.initialBackoffMs === undefined ? {} : { initialBackoffMs: this.opts.initialBackoffMs }),
        ...(this.opts.maxBackoffMs === undefined ? {} : { maxBackoffMs: this.opts.maxBackoffMs }),
      }),
    };
    this.tracked.set(udid, t);
    return t;
  }

  private dropInstance(t: Tracked, instance: string): void {
    t.instances.delete(instance);
  }

  /** The user removed the last manual address of a device no advert names: stop for good. */
  private untrackIfUnused(t: Tracked): void {
    if (t.instances.size > 0 || t.manual.length > 0) return;
    this.untrack(t);
  }

  private untrack(t: Tracked): void {
    t.reach.stop();
    t.link?.detach();
    t.link = undefined;
    this.tracked.delete(t.udid);
  }

  private async prove(udid: string, endpoint: Endpoint, log: Logger, onEnd: (why: HeartbeatEnd, err?: Error) => void): Promise<DeviceSession> {
    let bytes: Buffer;
    try {
      bytes = await this.opts.records.read(udid);
    } catch (err) {
      const t = this.tracked.get(udid);
      if (err instanceof PairRecordNotFoundError && t !== undefined && t.manual.length === 0) {
        // Deleted (DeletePairRecord, unpaired): nothing to prove an advert with, now or later. A
        // manual device stays: it is being asked for by address and may be paired any moment.
        queueMicrotask(() => { this.untrack(t); });
        log.info('network device dropped: its pair record is gone');
      }
      throw err;
    }
    const systemBuid = await this.opts.records.systemBuid();
    return DeviceSession.open({
      udid,
      endpoint,
      credentials: sessionCredentials(bytes),
      systemBuid,
      log,
      timeoutMs: this.timeoutMs,
      onEnd,
      ...(this.opts.graceMs === undefined ? {} : { graceMs: this.opts.graceMs }),
    });
  }

  private up(t: Tracked, session: DeviceSession): void {
    const e = session.endpoint;
    const advert = [...t.instances.values()].find((a) => a.addresses.some((x) => x.address === e.address)) ?? [...t.instances.values()][0];
    const info: NetworkDeviceInfo = {
      connectionType: 'Network',
      serial: t.udid,
      address: e.address,
      family: e.family,
      interfaceIndex: e.interfaceIndex,
      escapedFullServiceName: advert?.fullServiceName,
    };
    const timeout = this.opts.connectTimeoutMs;
    this.opts.directory.add(info, (context) => {
      const link = new NetworkLink(e, context, timeout);
      t.link = link;
      return link;
    });
    this.log.info({ udid: t.udid, at: describeEndpoint(e) }, 'network device proven and announced');
  }

  private down(t: Tracked, _session: DeviceSession, why: DownReason, err?: Error): void {
    const link = t.link;
    t.link = undefined;
    if (why === 'moved') this.log.info({ udid: t.udid, dev: link?.id }, 'network device moved to a new address: detached there, announced again');
    else this.log.info({ udid: t.udid, why, err, dev: link?.id }, 'network device lost: heartbeat ended');
    link?.detach(err);
  }

  private async loadRecords(): Promise<KnownRecord[]> {
    const ids = await this.opts.records.list();
    const out: KnownRecord[] = [];
    for (const udid of ids) {
      try {
        out.push({ udid, credentials: sessionCredentials(await this.opts.records.read(udid)) });
      } catch (err) {
        this.log.debug({ udid, err }, 'pair record unusable for network devices');
      }
    }
    return out;
  }
}

function identityOf(r: KnownRecord): PairRecordIdentity {
  return { udid: r.udid, hostId: r.credentials.hostId, wifiMacAddress: r.credentials.wifiMacAddress };
}
