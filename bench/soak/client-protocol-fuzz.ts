/**
 * Client protocol fuzz: structure-aware client connections (test/support/client-protocol-fuzz.ts:
 * frames with odd lengths, versions and types, hostile plist bodies, pipelined, cut at any byte,
 * many clients at once) against the real daemon, while a probe process asks ListDevices on a fresh
 * connection every 50 ms. What must hold throughout:
 *
 *   - the probe is answered, p99 within PROBE_P99_MS, none lost;
 *   - the heap after a full GC stays bounded (no growth past the noise at the end, and the peak
 *     over the run noted);
 *   - the daemon's output is its JSON log and nothing else (no library printing to stderr, no V8
 *     warning), with nothing at error or fatal level; it never dies;
 *   - connections that go silent halfway are closed by the daemon (once the run outlasts the
 *     request timeout).
 *
 * Inputs come from fast-check with a seed per batch (printed on failure); `bodies` plugs in
 * another plist body generator.
 */
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import fc from 'fast-check';
import { buildXml } from '../../src/plist/index.js';
import { encodeFrame } from '../../src/server/framing.js';
import { fuzzConnection, writesOf } from '../../test/support/client-protocol-fuzz.js';
import type { FuzzConnection } from '../../test/support/client-protocol-fuzz.js';
import { ClientProcess } from '../../test/support/uid-clients.js';
import { checkNoCrashInLog } from './client-fuzz.js';
import { check, checkLeaks, HEAP_NOISE_KIB, MemorySeries, newRow, SoakDaemon, sleep } from './harness.js';
import type { Row, SoakScale } from './harness.js';

/** The probe's bound: a local client waits no longer than this, 99 times in 100, whatever the others send. */
export const PROBE_P99_MS = 100;
const PROBE_INTERVAL_MS = 50;
/** Connections generated per fast-check sample call (one seed each). */
const BATCH = 25;
/** The daemon's default request timeout. */
const REQUEST_TIMEOUT_MS = 10_000;
/**
 * How long after its last byte a silent connection may stay: the request timeout, after up to a
 * Connect timeout (4 s) during which the daemon, not the client, had the turn (no deadline runs
 * while a Connect is pending), and a margin.
 */
const SILENT_CLOSE_MS = REQUEST_TIMEOUT_MS + 4000 + 2000;

interface Figures {
  connections: number;
  frames: number;
  silentOpen: Socket[];
  /** What each silent connection sent, to describe one the daemon left open. */
  readonly silentInputs: Map<Socket, FuzzConnection>;
  lastSilentAt: number;
  connectRetries: number;
}

export async function clientProtocolFuzzScenario(scale: SoakScale, seed = 1, bodies?: fc.Arbitrary<Buffer>): Promise<Row> {
  const row = newRow('client protocol fuzz');
  const budgetMs = scale.budget(300_000, 45_000, 12_000);
  const maxConnections = scale.pick(1_000_000, 100_000, 2_000);
  const workers = scale.pick(16, 12, 6);
  const daemon = await SoakDaemon.start({ virtualDevices: 1 });
  const arbitrary = fuzzConnection(bodies === undefined ? {} : { bodies });
  let monitor: ClientProcess | undefined;
  const silent: Socket[] = [];
  try {
    await daemon.sampleBefore(row);
    const request = encodeFrame(1, 8, 1, buildXml({ MessageType: 'ListDevices', ProgName: 'fuzz-probe' })).toString('hex');
    monitor = ClientProcess.start(undefined, { mode: 'monitor', path: daemon.socketPath, intervalMs: PROBE_INTERVAL_MS, request });
    const figures: Figures = { connections: 0, frames: 0, silentOpen: silent, silentInputs: new Map(), lastSilentAt: 0, connectRetries: 0 };
    const started = Date.now();
    const deadline = started + budgetMs;
    const more = (): boolean => figures.connections < maxConnections && Date.now() < deadline && daemon.alive;
    const series = new MemorySeries(daemon, 1);
    const sampler = (async () => {
      let nextAt = started + budgetMs / 5;
      while (more()) {
        await sleep(200);
        if (Date.now() < nextAt) continue;
        nextAt += budgetMs / 5;
        await series.at(figures.frames, true);
      }
    })();
    let batchSeed = seed * 1_000_003;
    const nextBatch = (): { seed: number; inputs: FuzzConnection[] } => {
      const s = batchSeed++;
      return { seed: s, inputs: fc.sample(arbitrary, { seed: s, numRuns: BATCH }) };
    };
    const failedSeeds = new Set<number>();
    const run = async (): Promise<void> => {
      while (more()) {
        const batch = nextBatch();
        for (const input of batch.inputs) {
          if (!more()) break;
          const ok = await runConnection(daemon.socketPath, input, figures, more);
          if (!ok && daemon.alive) failedSeeds.add(batch.seed);
        }
      }
    };
    await Promise.all(Array.from({ length: workers }, run));
    await sampler;
    // Silent connections must be closed by the daemon once they pass its request timeout.
    if (silent.length > 0) await sleep(Math.max(0, figures.lastSilentAt + SILENT_CLOSE_MS - Date.now()));
    const open = silent.filter((s) => !s.destroyed);
    const stillOpen = open.length;
    const example = open[0] === undefined ? undefined : figures.silentInputs.get(open[0]);
    monitor.stop();
    const probe = await monitor.next();
    monitor = undefined;
    row.inputs = figures.frames;
    check(row, daemon.alive, 'daemon alive after fuzzing');
    check(row, (probe.ok ?? 0) > 0 && probe.failed === 0, `probe: ${probe.failed ?? '?'} of ${(probe.ok ?? 0) + (probe.failed ?? 0)} ListDevices unanswered`);
    check(row, (probe.p99 ?? Infinity) <= PROBE_P99_MS, `probe p99 ${probe.p99?.toFixed(1) ?? '?'} ms over ${PROBE_P99_MS} ms`);
    check(row, stillOpen === 0, `${stillOpen} of ${silent.length} silent half-frame connections still open after the request timeout` +
      (example === undefined ? '' : `; the first sent ${example.frames.map((f) => `[len ${f.length} v${f.version} m${f.message} ${f.body.subarray(0, 120).toString('latin1')}]`).join(' ')}`));
    row.notes.push(
      `${figures.connections} connections, ${figures.frames} frames, ${workers} clients at once, seeds from ${seed * 1_000_003}; ` +
      `probe ${probe.ok ?? 0} ListDevices p50 ${probe.p50?.toFixed(1) ?? '?'} ms, p99 ${probe.p99?.toFixed(1) ?? '?'} ms, worst ${probe.max?.toFixed(1) ?? '?'} ms; ` +
      `${silent.length - stillOpen} of ${silent.length} silent connections closed by the daemon; ${figures.connectRetries} connect retries (EAGAIN)` +
      (failedSeeds.size > 0 ? `; batches with a failed connect: ${[...failedSeeds].slice(0, 5).join(', ')}` : ''),
    );
    for (const s of silent) s.destroy();
    await sleep(300);
    await daemon.sampleAfter(row);
    await series.at(row.inputs, true);
    series.note(row);
    checkLeaks(row);
    const logs = daemon.logs();
    checkNoCrashInLog(row, logs);
    checkOnlyLogLines(row, logs);
    if (row.heapBeforeKiB > 0) check(row, row.heapAfterKiB - row.heapBeforeKiB <= HEAP_NOISE_KIB, 'heap bounded');
  } finally {
    monitor?.stop();
    for (const s of silent) s.destroy();
    if (!daemon.alive) row.crashes = Math.max(row.crashes, 1);
    await daemon.stop();
  }
  return row;
}

/**
 * The daemon's output must be its JSON log and nothing else, and nothing at error level or above
 * (what a client can cause is info or warn): a stray line is a library printing past the logger.
 */
export function checkOnlyLogLines(row: Row, logs: string): void {
  const stray: string[] = [];
  let errors = 0;
  for (const line of logs.split('\n')) {
    if (line === '') continue;
    let level: unknown;
    try {
      level = (JSON.parse(line) as { level?: unknown }).level;
    } catch {
      stray.push(line);
      continue;
    }
    if (typeof level !== 'number') stray.push(line);
    else if (level >= 50) errors++;
  }
  check(row, stray.length === 0, `${stray.length} lines on stdout/stderr that are not log lines, first: ${(stray[0] ?? '').slice(0, 200)}`);
  check(row, errors === 0, `${errors} log lines at error level or above`);
}

/** One fuzz connection: its writes with a pause between them, then its ending. False if it could not connect. */
async function runConnection(path: string, input: FuzzConnection, figures: Figures, more: () => boolean): Promise<boolean> {
  let socket: Socket | undefined;
  for (let attempt = 0; socket === undefined && attempt < 50 && more(); attempt++) {
    socket = await open(path);
    if (socket === undefined) {
      figures.connectRetries++;
      await sleep(10);
    }
  }
  if (socket === undefined) return false;
  const s = socket;
  figures.connections++;
  figures.frames += input.frames.length;
  const closed = new Promise<void>((resolve) => s.once('close', () => { resolve(); }));
  s.resume(); // read (and drop) whatever the daemon answers
  const writes = writesOf(input);
  for (const [i, chunk] of writes.entries()) {
    if (s.destroyed) break;
    s.write(chunk);
    if (i < writes.length - 1) await sleep(1);
  }
  switch (input.ending) {
    case 'hangup':
      s.destroy();
      break;
    case 'linger':
      await Promise.race([closed, sleep(50)]);
      s.destroy();
      break;
    case 'silence':
      // A header cut short, then nothing: the daemon must close it at its request timeout. Only
      // after frames whose lengths tell the truth: after a lie, these bytes may complete a frame
      // and leave the client idle (60 s), as a header lie can absorb them. And not after a Connect:
      // a tunnel is never closed for silence. Those connections just hang up.
      if (s.destroyed || input.frames.some((f) => f.length !== 16 + f.body.length || f.message === 2 || f.body.includes('Connect'))) {
        s.destroy();
      } else {
        s.write(Buffer.from([0x40, 0x00, 0x00]));
        figures.silentOpen.push(s);
        figures.silentInputs.set(s, input);
        figures.lastSilentAt = Date.now();
      }
      break;
  }
  return true;
}

function open(path: string): Promise<Socket | undefined> {
  return new Promise((resolve) => {
    const socket = connect(path);
    socket.on('error', () => undefined);
    socket.once('connect', () => { resolve(socket); });
    socket.once('close', () => { resolve(undefined); });
  });
}
