/**
 * Whether one paired phone (one UDID) can be reached over the network, and the daemon's effort to
 * keep it so: which endpoints to try, in which order, and when to try again.
 *
 *            start() / endpoints learnt
 *   idle ──────────────────────────────▶ dialing ── a session is proven at an endpoint ──▶ up
 *                                          │  ▲                                          │
 *          every endpoint failed           │  │ backoff elapsed, new endpoints, or       │ heartbeat
 *          (unreachable, refused, TLS …)   ▼  │ poke() (an advert, an address change)    │ ended
 *                                        waiting ◀──────────── one immediate retry fails ┘
 *   dialing ── new endpoints, or poke() ──▶ another round at once after this one (no backoff)
 *   up ── relocate() (the phone no longer claims the session's address) and the device is proven
 *         at another known endpoint ──▶ up there (onDown 'moved', then onUp); none proven: stays up
 *   any ── stop() ──▶ stopped
 *
 * The backoff doubles from `initialMs` to `maxMs` and never gives up: a phone that comes back after
 * a Wi-Fi drop, a sleep or a new address is found again without a fresh mDNS announcement (usbmuxd2
 * and netmuxd only re-add a device on a new resolve, usbmuxd2 #34, #47). An endpoint where the peer
 * proved to be somebody else (TLS with another certificate, another UDID) is forgotten until an
 * advert names it again, so a phone that moved does not keep us knocking on a stranger's door.
 *
 * An address change is only a hint (mDNS is not authenticated): relocate() keeps the session it
 * has until a session is proven at another address, so a forged advert cannot take a device away,
 * and a real move is followed within one proof (about 0.1 s) instead of a heartbeat deadline.
 */
import type { Logger } from '../log.js';
import { isMuxdError } from '../errors.js';
import type { ErrorCode } from '../errors.js';
import type { Endpoint } from './dial.js';
import { describeEndpoint } from './dial.js';
import type { DeviceSession } from './device-session.js';
import type { HeartbeatEnd } from './heartbeat.js';

export type ReachabilityState = 'idle' | 'dialing' | 'up' | 'waiting' | 'stopped';

/** Why a session stopped being the device's: its heartbeat ended, or the device was proven elsewhere. */
export type DownReason = HeartbeatEnd | 'moved';

export interface ReachabilityOptions {
  readonly udid: string;
  readonly log: Logger;
  /** Prove the device at `endpoint`; `onEnd` is the session's heartbeat end. */
  readonly prove: (endpoint: Endpoint, onEnd: (why: HeartbeatEnd, err?: Error) => void) => Promise<DeviceSession>;
  /** A session is up: announce the device. */
  readonly onUp: (session: DeviceSession) => void;
  /** The session ended (heartbeat lost) or moved: the device is gone until the next `onUp`. */
  readonly onDown: (session: DeviceSession, why: DownReason, err?: Error) => void;
  /** Every endpoint failed: a good time to ask mDNS again. */
  readonly onUnreachable?: () => void;
  readonly initialBackoffMs?: number;
  readonly maxBackoffMs?: number;
}

export const INITIAL_BACKOFF_MS = 1000;
export const MAX_BACKOFF_MS = 60_000;

/** Codes of failures that say the peer is not this phone (as opposed to: not reachable now). */
const NOT_THIS_PHONE = new Set(['MUXD_ERR_LOCKDOWN_TLS', 'MUXD_ERR_NETWORK_IDENTITY', 'MUXD_ERR_LOCKDOWN_PROTOCOL']);

function key(e: Endpoint): string {
  return `${e.family}/${e.address}/${e.interfaceIndex}`;
}

const REASONS: Partial<Record<ErrorCode, string>> = {
  MUXD_ERR_CONNECTION_REFUSED: 'lockdown port refused',
  MUXD_ERR_DEVICE_UNREACHABLE: 'unreachable',
  MUXD_ERR_LOCKDOWN_TLS: 'session refused (TLS)',
  MUXD_ERR_NETWORK_IDENTITY: 'not the paired phone',
  MUXD_ERR_LOCKDOWN_ERROR: 'session refused by lockdownd',
  MUXD_ERR_LOCKDOWN_TIMEOUT: 'lockdownd did not answer',
  MUXD_ERR_LOCKDOWN_CLOSED: 'lockdownd closed the connection',
  MUXD_ERR_LOCKDOWN_PROTOCOL: 'not lockdownd',
  MUXD_ERR_PAIR_RECORD_NOT_FOUND: 'no pair record',
  MUXD_ERR_UNUSABLE_PAIR_RECORD: 'pair record unusable',
  MUXD_ERR_HEARTBEAT_SILENT: 'heartbeat silent',
};

/** Why an attempt failed, in a few words for the log. */
export function failureReason(err: unknown): string {
  if (isMuxdError(err)) return REASONS[err.code] ?? err.code;
  return 'unexpected error';
}

export class Reachability {
  readonly udid: string;
  private state: ReachabilityState = 'idle';
  private readonly log: Logger;
  private readonly opts: ReachabilityOptions;
  private readonly initialMs: number;
  private readonly maxMs: number;
  /** Endpoints to try, newest knowledge first. */
  private endpoints: Endpoint[] = [];
  /** Where the last session was up: tried first next time. */
  private lastGood: Endpoint | undefined;
  private backoffMs: number;
  private timer: NodeJS.Timeout | undefined;
  private session: DeviceSession | undefined;
  /** The last failure reason logged at info; repeats go to debug. */
  private lastReason: string | undefined;
  /** Endpoints learnt while dialing: dial again right after this round. */
  private redial = false;
  /** A relocate() round is running. */
  private relocating = false;

  constructor(options: ReachabilityOptions) {
    this.udid = options.udid;
    this.opts = options;
    this.log = options.log;
    this.initialMs = options.initialBackoffMs ?? INITIAL_BACKOFF_MS;
    this.maxMs = options.maxBackoffMs ?? MAX_BACKOFF_MS;
    this.backoffMs = this.initialMs;
  }

  get current(): ReachabilityState {
    return this.state;
  }

  /** The proven session, while up. */
  get upSession(): DeviceSession | undefined {
    return this.session;
  }

  /** Endpoints known now (tests, diagnostics). */
  get known(): readonly Endpoint[] {
    return this.endpoints;
  }

  /**
   * Endpoints the device is known at now (an advert's addresses, a manual address), tried before
   * the ones known already. Dials at once when idle, or when waiting and one of them is new.
   */
  setEndpoints(endpoints: readonly Endpoint[]): void {
    if (this.state === 'stopped') return;
    const seen = new Set<string>();
    const merged: Endpoint[] = [];
    for (const e of [...endpoints, ...this.endpoints]) {
      const k = key(e);
      if (seen.has(k)) continue;
      seen.add(k);
      merged.push(e);
    }
    const fresh = endpoints.some((e) => !this.endpoints.some((o) => key(o) === key(e)));
    this.endpoints = merged;
    if (this.state === 'dialing') {
      if (fresh) this.redial = true;
      return;
    }
    if (this.state === 'idle' || (this.state === 'waiting' && fresh)) this.dialNow();
  }

  /** Forget endpoints (an advert went away); the session, if up, is not touched. */
  forget(endpoints: readonly Endpoint[]): void {
    const gone = new Set(endpoints.map(key));
    this.endpoints = this.endpoints.filter((e) => !gone.has(key(e)));
  }

  /**
   * Dial now (the records changed, the phone announced itself): at once when waiting or idle;
   * while a round is under way (its connects may be waiting out a link that was down), another
   * round follows it at once instead of the backoff.
   */
  poke(): void {
    if (this.state === 'waiting' || this.state === 'idle') this.dialNow();
    else if (this.state === 'dialing') this.redial = true;
  }

  /**
   * The phone no longer claims the address the session is at (an advert moved it): try the other
   * known endpoints, and move the device to the first where it is proven. The session stays until
   * then; if none proves, nothing changes (its heartbeat still decides).
   */
  relocate(): void {
    if (this.state !== 'up' || this.relocating) return;
    this.relocating = true;
    void this.relocateRound().finally(() => { this.relocating = false; });
  }

  private async relocateRound(): Promise<void> {
    const current = this.session;
    if (current === undefined) return;
    for (const endpoint of this.order()) {
      if (key(endpoint) === key(current.endpoint)) continue;
      if (!this.stillUpWith(current)) return;
      const session = await this.tryProve(endpoint);
      if (session === undefined) continue;
      if (!this.stillUpWith(current) || session.current !== 'beating') {
        session.close();
        return;
      }
      this.log.info({ from: describeEndpoint(current.endpoint), to: describeEndpoint(endpoint) }, 'network device moved');
      this.session = undefined;
      current.close();
      this.opts.onDown(current, 'moved');
      this.up(endpoint, session);
      return;
    }
  }

  /** A proved session at `endpoint`, or undefined after the failure is counted (failed()). */
  private async tryProve(endpoint: Endpoint): Promise<DeviceSession | undefined> {
    let session: DeviceSession | undefined;
    try {
      session = await this.opts.prove(endpoint, (why, err) => { if (session !== undefined) this.sessionEnded(session, why, err); });
      return session;
    } catch (err) {
      this.failed(endpoint, err);
      return undefined;
    }
  }

  /** Read after an await: the session may have ended or been replaced meanwhile. */
  private stillUpWith(session: DeviceSession): boolean {
    return this.state === 'up' && this.session === session;
  }

  stop(): void {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    const session = this.session;
    this.session = undefined;
    session?.close();
  }

  private dialNow(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.state = 'dialing';
    void this.dialRound();
  }

  private order(): Endpoint[] {
    const last = this.lastGood;
    const rank = (e: Endpoint): number => (last !== undefined && key(e) === key(last) ? 0 : e.family === 4 ? 1 : 2);
    return [...this.endpoints].sort((a, b) => rank(a) - rank(b));
  }

  private async dialRound(): Promise<void> {
    this.redial = false;
    for (const endpoint of this.order()) {
      if (!this.dialing()) return;
      const session = await this.tryProve(endpoint);
      if (session === undefined) continue;
      if (!this.dialing()) {
        session.close();
        return;
      }
      if (session.current !== 'beating') {
        // The heartbeat ended between the proof and now: as good as a failed attempt.
        this.failed(endpoint, undefined);
        continue;
      }
      this.up(endpoint, session);
      return;
    }
    if (!this.dialing()) return;
    if (this.redialWanted()) {
      this.dialNow();
      return;
    }
    this.wait();
  }

  /** Read after an await: stop() or a lost session may have moved the state meanwhile. */
  private dialing(): boolean {
    return this.state === 'dialing';
  }

  /** Endpoints came in during the round (read after awaits, like {@link dialing}). */
  private redialWanted(): boolean {
    return this.redial;
  }

  private failed(endpoint: Endpoint, err: unknown): void {
    const reason = failureReason(err);
    const fields = { at: describeEndpoint(endpoint), reason, err };
    if (reason !== this.lastReason) {
      this.lastReason = reason;
      this.log.info(fields, 'network device not reachable here; will retry');
    } else {
      this.log.debug(fields, 'network device still not reachable');
    }
    if (isMuxdError(err) && NOT_THIS_PHONE.has(err.code)) this.forget([endpoint]);
  }

  private up(endpoint: Endpoint, session: DeviceSession): void {
    this.state = 'up';
    this.session = session;
    this.lastGood = endpoint;
    this.lastReason = undefined;
    this.backoffMs = this.initialMs;
    this.opts.onUp(session);
  }

  private sessionEnded(session: DeviceSession, why: HeartbeatEnd, err?: Error): void {
    if (this.session !== session || this.state !== 'up') return;
    this.session = undefined;
    this.opts.onDown(session, why, err);
    // One retry at once (a blip, or the phone already answers at a new address), then backoff.
    this.dialNow();
  }

  private wait(): void {
    this.state = 'waiting';
    this.opts.onUnreachable?.();
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.maxMs, this.backoffMs * 2);
    this.timer = setTimeout(onBackoff, delay, this);
    this.timer.unref();
  }

  /** @internal the backoff timer */
  backoffElapsed(): void {
    this.timer = undefined;
    if (this.state === 'waiting') this.dialNow();
  }
}

function onBackoff(r: Reachability): void {
  r.backoffElapsed();
}
