/**
 * The plist-fuzz soak scenario (bench/soak/plist-fuzz.ts) at test scale: the structure-aware
 * plist generators through parsePlist for a few seconds, heap and stderr watched.
 */
import { expect, it } from 'vitest';
import { plistFuzzScenario } from '../../bench/soak/plist-fuzz.js';
import { formatTable, scaleFor, verdict } from '../../bench/soak/harness.js';

it('plist fuzz: no crash, work within the bound, heap after GC bounded, nothing on stderr', async () => {
  const row = await plistFuzzScenario(scaleFor('test'));
  expect(verdict(row), formatTable([row])).toBe('PASS');
  expect(row.inputs).toBeGreaterThanOrEqual(400);
}, 60_000);
