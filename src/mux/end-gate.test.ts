import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { END_QUIET_MAX_MS, END_QUIET_MS } from './constants.js';
import { EndGate } from './end-gate.js';
import type { EndReason } from './end-gate.js';

const ACK_TIMEOUT_MS = 1000;

/** A connection as the gate sees it: bytes unacked, the device's sequence, our window. */
class FakeConnection {
  unacked = 0;
  seq = 1000;
  windowOpen = true;
  closes: EndReason[] = [];
  readonly host = {
    allAcked: (): boolean => this.unacked === 0,
    deviceSeq: (): number => this.seq,
    windowOpen: (): boolean => this.windowOpen,
    close: (reason: EndReason): void => {
      this.closes.push(reason);
    },
  };
}

function gate(conn: FakeConnection, options: { readerGone?: boolean; busy?: boolean } = {}): EndGate {
  return new EndGate(conn.host, ACK_TIMEOUT_MS, options.readerGone ?? false, options.busy ?? false);
}

describe('EndGate', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('closes at start when everything is acknowledged and the device was idle', () => {
    const conn = new FakeConnection();
    expect(gate(conn).start()).toBe(false);
    expect(conn.closes).toEqual(['done']);
  });

  it('waits for the last ack, and closes on it', () => {
    const conn = new FakeConnection();
    conn.unacked = 100;
    const g = gate(conn);
    expect(g.start()).toBe(true);
    vi.advanceTimersByTime(ACK_TIMEOUT_MS - 1);
    expect(conn.closes).toEqual([]);
    conn.unacked = 0;
    expect(g.check()).toBe(true);
    expect(conn.closes).toEqual(['done']);
    vi.advanceTimersByTime(10 * ACK_TIMEOUT_MS);
    expect(conn.closes).toEqual(['done']);
  });

  it('resets after the ack timeout without progress; progress restarts the timer', () => {
    const conn = new FakeConnection();
    conn.unacked = 100;
    const g = gate(conn);
    g.start();
    vi.advanceTimersByTime(ACK_TIMEOUT_MS - 100);
    g.noteAckProgress();
    vi.advanceTimersByTime(ACK_TIMEOUT_MS - 100);
    expect(conn.closes).toEqual([]);
    vi.advanceTimersByTime(100);
    expect(conn.closes).toEqual(['ack-timeout']);
  });

  it('waits for a busy device to go quiet with our window open', () => {
    const conn = new FakeConnection();
    const g = gate(conn, { busy: true });
    expect(g.start()).toBe(false);
    expect(conn.closes).toEqual([]);
    // The device sends during the first quiet check: not quiet yet.
    conn.seq += 500;
    g.noteData();
    vi.advanceTimersByTime(END_QUIET_MS);
    expect(conn.closes).toEqual([]);
    vi.advanceTimersByTime(END_QUIET_MS);
    expect(conn.closes).toEqual(['done']);
  });

  it('does not call a device quiet while our window was not open (it could not send)', () => {
    const conn = new FakeConnection();
    conn.windowOpen = false;
    const g = gate(conn, { busy: true });
    g.start();
    vi.advanceTimersByTime(END_QUIET_MS);
    expect(conn.closes).toEqual([]);
    conn.windowOpen = true;
    vi.advanceTimersByTime(2 * END_QUIET_MS);
    expect(conn.closes).toEqual(['done']);
  });

  it('gives up on a device that never stops sending after END_QUIET_MAX_MS', () => {
    const conn = new FakeConnection();
    const g = gate(conn, { busy: true });
    g.start();
    for (let t = 0; t < END_QUIET_MAX_MS + 2 * END_QUIET_MS; t += END_QUIET_MS / 2) {
      conn.seq += 10;
      g.noteData();
      vi.advanceTimersByTime(END_QUIET_MS / 2);
    }
    expect(conn.closes).toEqual(['still-sending']);
  });

  it('stops waiting for quiet once nobody reads, and ignores later data', () => {
    const conn = new FakeConnection();
    const g = gate(conn, { busy: true });
    g.start();
    expect(conn.closes).toEqual([]);
    g.readerGone();
    expect(conn.closes).toEqual(['done']);

    const conn2 = new FakeConnection();
    conn2.unacked = 1;
    const g2 = gate(conn2, { readerGone: true });
    g2.start();
    g2.noteData();
    conn2.unacked = 0;
    expect(g2.check()).toBe(true);
    expect(conn2.closes).toEqual(['done']);
  });

  it('after stop(): no close, whatever happens', () => {
    const conn = new FakeConnection();
    conn.unacked = 1;
    const g = gate(conn, { busy: true });
    g.start();
    g.stop();
    conn.unacked = 0;
    expect(g.check()).toBe(false);
    vi.advanceTimersByTime(10 * END_QUIET_MAX_MS);
    expect(conn.closes).toEqual([]);
  });

  it('closes at most once, never before everything is acked unless the ack timer ran out, and always in the end', () => {
    const step = fc.oneof(
      fc.record({ kind: fc.constant('ack' as const), bytes: fc.nat(100) }),
      fc.record({ kind: fc.constant('data' as const), bytes: fc.integer({ min: 1, max: 100 }) }),
      fc.record({ kind: fc.constant('window' as const), open: fc.boolean() }),
      fc.record({ kind: fc.constant('time' as const), ms: fc.integer({ min: 1, max: 2 * END_QUIET_MS }) }),
      fc.constant({ kind: 'readerGone' as const }),
    );
    fc.assert(
      fc.property(fc.nat(300), fc.boolean(), fc.boolean(), fc.array(step, { maxLength: 40 }), (unacked, busy, readerGone, steps) => {
        vi.clearAllTimers();
        const conn = new FakeConnection();
        conn.unacked = unacked;
        const g = gate(conn, { busy, readerGone });
        let lastAckAt = Date.now();
        g.start();
        for (const s of steps) {
          const before = conn.closes.length;
          if (s.kind === 'ack' && s.bytes > 0) {
            conn.unacked = Math.max(0, conn.unacked - s.bytes);
            lastAckAt = Date.now();
            g.noteAckProgress();
            g.check();
          } else if (s.kind === 'data') {
            conn.seq += s.bytes;
            g.noteData();
            g.check();
          } else if (s.kind === 'window') {
            conn.windowOpen = s.open;
          } else if (s.kind === 'time') {
            vi.advanceTimersByTime(s.ms);
          } else if (s.kind === 'readerGone') {
            g.readerGone();
          }
          const closed = conn.closes.slice(before);
          for (const reason of closed) {
            if (reason === 'ack-timeout') expect(Date.now() - lastAckAt).toBeGreaterThanOrEqual(ACK_TIMEOUT_MS);
            else expect(conn.unacked).toBe(0);
          }
        }
        // Whatever the device does next, the gate closes in bounded time once it is silent.
        conn.windowOpen = true;
        vi.advanceTimersByTime(ACK_TIMEOUT_MS + END_QUIET_MAX_MS + 2 * END_QUIET_MS);
        expect(conn.closes.length).toBe(1);
      }),
    );
  });
});
