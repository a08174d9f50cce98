/**
 * Soak scenario "plist fuzz": the structure-aware plist generators (test/support/plist-arbitraries.ts)
 * through parsePlist for minutes, in this process (the codec does no I/O; the daemon-level fuzz,
 * frames over the socket while a probe client measures answers, is the client fuzz scenario's).
 *
 * Each input is checked by test/support/plist-fuzz.ts (a value or a PlistParseError, counted work
 * within the bound, result within the limits) under the daemon's limits in turn. Around the run:
 * the heap after a full GC every `checkEvery` inputs (gc is exposed at runtime), its peak and its
 * growth, and every byte written to stderr or the console (none may be).
 */
import { readdirSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { hostileBplist, hostileXmlPlist } from '../../test/support/plist-arbitraries.js';
import { captureStderr, checkPlist, FUZZ_LIMITS } from '../../test/support/plist-fuzz.js';
import { check, newRow } from './harness.js';
import type { Row, SoakScale } from './harness.js';

/** Heap used after a full GC may grow by at most this much over the run (allocation noise, JIT code). */
const HEAP_GROWTH_LIMIT_KIB = 16 * 1024;
const BATCH = 200;

function exposeGc(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

function fdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

export async function plistFuzzScenario(scale: SoakScale, seed = 20261207): Promise<Row> {
  const row = newRow('plist fuzz (in process)');
  const deadline = Date.now() + scale.budget(300_000, 30_000, 4_000);
  const maxInputs = scale.pick(2_000_000, 200_000, 2_000);
  const checkEvery = scale.pick(50_000, 10_000, 1_000);
  const gc = exposeGc();
  const kib = (bytes: number): number => Math.round(bytes / 1024);
  gc();
  row.fdsBefore = fdCount();
  row.rssBeforeKiB = kib(process.memoryUsage().rss);
  row.heapBeforeKiB = kib(process.memoryUsage().heapUsed);
  row.externalBeforeKiB = kib(process.memoryUsage().external);
  const outcomes = new Map<string, number>();
  let worstWorkRatio = 0;
  let peakHeapKiB = row.heapBeforeKiB;
  let nextCheck = checkEvery;
  const series: string[] = [];
  const stderr = captureStderr();
  try {
    for (let batch = 0; Date.now() < deadline && row.inputs < maxInputs; batch++) {
      const binary = batch % 2 === 0;
      const inputs = fc.sample(binary ? hostileBplist() : hostileXmlPlist(), { numRuns: BATCH, seed: seed + batch });
      for (const [i, buf] of inputs.entries()) {
        const limits = FUZZ_LIMITS[(batch + i) % FUZZ_LIMITS.length] ?? FUZZ_LIMITS[0]!;
        const verdict = checkPlist(buf, limits);
        row.inputs += 1;
        const key = `${binary ? 'binary' : 'xml'} ${verdict.outcome}`;
        outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
        worstWorkRatio = Math.max(worstWorkRatio, verdict.work / verdict.workBound);
        if (verdict.outcome === 'crash') row.crashes += 1;
        if (verdict.violations.length > 0 && row.failures.length < 5) row.failures.push(verdict.violations.join('; ').slice(0, 600));
      }
      if (row.inputs >= nextCheck) {
        nextCheck += checkEvery;
        gc();
        const heap = kib(process.memoryUsage().heapUsed);
        peakHeapKiB = Math.max(peakHeapKiB, heap);
        series.push(`${row.inputs}: heap ${(heap / 1024).toFixed(1)} MiB`);
        // Let the soak's own timers run (the event loop is this scenario's only between batches).
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
  } finally {
    stderr.stop();
  }
  gc();
  row.fdsAfter = fdCount();
  row.rssAfterKiB = kib(process.memoryUsage().rss);
  row.heapAfterKiB = kib(process.memoryUsage().heapUsed);
  row.externalAfterKiB = kib(process.memoryUsage().external);
  peakHeapKiB = Math.max(peakHeapKiB, row.heapAfterKiB);
  check(row, stderr.bytes() === 0, `${stderr.bytes()} bytes reached stderr or the console: ${stderr.first()}`);
  check(row, row.heapAfterKiB - row.heapBeforeKiB <= HEAP_GROWTH_LIMIT_KIB, `heap after GC grew by ${row.heapAfterKiB - row.heapBeforeKiB} KiB`);
  check(row, row.fdsAfter <= row.fdsBefore, `fds ${row.fdsBefore}→${row.fdsAfter}`);
  row.notes.push(`outcomes: ${[...outcomes.entries()].sort().map(([k, n]) => `${k} ${n}`).join(', ')}`);
  row.notes.push(`worst work / bound ${worstWorkRatio.toFixed(3)}; peak heap after GC ${(peakHeapKiB / 1024).toFixed(1)} MiB; stderr bytes ${stderr.bytes()}`);
  if (series.length > 0) row.notes.push(`heap after GC over the run: ${series.join('; ')}`);
  return row;
}
