/**
 * A device named only by its address (`--network-device ADDRESS`, AddDevice without a UDID): ask
 * lockdownd at that address which phone it is, until it answers. Asking costs the phone nothing
 * and tells a stranger nothing (UniqueDeviceID is answered before any session); only then does the
 * provider offer that UDID's pair record, and the session proves the answer.
 *
 *   start() ──▶ asking ── UniqueDeviceID ──▶ known(udid)   (onUdid, once)
 *                 │  ▲
 *      no answer  ▼  │ backoff elapsed (1 s doubling to 60 s)
 *               waiting
 *   any ── stop() ──▶ stopped
 */
import type { Logger } from '../log.js';
import { LockdownClient } from '../lockdown/index.js';
import { describeEndpoint, dialTcp } from './dial.js';
import type { Endpoint } from './dial.js';
import { LOCKDOWN_PORT } from './device-session.js';
import { NetworkIdentityError } from './errors.js';
import { failureReason, INITIAL_BACKOFF_MS, MAX_BACKOFF_MS } from './reachability.js';

export type ManualAddressState = 'idle' | 'asking' | 'waiting' | 'known' | 'stopped';

/** Ask the device at `endpoint` for its UDID (one attempt). */
export async function askUdid(endpoint: Endpoint, timeoutMs: number, log: Logger): Promise<string> {
  const lockdown = new LockdownClient(await dialTcp(endpoint, LOCKDOWN_PORT, timeoutMs), { log, timeoutMs });
  try {
    const udid = await lockdown.getValue('UniqueDeviceID');
    if (typeof udid !== 'string' || udid === '') throw new NetworkIdentityError('the device did not say its UniqueDeviceID');
    return udid;
  } finally {
    lockdown.close();
  }
}

export interface ManualAddressOptions {
  readonly endpoint: Endpoint;
  readonly log: Logger;
  readonly timeoutMs: number;
  readonly onUdid: (udid: string) => void;
  /** One attempt (tests replace it). */
  readonly ask?: (endpoint: Endpoint) => Promise<string>;
  readonly initialBackoffMs?: number;
  readonly maxBackoffMs?: number;
}

export class ManualAddress {
  readonly endpoint: Endpoint;
  private state: ManualAddressState = 'idle';
  private readonly opts: ManualAddressOptions;
  private readonly ask: (endpoint: Endpoint) => Promise<string>;
  private backoffMs: number;
  private readonly maxMs: number;
  private timer: NodeJS.Timeout | undefined;
  private lastReason: string | undefined;

  constructor(options: ManualAddressOptions) {
    this.endpoint = options.endpoint;
    this.opts = options;
    this.ask = options.ask ?? ((e) => askUdid(e, options.timeoutMs, options.log));
    this.backoffMs = options.initialBackoffMs ?? INITIAL_BACKOFF_MS;
    this.maxMs = options.maxBackoffMs ?? MAX_BACKOFF_MS;
  }

  get current(): ManualAddressState {
    return this.state;
  }

  /** Ask now; resolves after the first attempt (whatever it gave). */
  start(): Promise<void> {
    if (this.state !== 'idle') return Promise.resolve();
    return this.attempt();
  }

  stop(): void {
    this.state = 'stopped';
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private async attempt(): Promise<void> {
    this.state = 'asking';
    let udid: string;
    try {
      udid = await this.ask(this.endpoint);
    } catch (err) {
      if (this.isStopped()) return;
      const reason = failureReason(err);
      const fields = { at: describeEndpoint(this.endpoint), reason, err };
      if (reason !== this.lastReason) this.opts.log.info(fields, 'manual network device not answering; will retry');
      else this.opts.log.debug(fields, 'manual network device still not answering');
      this.lastReason = reason;
      this.state = 'waiting';
      this.timer = setTimeout(onBackoff, this.backoffMs, this);
      this.timer.unref();
      this.backoffMs = Math.min(this.maxMs, this.backoffMs * 2);
      return;
    }
    if (this.isStopped()) return;
    this.state = 'known';
    this.opts.onUdid(udid);
  }

  private isStopped(): boolean {
    return this.state === 'stopped';
  }

  /** @internal the backoff timer */
  backoffElapsed(): void {
    this.timer = undefined;
    if (this.state === 'waiting') void this.attempt();
  }
}

function onBackoff(m: ManualAddress): void {
  m.backoffElapsed();
}
