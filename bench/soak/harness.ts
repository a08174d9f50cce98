/**
 * Soak harness: spawns the REAL daemon (`node dist/main.js`), samples its fds and RSS from /proc,
 * and collects one table row per scenario.
 *
 * The daemon's stdout/stderr go to a log file in its temp dir (no pipe back-pressure on the
 * daemon, and a complete log to grep afterwards). Wrappers run it under a low `ulimit -n`
 * (`sh -c 'ulimit -n N; exec node ...'`) or in a private mount namespace with a tiny tmpfs as its
 * config dir (`unshare -m sh -c 'mount -t tmpfs ... && exec node ...'`); both exec, so the pid we
 * spawn is the daemon's pid.
 */
import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isPlistDict } from '../../src/plist/index.js';
import { MuxdClient } from '../../test/support/muxd-client.js';
import type { HeapReading } from './heap-probe.js';

/** Repository root, from bench/soak/ (vitest) or dist-bench/bench/soak/ (npm run soak). */
export const repoRoot: string = fileURLToPath(new URL(import.meta.url.includes('/dist-bench/') ? '../../../' : '../../', import.meta.url));
/** The daemon under test: dist/main.js, or another build's entry in MUXD_SOAK_DAEMON_ENTRY (before/after runs). */
export const daemonEntry: string = process.env['MUXD_SOAK_DAEMON_ENTRY'] ?? join(repoRoot, 'dist', 'main.js');
/**
 * The compiled heap probe (heap-probe.ts), preloaded into the daemon for heap figures. Only there
 * when this file runs compiled (npm run soak); under vitest the heap columns read n/a.
 */
const heapProbeEntry: string = fileURLToPath(new URL('./heap-probe.js', import.meta.url));

/** How big a run is: `long` (npm run soak), `short` (--short), `test` (vitest). */
export type SoakMode = 'long' | 'short' | 'test';

export interface SoakScale {
  readonly mode: SoakMode;
  /** Pick the figure for this mode. */
  pick<T>(long: T, short: T, test: T): T;
  /** A scenario's time cap in ms for this mode, times `--budget-x` (release runs reach the counts). */
  budget(long: number, short: number, test: number): number;
}

export function scaleFor(mode: SoakMode, budgetFactor = 1): SoakScale {
  const pick = <T>(long: T, short: T, test: T): T => (mode === 'long' ? long : mode === 'short' ? short : test);
  return { mode, pick, budget: (long, short, test) => pick(long, short, test) * budgetFactor };
}

export interface Row {
  readonly scenario: string;
  inputs: number;
  crashes: number;
  fdsBefore: number;
  fdsAfter: number;
  rssBeforeKiB: number;
  rssAfterKiB: number;
  /** V8 heapUsed after a forced full GC (heap probe), KiB; 0 = not measured. */
  heapBeforeKiB: number;
  heapAfterKiB: number;
  /** process.memoryUsage().external after that GC (Buffer backing stores included), KiB. */
  externalBeforeKiB: number;
  externalAfterKiB: number;
  bytesSent: number;
  bytesDelivered: number;
  /** Every failed check, in words; empty = PASS. */
  readonly failures: string[];
  /** Extra figures worth printing under the table. */
  readonly notes: string[];
}

export function newRow(scenario: string): Row {
  return { scenario, inputs: 0, crashes: 0, fdsBefore: 0, fdsAfter: 0, rssBeforeKiB: 0, rssAfterKiB: 0, heapBeforeKiB: 0, heapAfterKiB: 0, externalBeforeKiB: 0, externalAfterKiB: 0, bytesSent: 0, bytesDelivered: 0, failures: [], notes: [] };
}

export function verdict(row: Row): 'PASS' | 'FAIL' {
  return row.failures.length === 0 && row.crashes === 0 ? 'PASS' : 'FAIL';
}

export function check(row: Row, ok: boolean, what: string): void {
  if (!ok) row.failures.push(what);
}

export interface DaemonSpawnOptions {
  /** `--virtual-device` count (default 1). */
  readonly virtualDevices?: number;
  /** Extra arguments after the standard ones. */
  readonly extraArgs?: readonly string[];
  /** `-v` count (default 0: base level info with -f). */
  readonly verbosity?: number;
  /** Run under `ulimit -n <n>`. */
  readonly ulimitNofile?: number;
  /** Config dir is a private tmpfs of this many KiB (a mount namespace of its own). */
  readonly tmpfsKiB?: number;
  /** Extra environment (the umockdev testbed's preload). */
  readonly env?: Readonly<Record<string, string>>;
  /** Listen address instead of the Unix socket in the temp dir. */
  readonly socketArg?: string;
  /** Reuse this config dir (restarts); default a fresh one in the temp dir. */
  readonly configDir?: string;
  /** Wait for this many devices in ListDevices (default: virtualDevices). */
  readonly waitDevices?: number;
  /** USB off unless true (default off: --no-usb). */
  readonly usb?: boolean;
  /**
   * Preload the heap probe (heap-probe.ts, `--expose-gc --import`) so `heap()` can read the heap
   * after a full GC. Default true; it costs the daemon nothing until it is asked.
   */
  readonly heapProbe?: boolean;
  /** The daemon's entry script (default dist/main.js): another build, for before/after runs. */
  readonly entry?: string;
}

/** Kills every daemon still running when the soak process exits. */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

export class SoakDaemon {
  exitInfo: string | undefined;
  /** fdKinds() at sampleBefore, printed when fds grew. */
  private fdKindsBefore = '';
  private preloadSocketsBefore = 0;
  private readonly exited: Promise<void>;

  private constructor(
    readonly child: ChildProcess,
    readonly pid: number,
    readonly dir: string,
    readonly socketPath: string,
    readonly configDir: string,
    readonly logFile: string,
    /** Where the heap probe writes its readings; undefined = no probe. */
    readonly heapFile: string | undefined,
    /** Runs under the umockdev testbed's preload. */
    private readonly usesTestbed: boolean,
  ) {
    live.add(child);
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitInfo = signal === null ? `exit code ${String(code)}` : `signal ${signal}`;
        live.delete(child);
        resolve();
      });
    });
  }

  static async start(options: DaemonSpawnOptions = {}): Promise<SoakDaemon> {
    const entry = options.entry ?? daemonEntry;
    if (!existsSync(entry)) throw new Error(`${entry} is missing: run \`npm run build\``);
    const dir = mkdtempSync(join(tmpdir(), 'muxd-soak-'));
    const socketPath = join(dir, 'usbmuxd.sock');
    const configDir = options.configDir ?? join(dir, 'config');
    mkdirSync(configDir, { recursive: true });
    const logFile = join(dir, 'daemon.log');
    const args = [entry, '-f', '-S', options.socketArg ?? socketPath, '-P', 'NONE', '-C', configDir, '--log-format', 'json'];
    for (let n = 0; n < (options.verbosity ?? 0); n++) args.push('-v');
    if (options.usb !== true) args.push('--no-usb');
    const devices = options.virtualDevices ?? 1;
    for (let n = 0; n < devices; n++) args.push(n === 0 ? '--virtual-device' : `--virtual-device=0000803${n}-001A2B3C4D5E802E`);
    args.push(...(options.extraArgs ?? []));
    let command = process.execPath;
    let argv = args;
    if (options.tmpfsKiB !== undefined) {
      argv = ['-m', 'sh', '-c', `mount -t tmpfs -o size=${options.tmpfsKiB}k,mode=0755 tmpfs "$MUXD_SOAK_DIR" && exec "$0" "$@"`, process.execPath, ...args];
      command = 'unshare';
    } else if (options.ulimitNofile !== undefined) {
      argv = ['-c', `ulimit -n ${options.ulimitNofile} && exec "$0" "$@"`, process.execPath, ...args];
      command = 'sh';
    }
    const env: Record<string, string | undefined> = { ...process.env, ...options.env, MUXD_SOAK_DIR: configDir };
    const heapFile = join(dir, 'heap.jsonl');
    const probing = options.heapProbe !== false && existsSync(heapProbeEntry);
    // MUXD_SOAK_DAEMON_NODE_OPTIONS: V8 flags for the daemon only (a heap cap, --trace-gc), not the soak.
    const daemonFlags = process.env['MUXD_SOAK_DAEMON_NODE_OPTIONS'];
    if (daemonFlags !== undefined) env['NODE_OPTIONS'] = [env['NODE_OPTIONS'], daemonFlags].filter((o) => o !== undefined && o !== '').join(' ');
    if (probing) {
      env['NODE_OPTIONS'] = [env['NODE_OPTIONS'], '--expose-gc', `--import=${heapProbeEntry}`].filter((o) => o !== undefined && o !== '').join(' ');
      env['MUXD_SOAK_HEAP_FILE'] = heapFile;
    }
    const out = openSync(logFile, 'a');
    const child = spawn(command, argv, { env, stdio: ['ignore', out, out] });
    closeSync(out);
    if (child.pid === undefined) throw new Error(`could not spawn ${command}`);
    const usesTestbed = options.env?.['LD_PRELOAD']?.includes('umockdev') === true;
    const daemon = new SoakDaemon(child, child.pid, dir, socketPath, configDir, logFile, probing ? heapFile : undefined, usesTestbed);
    const target = options.socketArg ?? socketPath;
    try {
      await daemon.waitAccepting(15_000, target);
      const wanted = options.waitDevices ?? devices;
      if (wanted > 0) await daemon.waitDevices(wanted, 15_000);
    } catch (err) {
      await daemon.stop();
      throw new Error(`daemon did not come up: ${err instanceof Error ? err.message : String(err)}\n${daemon.logs().slice(-4000)}`);
    }
    return daemon;
  }

  get alive(): boolean {
    return this.exitInfo === undefined;
  }

  logs(): string {
    try {
      return readFileSync(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }

  /**
   * Open file descriptors of the daemon process, without the sockets libumockdev-preload opens
   * inside it (one per emulated device node opened, to the testbed's ioctl server): those are
   * the harness's, not the daemon's, and counted apart (`preloadSockets`).
   */
  fds(): number {
    return this.fdTargets().filter((t) => t !== PRELOAD_SOCKET).length;
  }

  /**
   * Open fds once transient ones have had time to go: the lowest count seen over up to 2 s, early
   * once it is at `target` or below. A leak stays; transient fds do not — for example the stdio of
   * the `ss` child a client-identity lookup runs after a client connects, or a socket being closed.
   * (A single reading once caught such a moment under CI load: 28 → 37 fds, while the by-kind
   * listing taken right after showed every kind at its earlier count.)
   */
  private async settledFds(target: number): Promise<number> {
    let lowest = this.fds();
    for (let waited = 0; lowest > target && waited < 2000; waited += 100) {
      await sleep(100);
      lowest = Math.min(lowest, this.fds());
    }
    return lowest;
  }

  /** The daemon's libumockdev-preload ioctl sockets (0 without the USB testbed). */
  preloadSockets(): number {
    return this.fdTargets().filter((t) => t === PRELOAD_SOCKET).length;
  }

  /** The daemon's open fds by kind ("socket: 12, pipe: 4, /dev/bus/usb/001/003: 1"), to say what grew. */
  fdKinds(): string {
    const kinds = new Map<string, number>();
    for (const target of this.fdTargets()) {
      const kind = target.replace(/:\[\d+\]$/, '');
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
    }
    return [...kinds].sort((a, b) => b[1] - a[1]).map(([kind, n]) => `${kind}: ${n}`).join(', ');
  }

  /** readlink of every fd; the preload's ioctl sockets as PRELOAD_SOCKET. */
  private fdTargets(): string[] {
    const preload = this.usesTestbed ? umockdevIoctlSocketInodes() : new Set<number>();
    const targets: string[] = [];
    for (const fd of readdirSync(`/proc/${this.pid}/fd`)) {
      let target: string;
      try {
        target = readlinkSync(`/proc/${this.pid}/fd/${fd}`);
      } catch {
        continue; // closed meanwhile
      }
      const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
      targets.push(inode !== undefined && preload.has(Number(inode)) ? PRELOAD_SOCKET : target);
    }
    return targets;
  }

  /** VmRSS in KiB. */
  rssKiB(): number {
    const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${this.pid}/status`, 'utf8'));
    return Number(match?.[1] ?? 0);
  }

  /**
   * Ask the heap probe for a reading: a full GC in the daemon, then its memoryUsage(). undefined
   * without a probe or when the daemon does not answer within `timeoutMs`.
   */
  async heap(timeoutMs = 5000): Promise<HeapReading | undefined> {
    if (this.heapFile === undefined || !this.alive) return undefined;
    const count = readHeapFile(this.heapFile).length;
    this.child.kill('SIGURG');
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const readings = readHeapFile(this.heapFile);
      if (readings.length > count) return readings.at(-1);
      await sleep(10);
    }
    return undefined;
  }

  /** fds and RSS (then heap after a full GC, if probed) into the row's "before" columns. */
  async sampleBefore(row: Row): Promise<void> {
    row.fdsBefore = this.fds();
    this.fdKindsBefore = this.fdKinds();
    this.preloadSocketsBefore = this.preloadSockets();
    row.rssBeforeKiB = this.rssKiB();
    const heap = await this.heap();
    if (heap !== undefined) {
      row.heapBeforeKiB = Math.round(heap.heapUsed / 1024);
      row.externalBeforeKiB = Math.round(heap.external / 1024);
    }
  }

  /** fds and RSS (then heap) into the row's "after" columns; a dead daemon counts as a crash. */
  async sampleAfter(row: Row): Promise<void> {
    if (!this.alive) {
      row.crashes++;
      row.failures.push(`daemon died (${this.exitInfo ?? '?'})`);
      return;
    }
    row.fdsAfter = await this.settledFds(row.fdsBefore + FD_NOISE);
    if (row.fdsAfter - row.fdsBefore > FD_NOISE) row.notes.push(`fds before: ${this.fdKindsBefore}; after: ${this.fdKinds()}`);
    const preload = this.preloadSockets();
    if (this.usesTestbed) {
      row.notes.push(`libumockdev-preload ioctl sockets in the daemon (harness, not counted as daemon fds): ${this.preloadSocketsBefore}→${preload}`);
    }
    row.rssAfterKiB = this.rssKiB();
    const heap = await this.heap();
    if (heap !== undefined) {
      row.heapAfterKiB = Math.round(heap.heapUsed / 1024);
      row.externalAfterKiB = Math.round(heap.external / 1024);
    }
  }

  async waitAccepting(ms: number, target: string = this.socketPath): Promise<void> {
    const deadline = Date.now() + ms;
    for (;;) {
      if (!this.alive) throw new Error(`daemon exited early (${this.exitInfo ?? '?'})`);
      if (await accepts(target)) return;
      if (Date.now() > deadline) throw new Error(`${target} did not accept within ${ms} ms`);
      await sleep(25);
    }
  }

  async waitDevices(count: number, ms: number): Promise<number[]> {
    const deadline = Date.now() + ms;
    for (;;) {
      const ids = await listDeviceIds(this.socketPath).catch(() => []);
      if (ids.length >= count) return ids;
      if (Date.now() > deadline) throw new Error(`ListDevices showed ${ids.length} device(s), not ${count}`);
      await sleep(25);
    }
  }

  kill9(): Promise<void> {
    this.child.kill('SIGKILL');
    return this.exited;
  }

  /** SIGTERM (SIGKILL after 3 s) and remove the temp dir (unless `keep`). */
  async stop(keep = false): Promise<void> {
    if (this.alive) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 3000);
      await this.exited;
      clearTimeout(timer);
    }
    if (!keep) rmSync(this.dir, { recursive: true, force: true });
  }
}

/** fdTargets() label of a libumockdev-preload ioctl socket. */
const PRELOAD_SOCKET = 'umockdev-preload ioctl socket';

/**
 * Inodes of the client ends of the umockdev testbed's ioctl sockets: libumockdev-preload connects
 * one to `<testbed>/ioctl/dev/...` for every emulated device node a process opens (`ss -xnH`
 * lists the testbed's accepted end with that path as its local address and our end as its peer).
 */
function umockdevIoctlSocketInodes(): Set<number> {
  const inodes = new Set<number>();
  let text: string;
  try {
    text = execFileSync('ss', ['-xnH'], { encoding: 'utf8', maxBuffer: 32 * 1024 * 1024 });
  } catch {
    return inodes;
  }
  for (const line of text.split('\n')) {
    // Netid State Recv-Q Send-Q Local-Address Local-Inode Peer-Address Peer-Inode
    const f = line.trim().split(/\s+/);
    if (f.length >= 8 && f[4]?.includes('/ioctl/dev/') === true) inodes.add(Number(f[7]));
  }
  return inodes;
}

function readHeapFile(path: string): HeapReading[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  // The probe writes whole lines; a line still being written has no newline yet.
  const lines = text.split('\n');
  lines.pop();
  return lines.map((line) => JSON.parse(line) as HeapReading);
}

/** Device ids from a fresh ListDevices. */
export async function listDeviceIds(target: string, timeoutMs = 5000): Promise<number[]> {
  const client = await MuxdClient.connect(target);
  try {
    const { reply } = await Promise.race([
      client.request({ MessageType: 'ListDevices', ProgName: 'soak' }),
      sleep(timeoutMs).then(() => {
        throw new Error(`ListDevices took over ${timeoutMs} ms`);
      }),
    ]);
    const list = reply.kind === 'plist' ? reply.dict['DeviceList'] : undefined;
    if (!Array.isArray(list)) throw new Error(`ListDevices answered ${reply.kind}`);
    return list.map((d) => (isPlistDict(d) && typeof d['DeviceID'] === 'number' ? d['DeviceID'] : -1));
  } finally {
    await client.close();
  }
}

function accepts(target: string): Promise<boolean> {
  return new Promise((resolve) => {
    const colon = target.lastIndexOf(':');
    const sock = target.startsWith('/')
      ? connect(target)
      : connect({ host: colon > 0 ? target.slice(0, colon) : '127.0.0.1', port: Number(target.slice(colon + 1)) });
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => {
      sock.destroy();
      resolve(false);
    });
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A seeded PRNG (mulberry32), so a failing input can be reproduced from its seed. */
export class Rng {
  constructor(private state: number) {}
  next(): number {
    this.state = (this.state + 0x6d2b79f5) | 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(items: readonly T[]): T {
    const item = items[this.int(items.length)];
    if (item === undefined) throw new Error('pick from an empty list');
    return item;
  }
  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    for (let k = 0; k < n; k++) out[k] = this.int(256);
    return out;
  }
}

/** The table, as printed by `npm run soak` and in the report. */
export function formatTable(rows: readonly Row[]): string {
  const header = ['scenario', 'inputs tried', 'crashes', 'leaked fds (before→after)', 'RSS KiB before→after', 'heap used after GC KiB before→after', 'bytes sent / delivered', 'verdict'];
  const lines = rows.map((r) => [
    r.scenario,
    String(r.inputs),
    String(r.crashes),
    r.fdsBefore === 0 ? 'n/a (restarts)' : `${r.fdsAfter - r.fdsBefore} (${r.fdsBefore}→${r.fdsAfter})`,
    r.rssBeforeKiB === 0 ? 'n/a (restarts)' : `${r.rssBeforeKiB}→${r.rssAfterKiB}`,
    r.heapBeforeKiB === 0 || r.heapAfterKiB === 0 ? 'n/a' : `${r.heapBeforeKiB}→${r.heapAfterKiB}`,
    `${r.bytesSent} / ${r.bytesDelivered}`,
    verdict(r),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? '').length)));
  const fmt = (cells: readonly string[]): string => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  const out = [fmt(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...lines.map(fmt)];
  for (const r of rows) {
    for (const note of r.notes) out.push(`  ${r.scenario}: ${note}`);
    for (const failure of r.failures) out.push(`  ${r.scenario}: FAIL ${failure}`);
  }
  return out.join('\n');
}

/**
 * Memory figures every `every` inputs through a run (RSS from /proc, then the heap probe's full
 * GC), printed as one note: where the memory goes over the run, not only at its two ends.
 */
export class MemorySeries {
  private readonly points: string[] = [];

  constructor(private readonly daemon: SoakDaemon, private readonly every: number) {}

  /** Take a point when `n` is a multiple of `every` (or when `force`). */
  async at(n: number, force = false): Promise<void> {
    if (!force && n % this.every !== 0) return;
    const rss = this.daemon.rssKiB();
    const heap = await this.daemon.heap();
    const mib = (bytes: number): string => (bytes / 1048576).toFixed(1);
    this.points.push(
      heap === undefined
        ? `${n}: rss ${mib(rss * 1024)}`
        : `${n}: rss ${mib(rss * 1024)} heap ${mib(heap.heapUsed)}/${mib(heap.heapTotal)} ext ${mib(heap.external)} ab ${mib(heap.arrayBuffers)}`,
    );
  }

  note(row: Row): void {
    row.notes.push(`memory over the run (MiB; heap = used/committed after a full GC, ext = external, ab = ArrayBuffers): ${this.points.join('; ')}`);
  }
}

/** fd growth allowed as noise (lazy handles: a timer, a pino worker, an inotify fd). */
export const FD_NOISE = 8;
/** RSS growth allowed as noise: heap growth after warm-up, allocator slack. */
export const RSS_NOISE_KIB = 64 * 1024;

/**
 * Growth of the heap used after a full GC allowed as noise (warm-up: compiled code, inline caches).
 * What a leak looks like: before the fix in src/usb/usb-transport.ts every replug kept its session
 * and device, +10 KiB per cycle (+5.5 MiB over 541 cycles); after it, +1.2 MiB by cycle 100, then flat.
 */
export const HEAP_NOISE_KIB = 4 * 1024;

export function checkLeaks(row: Row): void {
  check(row, row.fdsAfter - row.fdsBefore <= FD_NOISE, `fds grew ${row.fdsBefore}→${row.fdsAfter}`);
  check(row, row.rssAfterKiB - row.rssBeforeKiB <= RSS_NOISE_KIB, `RSS grew ${row.rssBeforeKiB}→${row.rssAfterKiB} KiB`);
  if (row.heapBeforeKiB > 0 && row.heapAfterKiB > 0) {
    check(row, row.heapAfterKiB - row.heapBeforeKiB <= HEAP_NOISE_KIB, `heap used after GC grew ${row.heapBeforeKiB}→${row.heapAfterKiB} KiB`);
  }
}
