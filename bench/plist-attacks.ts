/**
 * `npm run bench:plist-attacks`: the hostile plists of issue 13 fed through the daemon's own code
 * paths, one child process per attack (so an out-of-memory abort or a stall ends only that row):
 *
 * - `frame`: a client's plist frame body, decoded as the server decodes every request
 *   (decodeRequest, request limits: 64 KiB, depth 8, 1024 values);
 * - `record`: a SavePairRecord whose PairRecordData is the attack, decoded by decodeRequest and
 *   saved by the real FilePairRecordStore into a temporary directory (default plist limits);
 * - `plist`: parsePlist with the default limits alone (what preflight, the emulator's lockdownd
 *   and the record store reading a file do).
 *
 * Per row: outcome (the error code or "value"), stall (wall time of that one call), heap used
 * after it minus before (the result still alive), peak RSS growth (getrusage maxRSS), bytes the
 * child printed to stderr (nothing may print around the logger) and, for `record`, the size of
 * the file written. A child that outlives `--timeout-s` (default 60) is killed; one that aborts
 * (V8 out of memory under `--max-old-space-size`, default 1024 MiB) is reported as such.
 *
 * `--only <text>` runs the rows whose name contains it.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FilePairRecordStore } from '../src/pairrecords/index.js';
import { buildXml, parsePlist, PlistParseError } from '../src/plist/index.js';
import { MuxdError } from '../src/errors.js';
import { decodeRequest } from '../src/server/messages.js';
import { MessageType, ProtocolVersion } from '../src/server/framing.js';
import {
  keyBomb, oddDate, referenceBomb, referenceBombInDict, sharedDataBomb, sharedStringBomb, wideIntBomb, xmlLongBadData, xmlLongDate, xmlLongInteger, xmlLongReal,
} from '../test/support/plist-attacks.js';

type Path = 'frame' | 'record' | 'plist';

interface Attack {
  readonly name: string;
  readonly path: Path;
  readonly input: () => Buffer;
}

const UDID = '00008030-001A2B3C4D5E802E';

const ATTACKS: readonly Attack[] = [
  { name: 'key bomb, 20 levels', path: 'frame', input: () => keyBomb(20) },
  { name: 'key bomb, 22 levels', path: 'frame', input: () => keyBomb(22) },
  { name: 'key bomb, 24 levels', path: 'frame', input: () => keyBomb(24) },
  { name: 'key bomb, 22 levels', path: 'record', input: () => keyBomb(22) },
  { name: 'wide int 0x1F x 1', path: 'frame', input: () => wideIntBomb(1) },
  { name: 'wide int 0x1F x 20', path: 'frame', input: () => wideIntBomb(20) },
  { name: 'wide int 0x1F x 1000', path: 'frame', input: () => wideIntBomb(1000) },
  { name: 'wide int 0x1F x 16000', path: 'record', input: () => wideIntBomb(16000, 15, 16000) },
  { name: 'shared string 30 KB x 1000', path: 'frame', input: () => sharedStringBomb(1000, 30_000) },
  { name: 'shared string 30 KB x 16000', path: 'record', input: () => sharedStringBomb(16000, 30_000) },
  { name: 'shared data 1 KB x 16000', path: 'record', input: () => sharedDataBomb(16000, 1000) },
  { name: 'reference bomb 2^20', path: 'frame', input: () => referenceBomb(20, 2) },
  { name: 'reference bomb 14^6', path: 'frame', input: () => referenceBomb(6, 14) },
  { name: 'reference bomb 2^13', path: 'record', input: () => referenceBombInDict(13, 2) },
  { name: 'odd date marker 0x30', path: 'frame', input: () => oddDate(0x30) },
  { name: 'odd date marker 0x30', path: 'plist', input: () => oddDate(0x30) },
  { name: 'XML real, 60000 digits + x', path: 'frame', input: () => xmlLongReal(60_000) },
  { name: 'XML integer, 60000 digits', path: 'frame', input: () => xmlLongInteger(60_000) },
  { name: 'XML data, 60000 chars + !', path: 'frame', input: () => xmlLongBadData(60_000) },
  { name: 'XML date, 60000 digits', path: 'frame', input: () => xmlLongDate(60_000) },
];

interface Measured {
  readonly bytes: number;
  readonly outcome: string;
  readonly stallMs: number;
  readonly heapDeltaMiB: number;
  readonly peakRssDeltaMiB: number;
  readonly fileBytes?: number;
  /** The result's type; it is referenced after the heap reading so it is still alive then. */
  readonly kept: string;
}

function rowKey(a: Attack): string {
  return `${a.name} [${a.path}]`;
}

function outcomeOf(err: unknown): string {
  if (err instanceof MuxdError) {
    const cause = err.cause instanceof PlistParseError ? `/${err.cause.code}` : '';
    return `${err.code}${cause}`;
  }
  return `THREW ${err instanceof Error ? err.constructor.name : typeof err}`;
}

function plistFrame(body: Buffer): { length: number; version: number; message: number; tag: number; body: Buffer } {
  return { length: 16 + body.length, version: ProtocolVersion.PLIST, message: MessageType.PLIST, tag: 1, body };
}

/** Child: run one attack and print one JSON line. */
async function runChild(key: string): Promise<void> {
  const attack = ATTACKS.find((a) => rowKey(a) === key);
  if (attack === undefined) throw new Error(`no attack ${key}`);
  const input = attack.input();
  const gc = Reflect.get(globalThis, 'gc') as () => void;
  let dir: string | undefined;
  let store: FilePairRecordStore | undefined;
  let body = input;
  if (attack.path === 'record') {
    dir = mkdtempSync(join(tmpdir(), 'plist-attack-'));
    store = new FilePairRecordStore({ dir });
    await store.init();
    body = buildXml({ MessageType: 'SavePairRecord', PairRecordID: UDID, PairRecordData: input });
  }
  gc();
  const heapBefore = process.memoryUsage().heapUsed;
  const rssBefore = process.memoryUsage().rss;
  let outcome = 'value';
  let kept: unknown;
  const t0 = performance.now();
  try {
    if (attack.path === 'plist') kept = parsePlist(input);
    else {
      const decoded = decodeRequest(plistFrame(body));
      kept = decoded;
      if (attack.path === 'record' && store !== undefined && decoded.request.type === 'SavePairRecord') {
        await store.save(decoded.request.pairRecordId, decoded.request.data);
        outcome = 'saved';
      }
    }
  } catch (err) {
    outcome = outcomeOf(err);
  }
  const stallMs = performance.now() - t0;
  const heapAfter = process.memoryUsage().heapUsed;
  const peakRss = process.resourceUsage().maxRSS * 1024;
  let fileBytes: number | undefined;
  if (dir !== undefined) {
    const recordDir = dir;
    const files = readdirSync(recordDir).filter((f) => f.endsWith('.plist') && f !== 'SystemConfiguration.plist');
    fileBytes = files.reduce((sum, f) => sum + statSync(join(recordDir, f)).size, 0);
    rmSync(recordDir, { recursive: true, force: true });
  }
  const measured: Measured = {
    bytes: attack.path === 'record' ? body.length : input.length,
    outcome,
    stallMs,
    heapDeltaMiB: (heapAfter - heapBefore) / 2 ** 20,
    peakRssDeltaMiB: Math.max(0, peakRss - rssBefore) / 2 ** 20,
    ...(fileBytes === undefined ? {} : { fileBytes }),
    kept: typeof kept,
  };
  process.stdout.write(`${JSON.stringify(measured)}\n`);
}

interface Row {
  readonly attack: Attack;
  readonly measured?: Measured;
  readonly failure?: string;
  readonly stderrBytes: number;
  readonly wallMs: number;
}

function runParent(key: string, timeoutS: number, heapMiB: number): Promise<Omit<Row, 'attack'>> {
  const self = fileURLToPath(import.meta.url);
  return new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, ['--expose-gc', `--max-old-space-size=${heapMiB}`, self, '--case', key], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let stderrBytes = 0;
    let timedOut = false;
    child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { stderrBytes += c.length; });
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, timeoutS * 1000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const wallMs = Date.now() - t0;
      const line = out.trim().split('\n').pop() ?? '';
      if (timedOut) resolve({ failure: `killed after ${timeoutS} s`, stderrBytes, wallMs });
      else if (code === 0 && line.startsWith('{')) resolve({ measured: JSON.parse(line) as Measured, stderrBytes, wallMs });
      else resolve({ failure: code === 134 || signal === 'SIGABRT' ? `aborted: V8 out of memory (exit 134) after ${(wallMs / 1000).toFixed(1)} s` : `exit ${code ?? signal ?? '?'}`, stderrBytes, wallMs });
    });
  });
}

function fmt(n: number, digits = 1): string {
  return n.toFixed(digits);
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const caseAt = argv.indexOf('--case');
  if (caseAt >= 0) {
    await runChild(argv[caseAt + 1] ?? '');
    return;
  }
  const arg = (name: string): string | undefined => {
    const at = argv.indexOf(name);
    return at >= 0 ? argv[at + 1] : undefined;
  };
  const timeoutS = Number(arg('--timeout-s') ?? 60);
  const heapMiB = Number(arg('--heap-mib') ?? 1024);
  const only = arg('--only');
  const rows: Row[] = [];
  for (const attack of ATTACKS) {
    if (only !== undefined && !rowKey(attack).includes(only)) continue;
    process.stderr.write(`plist-attacks: ${rowKey(attack)} ...\n`);
    rows.push({ attack, ...(await runParent(rowKey(attack), timeoutS, heapMiB)) });
  }
  const lines = [
    `node ${process.version}, child heap cap ${heapMiB} MiB, time cap ${timeoutS} s`,
    '',
    '| attack | path | input bytes | outcome | stall ms | heap Δ MiB | peak RSS Δ MiB | stderr bytes | file bytes |',
    '| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const r of rows) {
    const m = r.measured;
    const bytes = String(r.attack.input().length);
    if (m === undefined) {
      lines.push(`| ${r.attack.name} | ${r.attack.path} | ${bytes} | ${r.failure ?? '?'} | ≥ ${r.wallMs} | | | ${r.stderrBytes} | |`);
      continue;
    }
    lines.push(`| ${r.attack.name} | ${r.attack.path} | ${m.bytes} | ${m.outcome} | ${fmt(m.stallMs)} | ${fmt(m.heapDeltaMiB)} | ${fmt(m.peakRssDeltaMiB)} | ${r.stderrBytes} | ${m.fileBytes ?? ''} |`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

await main();
