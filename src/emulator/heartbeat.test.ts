import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FakeServiceConnection } from './fake-connection.js';
import { createHeartbeatService } from './heartbeat.js';
import type { HeartbeatKnobs, HeartbeatService } from './heartbeat.js';
import { frameLockdownMessage, lengthPrefixed } from './lockdown.js';
import { LockdownFrameReader } from './lockdown-frames.js';

/** `{Command: Polo}` as a binary plist, as libimobiledevice's heartbeat_send writes it. */
const BINARY_POLO = lengthPrefixed(Buffer.from('62706c6973743030d1010257436f6d6d616e6454506f6c6f080b130000000000000101000000000000000300000000000000000000000000000018', 'hex'));
const XML_POLO = frameLockdownMessage({ Command: 'Polo' });
const MARCO = { Command: 'Marco', Interval: 10, SupportsSleepyTime: true };

function open(service: HeartbeatService): { conn: FakeServiceConnection; received(): Record<string, unknown>[]; send(b: Buffer): void } {
  const messages: Record<string, unknown>[] = [];
  const reader = new LockdownFrameReader({
    onMessage: (m) => messages.push(m),
    onBad: (reason) => {
      throw new Error(reason);
    },
  });
  const conn: FakeServiceConnection = new FakeServiceConnection(49_154, (d) => {
    reader.push(Buffer.from(d));
  }, () => service.onClose?.(conn, 'device-closed'));
  service.onOpen?.(conn);
  return { conn, received: () => messages.splice(0), send: (b) => { service.onData(conn, b); } };
}

describe('heartbeat service', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  const make = (knobs: Partial<HeartbeatKnobs> = {}): HeartbeatService => createHeartbeatService(knobs);

  it('speaks first: Marco at once; each Polo (binary or XML) brings the next Marco one period later', () => {
    const hb = make({ periodMs: 1000 });
    const h = open(hb);
    expect(h.received()).toEqual([MARCO]);
    expect(hb.states()).toEqual(['AWAIT_POLO']);
    h.send(BINARY_POLO);
    expect(hb.states()).toEqual(['IDLE']);
    vi.advanceTimersByTime(999);
    expect(h.received()).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(h.received()).toEqual([MARCO]);
    h.send(XML_POLO);
    vi.advanceTimersByTime(1000);
    expect(h.received()).toEqual([MARCO]);
    expect(hb.stats).toMatchObject({ connections: 1, marcosSent: 3, polosReceived: 2 });
  });

  it('no Marco while waiting for the Polo, however long it takes (poloTimeoutMs 0); the period defaults to Interval seconds', () => {
    const hb = make({ interval: 2 });
    const h = open(hb);
    expect(h.received()).toEqual([{ ...MARCO, Interval: 2 }]);
    vi.advanceTimersByTime(60_000);
    expect(h.received()).toEqual([]);
    h.send(XML_POLO);
    vi.advanceTimersByTime(1999);
    expect(h.received()).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(h.received()).toEqual([{ ...MARCO, Interval: 2 }]);
  });

  it('a host that does not answer within poloTimeoutMs is dropped', () => {
    const hb = make({ poloTimeoutMs: 500 });
    const h = open(hb);
    vi.advanceTimersByTime(500);
    expect(h.conn.closed).toBe(true);
    expect(hb.stats.poloTimeouts).toBe(1);
    expect(hb.states()).toEqual([]);
  });

  it('silent: no Marcos (the phone seems gone), connection open; speaking again resumes them', () => {
    const hb = make({ periodMs: 100 });
    const h = open(hb);
    h.send(XML_POLO);
    hb.knobs.silent = true;
    vi.advanceTimersByTime(1000);
    expect(h.received()).toEqual([MARCO]);
    expect(h.conn.closed).toBe(false);
    hb.knobs.silent = false;
    vi.advanceTimersByTime(100);
    expect(h.received()).toEqual([MARCO]);
  });

  it('sleepyTime(): SleepyTime, then no more Marcos; marcoNow() and closeAll()', () => {
    const hb = make({ periodMs: 100 });
    const a = open(hb);
    const b = open(hb);
    a.send(XML_POLO);
    b.send(XML_POLO);
    a.received();
    b.received();
    hb.marcoNow();
    expect(a.received()).toEqual([MARCO]);
    a.send(XML_POLO);
    hb.sleepyTime();
    expect(a.received()).toEqual([{ Command: 'SleepyTime' }]);
    expect(b.received()).toEqual([MARCO, { Command: 'SleepyTime' }]); // b was idle: marcoNow() reached it too
    vi.advanceTimersByTime(10_000);
    expect([...a.received(), ...b.received()]).toEqual([]);
    expect(hb.states()).toEqual(['ASLEEP', 'ASLEEP']);
    hb.closeAll();
    expect([a.conn.closed, b.conn.closed]).toEqual([true, true]);
  });

  it('unsolicited Polos and unknown commands are counted or ignored; garbage resets', () => {
    const hb = make();
    const h = open(hb);
    h.send(XML_POLO);
    h.send(XML_POLO);
    h.send(frameLockdownMessage({ Command: 'Frobnicate' }));
    expect(hb.stats.unsolicitedPolos).toBe(1);
    expect(h.conn.closed).toBe(false);
    h.send(Buffer.from([0, 0, 0, 3, 1, 2, 3]));
    expect(h.conn.closed).toBe(true);
    expect(hb.stats.badFrames).toBe(1);
  });

  it('Polos split at every byte offset', () => {
    const stream = Buffer.concat([BINARY_POLO, XML_POLO]);
    for (let at = 0; at <= stream.length; at++) {
      const hb = make({ periodMs: 10 });
      const h = open(hb);
      h.send(stream.subarray(0, at));
      vi.advanceTimersByTime(10);
      h.send(stream.subarray(at));
      vi.advanceTimersByTime(10);
      // Both Polos are read whole wherever the cut is (the second answers a Marco only if a
      // period passed between the two halves).
      expect(hb.stats.polosReceived + hb.stats.unsolicitedPolos, `split at ${at}`).toBe(2);
      expect(hb.stats.polosReceived, `split at ${at}`).toBeGreaterThanOrEqual(1);
      expect(h.conn.closed).toBe(false);
    }
  });

  it('closing the connection stops its timer', () => {
    const hb = make({ periodMs: 10 });
    const h = open(hb);
    h.send(XML_POLO);
    h.conn.close();
    vi.advanceTimersByTime(100);
    expect(hb.stats.marcosSent).toBe(1);
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe('heartbeat timers never throw into the daemon', () => {
  it('a write that throws from the period timer resets that connection and is counted', () => {
    vi.useFakeTimers();
    try {
      const hb = createHeartbeatService({ periodMs: 10 });
      let explode = false;
      const conn: FakeServiceConnection = new FakeServiceConnection(1, () => {
        if (explode) throw new Error('link broke');
      }, () => hb.onClose?.(conn, 'device-closed'));
      hb.onOpen?.(conn);
      hb.onData(conn, XML_POLO);
      explode = true;
      expect(() => vi.advanceTimersByTime(10)).not.toThrow();
      expect(hb.stats.failures).toBe(1);
      expect(conn.closed).toBe(true);
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });
});
