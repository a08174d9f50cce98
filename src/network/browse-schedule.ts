/**
 * When to send the next `_apple-mobdev2._tcp` browse query (RFC 6762 §5.2: at least 1 s after the
 * first, then doubling), never stopping: a capped interval keeps finding phones that came back
 * without announcing themselves (a Wi-Fi drop the phone did not notice, a lost announcement).
 *
 *        start / reset (interface appeared or changed)
 *                │
 *                ▼
 *   ┌──────► query now ──► wait 1 s ──► query ──► wait 2 s ──► … ──► wait `maxMs` ──► query ──┐
 *   │                                                                     ▲                  │
 *   └── reset ◄── any state                                                └──────────────────┘
 *
 * Pure: the caller asks `due(now)` and `nextAt()`, and calls `sent(now)` after querying.
 */
export const FIRST_REQUERY_MS = 1000;
export const DEFAULT_MAX_REQUERY_MS = 120_000;

export class BrowseSchedule {
  private interval = 0;
  private next: number;

  constructor(now: number, private readonly maxMs: number = DEFAULT_MAX_REQUERY_MS) {
    this.next = now;
  }

  /** Query as soon as possible and start the backoff again from 1 s. */
  reset(now: number): void {
    this.interval = 0;
    this.next = now;
  }

  due(now: number): boolean {
    return now >= this.next;
  }

  nextAt(): number {
    return this.next;
  }

  /** A query went out at `now`: the next one is due after the doubled interval. */
  sent(now: number): void {
    this.interval = this.interval === 0 ? FIRST_REQUERY_MS : Math.min(this.interval * 2, this.maxMs);
    this.next = now + this.interval;
  }
}
