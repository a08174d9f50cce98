/** Short versions of the pair-record fault and security soak scenarios (bench/soak/storage.ts). */
import { describe, expect, it } from 'vitest';
import { formatTable, scaleFor, verdict } from '../../bench/soak/harness.js';
import type { Row } from '../../bench/soak/harness.js';
import { fullDiskScenario, killDuringSaveScenario, securityScenario } from '../../bench/soak/storage.js';

const scale = scaleFor('test');

function expectPass(row: Row): void {
  expect(verdict(row), formatTable([row])).toBe('PASS');
  expect(row.inputs).toBeGreaterThan(0);
}

describe('soak (short): pair records under faults and attack, real daemon', () => {
  it('kill -9 during SavePairRecord never leaves a torn, empty or missing record', async () => {
    expectPass(await killDuringSaveScenario(scale));
  }, 60_000);

  it('a full disk, then a read-only dir: error Results, earlier records readable, daemon serving', async () => {
    expectPass(await fullDiskScenario(scale));
  }, 60_000);

  it('odd PairRecordIDs get 22 and create nothing; 0600 records; socket mode/group; loopback TCP; no key in -vvv logs', async () => {
    expectPass(await securityScenario(scale));
  }, 60_000);
});
