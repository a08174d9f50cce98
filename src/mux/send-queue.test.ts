import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { TAIL_HOLD_MS } from './constants.js';
import { SendQueue } from './send-queue.js';

const MAX = 1000;

function queue(): { q: SendQueue; expired: { count: number } } {
  const expired = { count: 0 };
  const q = new SendQueue(MAX, () => {
    expired.count++;
  });
  return { q, expired };
}

function bytes(payload: Buffer | Buffer[]): Buffer {
  return Buffer.isBuffer(payload) ? payload : Buffer.concat(payload);
}

afterEach(() => {
  vi.useRealTimers();
});

describe('SendQueue segment sizes (table)', () => {
  // [what, queued, more, peerWindow, inFlight, fullOnly, next segment]
  it.each([
    ['rule 1: a small write goes whole', 300, false, 131072, 0, false, 300],
    ['rule 1: also with bytes in flight', 300, false, 131072, 5000, false, 300],
    ['a bulk queue goes a full payload at a time', 2500, false, 131072, 0, false, MAX],
    ['nothing when the window is shut', 300, false, 0, 0, false, 0],
    ['nothing when in flight fills the window', 300, false, 2000, 2000, false, 0],
    ['rule 2: a window-cut segment waits while bytes are in flight', 4000, false, 2500, 2000, false, 0],
    ['rule 2: the same cut goes when nothing is in flight', 4000, false, 500, 0, false, 500],
    ['rule 2: half a small window is useful enough', 4000, false, 600, 300, false, 300],
    ['rule 3: fullOnly leaves a tail that fits with room to spare', 300, false, 131072, 0, true, 0],
    ['rule 3: fullOnly still sends a full segment', 2500, false, 131072, 0, true, MAX],
    ['rule 3: a tail exactly filling the room goes', 300, false, 300, 0, true, 300],
    ['rule 4: a bulk tail is held while bytes are in flight', 300, true, 131072, 1000, false, 0],
    ['rule 4: but goes when nothing is in flight', 300, true, 131072, 0, false, 300],
    ['rule 4: a full payload is never held', 1200, true, 131072, 1000, false, MAX],
  ])('%s', (_what, queued, more, peerWindow, inFlight, fullOnly, expected) => {
    const { q } = queue();
    q.push(Buffer.alloc(queued), more);
    expect(q.nextSegment(peerWindow, inFlight, fullOnly)).toBe(expected);
    q.clear();
  });

  it('push says whether a write is bulk (a segment’s worth queued)', () => {
    const { q } = queue();
    expect(q.push(Buffer.alloc(600), false)).toBe(false);
    expect(q.push(Buffer.alloc(400), false)).toBe(true);
  });

  it('blocked: queued bytes hold the writer back, except a held bulk tail', () => {
    const { q } = queue();
    expect(q.blocked).toBe(false);
    q.push(Buffer.alloc(300), false);
    expect(q.blocked).toBe(true);
    q.push(Buffer.alloc(100), true);
    expect(q.blocked).toBe(false); // a short tail of a stream known to go on
    q.push(Buffer.alloc(700), true);
    expect(q.blocked).toBe(true); // a full segment's worth
    q.release();
    q.push(Buffer.alloc(0), false);
    expect(q.blocked).toBe(true);
  });

  it('hasShortTail: bytes left that fit the room with room to spare', () => {
    const { q } = queue();
    q.push(Buffer.alloc(300), false);
    expect(q.hasShortTail(131072, 0)).toBe(true);
    expect(q.hasShortTail(300, 0)).toBe(false);
    expect(q.hasShortTail(2000, 1800)).toBe(false);
  });

  it('take hands out views of what was queued, across chunks, in order', () => {
    const { q } = queue();
    const a = Buffer.from('abcdef');
    q.push(a, false);
    q.push(Buffer.from('ghij'), false);
    const first = q.take(4);
    expect(Buffer.isBuffer(first) && first.buffer === a.buffer).toBe(true);
    expect(bytes(q.take(4)).toString()).toBe('efgh');
    expect(q.length).toBe(2);
    expect(bytes(q.take(2)).toString()).toBe('ij');
  });
});

describe('SendQueue hold timer (rule 4)', () => {
  it('a held tail is released after TAIL_HOLD_MS, once', () => {
    vi.useFakeTimers();
    const { q, expired } = queue();
    q.push(Buffer.alloc(300), true);
    expect(q.nextSegment(131072, 1000, false)).toBe(0);
    vi.advanceTimersByTime(TAIL_HOLD_MS - 1);
    expect(expired.count).toBe(0);
    vi.advanceTimersByTime(1);
    expect(expired.count).toBe(1);
    expect(q.nextSegment(131072, 1000, false)).toBe(300); // no longer held
    vi.advanceTimersByTime(10 * TAIL_HOLD_MS);
    expect(expired.count).toBe(1);
  });

  it('a segment sent ends the hold; a later hold is timed from its own start', () => {
    vi.useFakeTimers();
    const { q, expired } = queue();
    q.push(Buffer.alloc(1300), true);
    q.take(q.nextSegment(131072, 0, false));
    expect(q.nextSegment(131072, 1000, false)).toBe(0); // hold 1 begins at t=0
    vi.advanceTimersByTime(TAIL_HOLD_MS - 1);
    q.push(Buffer.alloc(900), true);
    q.take(q.nextSegment(131072, 1000, false)); // a full segment: the hold ended
    expect(q.nextSegment(131072, 2000, false)).toBe(0); // hold 2 begins now
    vi.advanceTimersByTime(1);
    expect(expired.count).toBe(0);
    vi.advanceTimersByTime(TAIL_HOLD_MS);
    expect(expired.count).toBe(1);
  });

  it('clear stops the timer', () => {
    vi.useFakeTimers();
    const { q, expired } = queue();
    q.push(Buffer.alloc(300), true);
    q.nextSegment(131072, 1000, false);
    q.clear();
    vi.advanceTimersByTime(10 * TAIL_HOLD_MS);
    expect(expired.count).toBe(0);
    expect(q.length).toBe(0);
  });
});

describe('SendQueue properties', () => {
  it('segments never exceed the room or the payload limit, and every queued byte comes out once, in order', () => {
    const stepArb = fc.oneof(
      fc.record({ kind: fc.constant('push' as const), len: fc.integer({ min: 0, max: 3000 }), more: fc.boolean() }),
      fc.record({ kind: fc.constant('send' as const), window: fc.integer({ min: 0, max: 4000 }), inFlight: fc.integer({ min: 0, max: 4000 }), fullOnly: fc.boolean() }),
      fc.record({ kind: fc.constant('release' as const) }),
    );
    fc.assert(
      fc.property(fc.array(stepArb, { maxLength: 60 }), (steps) => {
        const { q } = queue();
        let pushed = 0;
        const model: number[] = [];
        const out: number[] = [];
        for (const step of steps) {
          if (step.kind === 'push') {
            const chunk = Buffer.alloc(step.len);
            for (let i = 0; i < step.len; i++) chunk[i] = (pushed + i) & 0xff;
            pushed += step.len;
            for (const b of chunk) model.push(b);
            q.push(chunk, step.more);
          } else if (step.kind === 'send') {
            const n = q.nextSegment(step.window, step.inFlight, step.fullOnly);
            expect(n).toBeGreaterThanOrEqual(0);
            expect(n).toBeLessThanOrEqual(Math.min(MAX, q.length, Math.max(0, step.window - step.inFlight)));
            if (n > 0) out.push(...bytes(q.take(n)));
          } else {
            q.release();
          }
          expect(q.length).toBe(model.length - out.length);
        }
        // With a wide open window and nothing in flight, everything drains.
        q.release();
        for (let n = q.nextSegment(1 << 20, 0, false); n > 0; n = q.nextSegment(1 << 20, 0, false)) out.push(...bytes(q.take(n)));
        expect(out).toEqual(model);
        q.clear();
      }),
      { numRuns: 300 },
    );
  });
});
