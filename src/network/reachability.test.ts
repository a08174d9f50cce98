import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConnectionRefusedError, DeviceUnreachableError } from '../devices/index.js';
import { LockdownTlsError } from '../lockdown/index.js';
import { silentLogger } from '../log.js';
import type { Endpoint } from './dial.js';
import type { DeviceSession } from './device-session.js';
import type { HeartbeatEnd } from './heartbeat.js';
import { failureReason, Reachability } from './reachability.js';

const A: Endpoint = { address: '192.168.1.10', family: 4, interfaceIndex: 2 };
const B: Endpoint = { address: 'fe80::1', family: 6, interfaceIndex: 2, interfaceName: 'wlan0' };
const C: Endpoint = { address: '192.168.1.77', family: 4, interfaceIndex: 2 };

/** A phone the test controls: which endpoints answer, and as whom. */
class World {
  readonly attempts: string[] = [];
  readonly events: string[] = [];
  answers = new Map<string, 'ok' | 'refused' | 'unreachable' | 'stranger'>();
  ends = new Map<string, (why: HeartbeatEnd) => void>();

  prove = (endpoint: Endpoint, onEnd: (why: HeartbeatEnd) => void): Promise<DeviceSession> => {
    this.attempts.push(endpoint.address);
    const answer = this.answers.get(endpoint.address) ?? 'unreachable';
    switch (answer) {
      case 'ok': {
        this.ends.set(endpoint.address, onEnd);
        const session = { endpoint, current: 'beating', close: () => { this.events.push(`closed ${endpoint.address}`); } };
        return Promise.resolve(session as unknown as DeviceSession);
      }
      case 'refused': return Promise.reject(new ConnectionRefusedError(62078));
      case 'unreachable': return Promise.reject(new DeviceUnreachableError(62078, 'EHOSTUNREACH'));
      case 'stranger': return Promise.reject(new LockdownTlsError('the device presented a certificate other than its pair record\'s'));
    }
  };

  make(): Reachability {
    return new Reachability({
      udid: 'U',
      log: silentLogger(),
      prove: this.prove,
      onUp: (s) => this.events.push(`up ${s.endpoint.address}`),
      onDown: (s, why) => this.events.push(`down ${s.endpoint.address} ${why}`),
      onUnreachable: () => this.events.push('requery'),
      initialBackoffMs: 1000,
      maxBackoffMs: 8000,
    });
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

afterEach(() => { vi.useRealTimers(); });

describe('Reachability', () => {
  it('dials IPv4 before link-local, stops at the first proven endpoint', async () => {
    const w = new World();
    w.answers.set(A.address, 'ok');
    w.answers.set(B.address, 'ok');
    const r = w.make();
    r.setEndpoints([B, A]);
    await settle();
    expect(w.attempts).toEqual([A.address]);
    expect(r.current).toBe('up');
    expect(w.events).toEqual([`up ${A.address}`]);
  });

  it('backs off 1, 2, 4, 8, 8 s while nothing answers, asking mDNS again each round; a new endpoint dials at once', async () => {
    vi.useFakeTimers();
    const w = new World();
    const r = w.make();
    r.setEndpoints([A]);
    await settle();
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const before = w.attempts.length;
      let waited = 0;
      while (w.attempts.length === before) { await vi.advanceTimersByTimeAsync(100); waited += 100; }
      times.push(waited);
    }
    expect(times).toEqual([1000, 2000, 4000, 8000, 8000]);
    expect(w.events.filter((e) => e === 'requery').length).toBe(6);
    w.answers.set(C.address, 'ok');
    r.setEndpoints([C]);
    await settle();
    expect(r.current).toBe('up');
    expect(w.events.at(-1)).toBe(`up ${C.address}`);
    r.stop();
  });

  it('when the heartbeat ends: down, one immediate retry, then it comes back by itself when the phone does', async () => {
    vi.useFakeTimers();
    const w = new World();
    w.answers.set(A.address, 'ok');
    const r = w.make();
    r.setEndpoints([A]);
    await settle();
    w.answers.set(A.address, 'unreachable');
    w.ends.get(A.address)?.('timeout');
    await settle();
    expect(w.events).toEqual([`up ${A.address}`, `down ${A.address} timeout`, 'requery']);
    expect(r.current).toBe('waiting');
    await vi.advanceTimersByTimeAsync(3500);
    w.answers.set(A.address, 'ok'); // the phone is back, same address, no advert
    await vi.advanceTimersByTimeAsync(4500);
    expect(r.current).toBe('up');
    expect(w.events.at(-1)).toBe(`up ${A.address}`);
    r.stop();
  });

  it('a poke while a round is under way (the phone announced itself) makes the next round follow at once, not after the backoff', async () => {
    vi.useFakeTimers();
    const w = new World();
    const normal = w.prove;
    let fail: ((err: Error) => void) | undefined;
    let first = true;
    w.prove = (e, onEnd) => {
      if (!first) return normal(e, onEnd);
      first = false;
      return new Promise((_resolve, reject) => { fail = reject; }); // a connect waiting out a dead link
    };
    const r = w.make();
    r.setEndpoints([A]);
    await settle();
    expect(r.current).toBe('dialing');
    r.poke();
    w.answers.set(A.address, 'ok'); // the phone is back
    fail?.(new DeviceUnreachableError(62078, 'ETIMEDOUT'));
    await settle();
    expect(r.current).toBe('up'); // no backoff wait in between: no timer ran
    expect(w.events).toEqual([`up ${A.address}`]);
    r.stop();
  });

  it('an endpoint where somebody else answers is forgotten; one that is only unreachable is kept', async () => {
    vi.useFakeTimers();
    const w = new World();
    w.answers.set(A.address, 'stranger');
    w.answers.set(C.address, 'refused');
    const r = w.make();
    r.setEndpoints([A, C]);
    await settle();
    expect(r.known.map((e) => e.address)).toEqual([C.address]);
    r.stop();
  });

  it('relocate(): proven at another endpoint → down "moved", up there; proven nowhere → stays up where it was', async () => {
    const w = new World();
    w.answers.set(A.address, 'ok');
    const r = w.make();
    r.setEndpoints([A]);
    await settle();
    r.setEndpoints([C]); // the advert moved to C, but C does not answer yet
    r.relocate();
    await settle();
    expect(r.current).toBe('up');
    expect(r.upSession?.endpoint.address).toBe(A.address);
    expect(w.events).toEqual([`up ${A.address}`]);
    w.answers.set(C.address, 'ok');
    r.relocate();
    await settle();
    expect(w.events).toEqual([`up ${A.address}`, `closed ${A.address}`, `down ${A.address} moved`, `up ${C.address}`]);
    expect(r.upSession?.endpoint.address).toBe(C.address);
    // the old session's heartbeat ending now changes nothing
    w.ends.get(A.address)?.('closed');
    await settle();
    expect(r.current).toBe('up');
    r.stop();
  });

  it('relocate(): a stranger at the new address (a forged advert) never takes the device away', async () => {
    const w = new World();
    w.answers.set(A.address, 'ok');
    w.answers.set(C.address, 'stranger');
    const r = w.make();
    r.setEndpoints([A]);
    await settle();
    r.forget([A]);
    r.setEndpoints([C]);
    r.relocate();
    await settle();
    expect(r.upSession?.endpoint.address).toBe(A.address);
    expect(r.known).toEqual([]); // C forgotten: somebody else answers there
    expect(w.events).toEqual([`up ${A.address}`]);
    r.stop();
  });

  it('stop() closes an up session and nothing dials afterwards', async () => {
    vi.useFakeTimers();
    const w = new World();
    w.answers.set(A.address, 'ok');
    const r = w.make();
    r.setEndpoints([A]);
    await settle();
    r.stop();
    expect(w.events).toEqual([`up ${A.address}`, `closed ${A.address}`]);
    const n = w.attempts.length;
    r.setEndpoints([C]);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(w.attempts.length).toBe(n);
  });

  it('property: never two sessions at once, never a dial after stop, up only after a successful proof', async () => {
    await fc.assert(fc.asyncProperty(
      fc.array(fc.oneof(
        fc.record({ op: fc.constant('answer' as const), who: fc.constantFrom(A, B, C), how: fc.constantFrom<'ok' | 'refused' | 'unreachable' | 'stranger'>('ok', 'refused', 'unreachable', 'stranger') }),
        fc.record({ op: fc.constant('endpoints' as const), list: fc.subarray([A, B, C]) }),
        fc.record({ op: fc.constant('lose' as const) }),
        fc.record({ op: fc.constant('relocate' as const) }),
        fc.record({ op: fc.constant('time' as const), ms: fc.integer({ min: 0, max: 10_000 }) }),
      ), { maxLength: 30 }),
      async (steps) => {
        vi.useFakeTimers();
        const w = new World();
        const r = w.make();
        let ups = 0;
        let live = 0;
        const origProve = w.prove;
        w.prove = (e, onEnd) => origProve(e, onEnd);
        const check = (): void => {
          ups = w.events.filter((x) => x.startsWith('up')).length;
          const downs = w.events.filter((x) => x.startsWith('down')).length;
          live = ups - downs;
          expect(live === 0 || live === 1).toBe(true);
          expect(live === 1).toBe(r.current === 'up');
        };
        for (const s of steps) {
          if (s.op === 'answer') w.answers.set(s.who.address, s.how);
          else if (s.op === 'endpoints') r.setEndpoints(s.list);
          else if (s.op === 'relocate') r.relocate();
          else if (s.op === 'lose') { const up = r.upSession; if (up !== undefined) w.ends.get(up.endpoint.address)?.('timeout'); }
          else await vi.advanceTimersByTimeAsync(s.ms);
          await settle();
          check();
        }
        r.stop();
        const n = w.attempts.length;
        await vi.advanceTimersByTimeAsync(100_000);
        expect(w.attempts.length).toBe(n);
        vi.useRealTimers();
      },
    ), { numRuns: 150 });
  });

  it('failure reasons read as a user would put them', () => {
    expect(failureReason(new ConnectionRefusedError(62078))).toBe('lockdown port refused');
    expect(failureReason(new LockdownTlsError('x'))).toBe('session refused (TLS)');
    expect(failureReason(new Error('x'))).toBe('unexpected error');
  });
});
