/**
 * Short versions of the client-side soak scenarios (bench/soak), against the real daemon process
 * (`dist/main.js`, built by `npm test`). `npm run soak` runs the long versions.
 */
import { describe, expect, it } from 'vitest';
import { clientFuzzScenario } from '../../bench/soak/client-fuzz.js';
import { clientProtocolFuzzScenario } from '../../bench/soak/client-protocol-fuzz.js';
import { fdExhaustionScenario, slowAndIdleScenario } from '../../bench/soak/load.js';
import { formatTable, scaleFor, verdict } from '../../bench/soak/harness.js';
import type { Row } from '../../bench/soak/harness.js';

const scale = scaleFor('test');

function expectPass(row: Row): void {
  expect(verdict(row), formatTable([row])).toBe('PASS');
  expect(row.inputs).toBeGreaterThan(0);
}

describe('soak (short): client side against the real daemon', () => {
  it('fuzzed frames: no crash or leak; the listener, the echo tunnel and ListDevices keep working', async () => {
    const row = await clientFuzzScenario(scale, 7);
    expectPass(row);
    expect(row.bytesDelivered).toBe(row.bytesSent);
  }, 60_000);

  it('structure-aware client protocol fuzz: a probe answered within 100 ms p99 throughout, heap bounded, nothing but log lines on stderr', async () => {
    expectPass(await clientProtocolFuzzScenario(scale, 3));
  }, 90_000);

  it('1000 idle clients + slowloris clients do not starve a ListDevices or a Connect', async () => {
    expectPass(await slowAndIdleScenario(scale));
  }, 60_000);

  it('with ulimit -n 256 the daemon refuses clients with "client limit reached", keeps its tunnel, no crash', async () => {
    expectPass(await fdExhaustionScenario(scale));
  }, 60_000);
});
