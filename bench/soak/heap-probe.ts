/**
 * Heap probe, preloaded into the soak's daemon with `node --expose-gc --import <this file>`
 * (harness.ts does it when a scenario asks for heap figures). It costs nothing until asked: on
 * SIGURG it runs a full, synchronous mark-compact (`gc()`), then writes one JSON line with
 * `process.memoryUsage()` and the V8 heap statistics to `$MUXD_SOAK_HEAP_FILE` (appended).
 *
 * So the soak can tell apart, at any point of a run:
 *   - heapUsed after a full GC (live JS objects: a JS leak grows this),
 *   - external / arrayBuffers (Buffer backing stores held by live objects),
 *   - RSS minus the V8 heap's committed size and external (native: libusb, node-usb, malloc slack).
 *
 * SIGURG is ignored by default and unused by the daemon (it takes TERM/INT/QUIT/USR1/USR2).
 * The daemon's own code is untouched; the probe is part of the bench only.
 */
import { appendFileSync } from 'node:fs';
import { getHeapStatistics } from 'node:v8';

/** One probe reading, as written to the heap file. */
export interface HeapReading {
  readonly seq: number;
  /** process.memoryUsage() right before the forced GC. */
  readonly rssBefore: number;
  readonly heapUsedBefore: number;
  /** After gc(). */
  readonly rss: number;
  readonly heapTotal: number;
  readonly heapUsed: number;
  readonly external: number;
  readonly arrayBuffers: number;
  readonly mallocedMemory: number;
  readonly nativeContexts: number;
}

const file = process.env['MUXD_SOAK_HEAP_FILE'];
const gcFn: unknown = Reflect.get(globalThis, 'gc');

if (file !== undefined && typeof gcFn === 'function') {
  const runGc = gcFn as () => void;
  let seq = 0;
  process.on('SIGURG', () => {
    const before = process.memoryUsage();
    runGc();
    const after = process.memoryUsage();
    const stats = getHeapStatistics();
    const reading: HeapReading = {
      seq: seq++,
      rssBefore: before.rss,
      heapUsedBefore: before.heapUsed,
      rss: after.rss,
      heapTotal: after.heapTotal,
      heapUsed: after.heapUsed,
      external: after.external,
      arrayBuffers: after.arrayBuffers,
      mallocedMemory: stats.malloced_memory,
      nativeContexts: stats.number_of_native_contexts,
    };
    appendFileSync(file, `${JSON.stringify(reading)}\n`);
  });
}
