/**
 * `npm run soak` (long, bounded by time: about 20 minutes here) and `npm run soak -- --short`:
 * every scenario against the real daemon process, one table row each.
 * `--only <name>` runs the scenarios whose name contains <name>. `--budget-x N` multiplies every
 * scenario's time cap (a release run: `--budget-x 6` lets client fuzz reach 10^6 inputs and replug
 * 1000 cycles on the 2-core project machine).
 */
import { clientFuzzScenario } from './soak/client-fuzz.js';
import { plistFuzzScenario } from './soak/plist-fuzz.js';
import { clientProtocolFuzzScenario } from './soak/client-protocol-fuzz.js';
import { fdExhaustionScenario, slowAndIdleScenario } from './soak/load.js';
import { fullDiskScenario, killDuringSaveScenario, securityScenario } from './soak/storage.js';
import { hostileDeviceScenario, lengthLiesScenario, replugScenario, stalledDeviceScenario } from './soak/device-side.js';
import { formatTable, newRow, scaleFor, verdict } from './soak/harness.js';
import type { Row, SoakScale } from './soak/harness.js';

interface Scenario {
  readonly name: string;
  run(scale: SoakScale): Promise<Row | Row[]>;
}

const SCENARIOS: readonly Scenario[] = [
  { name: 'client fuzz', run: (s) => clientFuzzScenario(s) },
  { name: 'plist fuzz', run: (s) => plistFuzzScenario(s) },
  { name: 'client protocol fuzz', run: (s) => clientProtocolFuzzScenario(s) },
  { name: 'slowloris + idle', run: (s) => slowAndIdleScenario(s) },
  { name: 'fd exhaustion', run: (s) => fdExhaustionScenario(s) },
  { name: 'device hostile', run: (s) => hostileDeviceScenario(s) },
  { name: 'device length lies', run: (s) => lengthLiesScenario(s) },
  { name: 'device stalled', run: (s) => stalledDeviceScenario(s) },
  { name: 'replug', run: (s) => replugScenario(s) },
  { name: 'kill -9 during save', run: (s) => killDuringSaveScenario(s) },
  { name: 'full disk', run: (s) => fullDiskScenario(s) },
  { name: 'security', run: (s) => securityScenario(s) },
];

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const factorAt = argv.indexOf('--budget-x');
  const factor = factorAt >= 0 ? Number(argv[factorAt + 1]) : 1;
  if (!(factor > 0)) throw new Error('--budget-x takes a positive number');
  const scale = scaleFor(argv.includes('--short') ? 'short' : 'long', factor);
  const onlyAt = argv.indexOf('--only');
  const only = onlyAt >= 0 ? argv[onlyAt + 1] : undefined;
  const rows: Row[] = [];
  const started = Date.now();
  for (const scenario of SCENARIOS) {
    if (only !== undefined && !scenario.name.includes(only)) continue;
    const t0 = Date.now();
    process.stdout.write(`soak: ${scenario.name} (${scale.mode}) ...\n`);
    try {
      const result = await scenario.run(scale);
      rows.push(...(Array.isArray(result) ? result : [result]));
    } catch (err) {
      const row = newRow(scenario.name);
      row.failures.push(`scenario threw: ${err instanceof Error ? err.message.slice(0, 500) : String(err)}`);
      rows.push(row);
    }
    process.stdout.write(`soak: ${scenario.name} done in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
  }
  process.stdout.write(`\n${formatTable(rows)}\n\ntotal ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
  process.exitCode = rows.every((r) => verdict(r) === 'PASS') ? 0 : 1;
}

await main();
