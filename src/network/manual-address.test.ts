import { afterEach, describe, expect, it, vi } from 'vitest';
import { DeviceUnreachableError } from '../devices/index.js';
import { silentLogger } from '../log.js';
import type { Endpoint } from './dial.js';
import { ManualAddress } from './manual-address.js';

const E: Endpoint = { address: '10.0.0.2', family: 4, interfaceIndex: 0 };

afterEach(() => { vi.useRealTimers(); });

describe('ManualAddress', () => {
  it('asks until the device answers, backing off 1, 2, 4 s, then reports its UDID once', async () => {
    vi.useFakeTimers();
    const asked: number[] = [];
    const udids: string[] = [];
    let answer = false;
    const m = new ManualAddress({
      endpoint: E,
      log: silentLogger(),
      timeoutMs: 100,
      onUdid: (u) => udids.push(u),
      ask: () => {
        asked.push(Date.now());
        return answer ? Promise.resolve('00008030-001A2B3C4D5E6F70') : Promise.reject(new DeviceUnreachableError(62078, 'EHOSTUNREACH'));
      },
    });
    const t0 = Date.now();
    await m.start();
    expect(m.current).toBe('waiting');
    await vi.advanceTimersByTimeAsync(1000 + 2000);
    answer = true;
    await vi.advanceTimersByTimeAsync(4000);
    expect(asked.map((t) => t - t0)).toEqual([0, 1000, 3000, 7000]);
    expect(udids).toEqual(['00008030-001A2B3C4D5E6F70']);
    expect(m.current).toBe('known');
    await vi.advanceTimersByTimeAsync(120_000);
    expect(asked.length).toBe(4);
  });

  it('stop() ends the asking, also with an attempt in flight', async () => {
    vi.useFakeTimers();
    let release: (u: string) => void = () => undefined;
    const udids: string[] = [];
    const m = new ManualAddress({ endpoint: E, log: silentLogger(), timeoutMs: 100, onUdid: (u) => udids.push(u), ask: () => new Promise((r) => { release = r; }) });
    const started = m.start();
    m.stop();
    release('X');
    await started;
    expect(udids).toEqual([]);
    expect(m.current).toBe('stopped');
  });
});
