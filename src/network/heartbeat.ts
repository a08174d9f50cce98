/**
 * The host side of com.apple.mobile.heartbeat on one network device: the phone asks "Marco" every
 * `Interval` seconds, we answer "Polo". A phone serves network connections only while some host
 * answers it (docs: wifi-devices.md §2.4), and its silence is how we learn it is gone.
 *
 *                    start()
 *   ┌──────────────────┴───────────────────┐
 *   ▼                                      │ Marco {Interval}: send Polo, deadline = Interval + grace
 *   waiting ── deadline passes ──────────▶ ended('timeout')
 *      │  ── SleepyTime ─────────────────▶ ended('sleepy')      (the phone says it goes to sleep)
 *      │  ── connection closed or failed ▶ ended('closed')
 *      │  ── a message without Command ──▶ ended('protocol')
 *      └─ stop() ────────────────────────▶ ended('stopped')
 *
 * The grace is generous on purpose: netmuxd's Interval + 5 s dropped phones whose Marco came a
 * little late (netmuxd #10, #14); a missed beat costs a re-dial, a false loss costs every tunnel.
 *
 * `firstBeat(ms)` resolves at the first Marco (the phone speaks first, at once): the session does
 * not count as up before it, so a phone that accepts sessions but never beats is not announced
 * (it would otherwise be Attached and Detached again every Interval + grace).
 */
import type { Logger } from '../log.js';
import { PlistConnection } from '../lockdown/index.js';
import { HeartbeatSilentError } from './errors.js';
import type { PlistConnectionHandler } from '../lockdown/index.js';
import type { Duplex } from 'node:stream';
import type { PlistDict } from '../plist/index.js';
import { isPlistInteger } from '../plist/index.js';

export const HEARTBEAT_SERVICE = 'com.apple.mobile.heartbeat';
/** What we assume until the phone's first Marco says otherwise (the value phones send). */
export const DEFAULT_INTERVAL_S = 10;
/** Interval values outside this range are taken as the nearest bound (a hostile or broken phone). */
const MIN_INTERVAL_S = 1;
const MAX_INTERVAL_S = 300;

export type HeartbeatEnd = 'timeout' | 'sleepy' | 'closed' | 'protocol' | 'stopped';

export interface HeartbeatOptions {
  readonly log: Logger;
  /** Called once, when the heartbeat is over; `err` carries the connection's error for 'closed'. */
  readonly onEnd: (why: HeartbeatEnd, err?: Error) => void;
  /** Called on each Marco (tests, diagnostics). */
  readonly onBeat?: (intervalS: number) => void;
  /** Extra time past the Interval before a missing Marco ends the heartbeat; default max(5 s, Interval). */
  readonly graceMs?: (intervalMs: number) => number;
}

function defaultGrace(intervalMs: number): number {
  return Math.max(5000, intervalMs);
}

export class HeartbeatClient implements PlistConnectionHandler {
  private readonly conn: PlistConnection;
  private readonly log: Logger;
  private readonly onEndCb: HeartbeatOptions['onEnd'];
  private readonly onBeat: HeartbeatOptions['onBeat'];
  private readonly grace: (intervalMs: number) => number;
  private timer: NodeJS.Timeout | undefined;
  private over = false;
  private intervalMs = DEFAULT_INTERVAL_S * 1000;
  /** Waiters of firstBeat: settled by the first Marco, or by the end. */
  private readonly beatWaiters = new Set<{ resolve: () => void; reject: (err: Error) => void }>();
  private endReason: { why: HeartbeatEnd; err: Error | undefined } | undefined;
  beats = 0;

  /**
   * Over `stream`, the service connection the phone handed out (plain; call `startTls` on
   * {@link connection} first when the service wants SSL, before {@link start}).
   */
  constructor(stream: Duplex, options: HeartbeatOptions) {
    this.log = options.log;
    this.onEndCb = options.onEnd;
    this.onBeat = options.onBeat;
    this.grace = options.graceMs ?? defaultGrace;
    this.conn = new PlistConnection(stream, this, options.log);
  }

  /** The underlying plist connection (to switch it to TLS before start). */
  get connection(): PlistConnection {
    return this.conn;
  }

  /** The deadline for the next Marco, ms (Interval + grace). */
  get deadlineMs(): number {
    return this.intervalMs + this.grace(this.intervalMs);
  }

  /** Why it ended, once it has (undefined while it runs). */
  get ended(): HeartbeatEnd | undefined {
    return this.endReason?.why;
  }

  /** Begin waiting for the first Marco. */
  start(): void {
    if (this.over) return;
    this.arm();
  }

  stop(): void {
    this.end('stopped');
  }

  /**
   * Resolves at the first Marco (at once if one came already); rejects with HeartbeatSilentError
   * when none comes within `timeoutMs` or the heartbeat ends first. Call after start().
   */
  firstBeat(timeoutMs: number): Promise<void> {
    if (this.beats > 0) return Promise.resolve();
    const ended = this.endReason;
    if (ended !== undefined) return Promise.reject(new HeartbeatSilentError(`the heartbeat ended (${ended.why}) before the first Marco`, ended.err === undefined ? undefined : { cause: ended.err }));
    return new Promise<void>((resolve, reject) => {
      const waiter = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (err: Error) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      const timer = setTimeout(() => {
        this.beatWaiters.delete(waiter);
        reject(new HeartbeatSilentError(`no Marco within ${timeoutMs} ms`));
      }, timeoutMs);
      this.beatWaiters.add(waiter);
    });
  }

  onMessage(message: PlistDict): void {
    if (this.over) return;
    const command = message['Command'];
    if (command === 'Marco') {
      const interval = message['Interval'];
      // An integer on phones seen so far; a real is taken too (plist reals read as numbers).
      const seconds = isPlistInteger(interval) ? Number(interval) : typeof interval === 'number' ? interval : Number.NaN;
      if (Number.isFinite(seconds)) this.intervalMs = Math.min(MAX_INTERVAL_S, Math.max(MIN_INTERVAL_S, seconds)) * 1000;
      this.beats++;
      try {
        this.conn.send({ Command: 'Polo' });
      } catch (err) {
        this.end('closed', err instanceof Error ? err : undefined);
        return;
      }
      this.onBeat?.(this.intervalMs / 1000);
      this.arm();
      for (const w of [...this.beatWaiters]) w.resolve();
      this.beatWaiters.clear();
      return;
    }
    if (command === 'SleepyTime') {
      this.end('sleepy');
      return;
    }
    // Anything else from a heartbeat service is a phone we do not understand: treat it as lost
    // rather than keep a session whose liveness we can no longer judge.
    this.log.warn({ command: typeof command === 'string' ? command : typeof command }, 'unexpected heartbeat message');
    this.end('protocol');
  }

  onClose(err: Error): void {
    this.end('closed', err);
  }

  private arm(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = setTimeout(onDeadline, this.deadlineMs, this);
    this.timer.unref();
  }

  /** @internal the deadline timer */
  deadlinePassed(): void {
    this.timer = undefined;
    this.end('timeout');
  }

  private end(why: HeartbeatEnd, err?: Error): void {
    if (this.over) return;
    this.over = true;
    this.endReason = { why, err };
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.conn.close();
    for (const w of [...this.beatWaiters]) w.reject(new HeartbeatSilentError(`the heartbeat ended (${why}) before the first Marco`, err === undefined ? undefined : { cause: err }));
    this.beatWaiters.clear();
    this.onEndCb(why, err);
  }
}

function onDeadline(client: HeartbeatClient): void {
  client.deadlinePassed();
}
