import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FakeServiceConnection } from './fake-connection.js';
import { HeartbeatService } from './heartbeat.js';
import { binaryFrame } from './host-records.js';
import { frameLockdownMessage } from './lockdown.js';
import { LockdownFrameReader } from './lockdown-frames.js';

interface Host {
  readonly conn: FakeServiceConnection;
  received(): Record<string, unknown>[];
  send(bytes: Buffer): void;
}

function connect(service: HeartbeatService): Host {
  const messages: Record<string, unknown>[] = [];
  const reader = new LockdownFrameReader({
    onMessage: (m) => messages.push(m),
    onBad: (reason) => {
      throw new Error(reason);
    },
  });
  const conn: FakeServiceConnection = new FakeServiceConnection(
    49_200,
    (data) => {
      reader.push(Buffer.from(data));
    },
    () => {
      service.onClose(conn);
    },
  );
  service.onOpen(conn);
  return { conn, received: () => messages.splice(0), send: (bytes) => { service.onData(conn, bytes); } };
}

const POLO = frameLockdownMessage({ Command: 'Polo' });
const MARCO_1S = { Command: 'Marco', Interval: 1, SupportsSleepyTime: true };

describe('heartbeat service', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('sends Marco at once, then every Interval seconds, and takes Polo (XML or binary)', () => {
    const hb = new HeartbeatService({ intervalSeconds: 1 });
    const host = connect(hb);
    expect(host.received()).toEqual([MARCO_1S]);
    host.send(POLO);
    vi.advanceTimersByTime(999);
    expect(host.received()).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(host.received()).toEqual([MARCO_1S]);
    host.send(binaryFrame({ Command: 'Polo' }));
    vi.advanceTimersByTime(3000);
    expect(host.received()).toHaveLength(3);
    expect(hb.stats).toMatchObject({ connections: 1, marcosSent: 5, polosReceived: 2, unexpectedMessages: 0 });
  });

  it('keeps its cadence without Polo unless poloDeadlineMs closes the connection', () => {
    const hb = new HeartbeatService({ intervalSeconds: 2 });
    const patient = connect(hb);
    vi.advanceTimersByTime(10_000);
    expect(patient.received()).toHaveLength(6);
    expect(patient.conn.open).toBe(true);

    hb.knobs.poloDeadlineMs = 500;
    const strict = connect(hb);
    strict.send(POLO); // answers the first Marco
    vi.advanceTimersByTime(2000 + 499);
    expect(strict.conn.open).toBe(true);
    vi.advanceTimersByTime(1);
    expect(strict.conn.open).toBe(false);
    expect(hb.stats.latePoloCloses).toBeGreaterThanOrEqual(1);
    expect(hb.openConnections).toBe(0); // patient was closed by its own late Polo too
  });

  it('withholds Marcos while sendMarco is off and resumes on the same cadence', () => {
    const hb = new HeartbeatService({ intervalSeconds: 1 });
    const host = connect(hb);
    host.received();
    hb.knobs.sendMarco = false;
    vi.advanceTimersByTime(3000);
    expect(host.received()).toEqual([]);
    expect(hb.stats.marcosWithheld).toBe(3);
    hb.knobs.sendMarco = true;
    vi.advanceTimersByTime(1000);
    expect(host.received()).toEqual([MARCO_1S]);
  });

  it('sends SleepyTime to every open connection, and counts other host messages', () => {
    const hb = new HeartbeatService({ intervalSeconds: 0.25 });
    const a = connect(hb);
    const b = connect(hb);
    expect(a.received()).toEqual([{ Command: 'Marco', Interval: 0.25, SupportsSleepyTime: true }]);
    b.received();
    expect(hb.sleepyTime()).toBe(2);
    expect(a.received()).toEqual([{ Command: 'SleepyTime' }]);
    expect(b.received()).toEqual([{ Command: 'SleepyTime' }]);
    a.send(frameLockdownMessage({ Command: 'Hello' }));
    expect(hb.stats.unexpectedMessages).toBe(1);
  });

  it('closes a connection whose input cannot be framed, and stops its timers', () => {
    const hb = new HeartbeatService({ intervalSeconds: 1 });
    const host = connect(hb);
    host.received();
    host.send(Buffer.from('ffffffff', 'hex')); // a 4 GiB message
    expect(host.conn.open).toBe(false);
    vi.advanceTimersByTime(5000);
    expect(host.received()).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });
});
