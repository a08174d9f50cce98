import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FakeServiceConnection } from '../fake-connection.js';
import type { ServiceConnection } from '../service.js';
import { createSyslogRelay, formatSyslogLine, syslogTimestamp, visEncode } from './syslog-relay.js';

const NOON = new Date(2026, 0, 5, 12, 3, 4); // local time, as the phone writes it

describe('syslog line format', () => {
  it('is `Mon dd HH:MM:SS device process[pid] <Level>: message\\n\\0` (hex fixture)', () => {
    const line = formatSyslogLine(NOON, 'iPhone', 'kernel', 0, 'Notice', 'hi');
    expect(line.toString('hex')).toBe(Buffer.from('Jan  5 12:03:04 iPhone kernel[0] <Notice>: hi\n\0').toString('hex'));
    expect(syslogTimestamp(new Date(2026, 11, 25, 1, 2, 3))).toBe('Dec 25 01:02:03');
  });

  it('vis-encodes what would break the line: controls, NUL, newline, non-ASCII, backslash', () => {
    expect(visEncode('a\nb\0c')).toBe('a\\^Jb\\^@c');
    expect(visEncode('é')).toBe('\\M-C\\M-)');
    expect(visEncode('back\\slash\x7f')).toBe('back\\\\slash\\^?');
    const line = formatSyslogLine(NOON, 'iPhone', 'a b[1]', 2, 'Error', 'x\n\0y');
    expect(line.indexOf(0)).toBe(line.length - 1);
    expect(line.toString()).toContain(' a_b_1_[2] <Error>: x\\^J\\^@y\n');
  });
});

describe('syslog relay service', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  const lines = (conn: FakeServiceConnection): string[] => Buffer.concat(conn.written).toString().split('\0').filter((l) => l !== '');

  it('a backlog at once, then one line per period, to every connected host; host bytes ignored', () => {
    const relay = createSyslogRelay({ backlog: 3, periodMs: 100, now: () => NOON });
    const a = new FakeServiceConnection(1);
    relay.onOpen?.(a);
    expect(lines(a)).toHaveLength(3);
    expect(lines(a)[0]).toMatch(/^Jan  5 12:03:04 iPhone SpringBoard\[58\] <Notice>: .* \(line 1\)\n$/);
    const b = new FakeServiceConnection(1, undefined, undefined, 2);
    relay.onOpen?.(b);
    relay.onData(b, Buffer.from('ignored'));
    vi.advanceTimersByTime(100);
    expect(lines(a)).toHaveLength(4);
    expect(lines(b)).toHaveLength(4);
    expect(lines(a)[3]).toBe(lines(b)[3]);
    relay.log('test', 'hello', 'Error', 7);
    expect(lines(b)[4]).toBe('Jan  5 12:03:04 iPhone test[7] <Error>: hello\n');
    expect(relay.stats).toMatchObject({ connections: 2, bytesIgnored: 7 });
  });

  it('the timer runs only while a host is connected', () => {
    const relay = createSyslogRelay({ periodMs: 100 });
    const a = new FakeServiceConnection(1);
    relay.onOpen?.(a);
    expect(vi.getTimerCount()).toBe(1);
    relay.onClose?.(a, 'host-reset');
    expect(vi.getTimerCount()).toBe(0);
    expect(relay.connectionCount).toBe(0);
  });

  it('a host that does not read loses lines instead of growing the queue', () => {
    const relay = createSyslogRelay({ backlog: 0, periodMs: 0, maxQueuedBytes: 1000 });
    let queued = 0;
    const conn: ServiceConnection = {
      port: 1,
      hostPort: 1,
      sendRoom: 0,
      maxPayload: 1000,
      open: true,
      get queuedBytes() {
        return queued;
      },
      write(d) {
        queued += d.length;
      },
      close() {
        // not reached
      },
    };
    relay.onOpen?.(conn);
    for (let i = 0; i < 100; i++) relay.log('p', 'x'.repeat(50));
    expect(queued).toBeLessThanOrEqual(1000);
    expect(relay.stats.linesDropped).toBeGreaterThan(80);
    expect(relay.stats.linesSent + relay.stats.linesDropped).toBe(100);
  });
});

describe('syslog timer never throws into the daemon', () => {
  it('a write that throws from the period timer closes that connection only, and is counted', () => {
    vi.useFakeTimers();
    try {
      const relay = createSyslogRelay({ backlog: 0, periodMs: 10 });
      const bad = new FakeServiceConnection(1, () => {
        throw new Error('link broke');
      });
      const good = new FakeServiceConnection(1, undefined, undefined, 2);
      relay.onOpen?.(bad);
      relay.onOpen?.(good);
      expect(() => vi.advanceTimersByTime(10)).not.toThrow();
      expect([bad.closed, good.closed, relay.stats.failures, good.written.length]).toEqual([true, false, 1, 1]);
      vi.advanceTimersByTime(10);
      expect(good.written.length).toBe(2);
    } finally {
      vi.useRealTimers();
    }
  });
});
