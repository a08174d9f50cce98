/**
 * Side by side with Debian's usbmuxd 1.1.1 under the umockdev USB emulation (issues 7 and 17).
 *
 *   npm run bench -- [--rounds 3] [--mib 64] [--echo-mib 16] [--echo 1000] [--connects 200] [--tunnels 8]
 *                    [--modes sg,no-sg] [--phones default,ack-every] [--bulk-sg | --no-bulk-sg]
 *                    [--only ours|reference] [--base <other build's main.js>] [--daemon <main.js>]
 *                    [--node-args "<node flags for ours>"] [--base-node-args "<for base>"]
 *                    [--workloads d2h,h2d,echo-bulk,echo,connect,parallel] [--tag NAME] [--no-save]
 *
 * A run is a matrix of configurations: each harness mode (`sg`: the testbed offers bulk
 * scatter-gather, so libusb hands each bulk transfer over as one URB, as on xHCI hosts; `no-sg`:
 * libusb cuts transfers into 16 KiB URBs, as without it) times each phone behaviour
 * (bench/lib/phones.ts: `default`, the emulator as it ships; `ack-every`, a bare ACK per data
 * packet). Each configuration gets fresh stacks; the summary at the end gives ours/reference of
 * every targeted figure per configuration and the worst of them.
 *
 * Each stack is its OWN testbed (test/usb-emulation/testbed.py), its own emulated iPhone
 * (bench/usb-bridge.ts on the testbed's device socket) and its own daemon:
 *   ours       node dist/main.js -f -p -S <tmp sock> -P NONE -C <tmp>          (USB on)
 *   base       the same with another build (`--base`, e.g. the commit before a change: before/after in one
 *              run), or with other node flags (`--base-node-args`, e.g. the same build without a V8 flag)
 *   reference  usbmuxd -f -p in a private mount namespace (socket /proc/<pid>/root/run/usbmuxd)
 * Every workload runs on each stack in turn, the order rotating per round, so all see the same
 * machine load. Volumes: --mib for each bulk direction and the parallel run, --echo-mib for echo.
 *
 * CPU is read from /proc/<pid>/stat (utime+stime) for the daemon, the testbed and the bridge
 * separately; "s/GB" is CPU seconds per 10^9 payload bytes; per round trip and per Connect it is the
 * daemon's CPU over the whole workload divided by the count. The "bound" column names what limited
 * a figure: a process at ≥ 85 % of a core, or both cores busy (machine), or neither (latency).
 * A bare `node` process is started at the beginning for the RSS floor the daemon's peak is set against.
 * The results (machine, load, tables) are written to bench/results/<date>-<tag>.md (tag: usb-compare).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT, startBridge, startOurDaemon, startReferenceDaemon, startTestbed } from './lib/stacks.js';
import type { Daemon, Proc, Testbed } from './lib/stacks.js';
import type { TestbedStats } from '../test/support/usb-testbed.js';
import { CpuMeter, bareNodeRssMiB, boundBy, cpuSeconds, loadAverage, machineDescription, median, medianSpread, peakRssMiB, ratio } from './lib/measure.js';
import { isPhoneName } from './lib/phones.js';
import type { PhoneName } from './lib/phones.js';
import { connectLatency, deviceToHost, echoBulk, echoLatency, firstDeviceId, hostToDevice, parallelDeviceToHost } from './lib/workloads.js';
import type { Target } from './lib/workloads.js';

type Kind = 'ours' | 'base' | 'reference';
type Mode = 'sg' | 'no-sg';
const MB = 1e6;
const GB = 1e9;
const MIB = 1024 * 1024;
const WORKLOAD_NAMES = ['d2h', 'h2d', 'echo-bulk', 'echo', 'connect', 'parallel'] as const;

interface Options {
  rounds: number;
  mib: number;
  echoMib: number;
  echo: number;
  connects: number;
  tunnels: number;
  only: Kind | undefined;
  save: boolean;
  tag: string;
  modes: Mode[];
  phones: PhoneName[];
  /** Only these workloads; all when empty. */
  workloads: string[];
  /** Our daemon's main.js (default: MUXD_BENCH_DAEMON, else dist/main.js). */
  daemon: string | undefined;
  /** A second build of ours, run as a third stack. */
  base: string | undefined;
  /** Node flags for ours and for base (default: MUXD_BENCH_NODE_ARGS for both). */
  nodeArgs: string;
  baseNodeArgs: string;
}

function parseOptions(argv: readonly string[]): Options {
  const o: Options = {
    rounds: 3, mib: 64, echoMib: 16, echo: 1000, connects: 200, tunnels: 8, only: undefined, save: true, tag: 'usb-compare',
    modes: ['sg', 'no-sg'], phones: ['default', 'ack-every'], workloads: [], daemon: undefined, base: undefined,
    nodeArgs: process.env['MUXD_BENCH_NODE_ARGS'] ?? '', baseNodeArgs: process.env['MUXD_BENCH_NODE_ARGS'] ?? '',
  };
  let baseNodeArgsGiven = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    const num = (): number => {
      const n = Number(v);
      if (!Number.isFinite(n) || n <= 0) throw new Error(`${String(a)} needs a positive number`);
      i++;
      return n;
    };
    const str = (): string => {
      if (v === undefined) throw new Error(`${String(a)} needs a value`);
      i++;
      return v;
    };
    if (a === '--rounds') o.rounds = num();
    else if (a === '--mib') o.mib = num();
    else if (a === '--echo-mib') o.echoMib = num();
    else if (a === '--echo') o.echo = num();
    else if (a === '--connects') o.connects = num();
    else if (a === '--tunnels') o.tunnels = num();
    else if (a === '--no-save') o.save = false;
    else if (a === '--tag') o.tag = str();
    else if (a === '--bulk-sg') o.modes = ['sg'];
    else if (a === '--no-bulk-sg') o.modes = ['no-sg'];
    else if (a === '--modes') {
      const modes = str().split(',');
      if (modes.some((m) => m !== 'sg' && m !== 'no-sg')) throw new Error('--modes takes sg and/or no-sg');
      o.modes = modes as Mode[];
    } else if (a === '--phones') {
      const phones = str().split(',');
      o.phones = phones.map((p) => {
        if (!isPhoneName(p)) throw new Error('--phones takes default and/or ack-every');
        return p;
      });
    } else if (a === '--workloads') {
      o.workloads = str().split(',');
      const unknown = o.workloads.filter((w) => !(WORKLOAD_NAMES as readonly string[]).includes(w));
      if (unknown.length > 0) throw new Error(`unknown workloads ${unknown.join(', ')} (${WORKLOAD_NAMES.join(', ')})`);
    } else if (a === '--daemon') o.daemon = str();
    else if (a === '--base') o.base = str();
    else if (a === '--node-args') o.nodeArgs = str();
    else if (a === '--base-node-args') {
      o.baseNodeArgs = str();
      baseNodeArgsGiven = true;
    }
    else if (a === '--only' && (v === 'ours' || v === 'reference')) {
      o.only = v;
      i++;
    } else throw new Error(`unknown option ${String(a)}`);
  }
  // --base-node-args alone: the same build as ours, other flags
  if (baseNodeArgsGiven && o.base === undefined) o.base = o.daemon ?? process.env['MUXD_BENCH_DAEMON'] ?? join(REPO_ROOT, 'dist', 'main.js');
  return o;
}

interface Stack {
  readonly kind: Kind;
  readonly testbed: Testbed;
  readonly bridge: Proc;
  readonly daemon: Daemon;
  readonly target: Target;
  readonly pids: Record<string, number>;
}

async function startStack(kind: Kind, mode: Mode, phone: PhoneName, o: Options): Promise<Stack> {
  const testbed = await startTestbed(mode === 'sg' ? ['--bulk-sg'] : []);
  const bridge = await startBridge(testbed, phone);
  const daemon = kind === 'reference'
    ? await startReferenceDaemon(testbed.env)
    : await startOurDaemon(testbed.env, [], kind === 'base' ? o.base : (o.daemon ?? process.env['MUXD_BENCH_DAEMON']), kind === 'base' ? o.baseNodeArgs : o.nodeArgs);
  const deviceId = await firstDeviceId(daemon.socketPath);
  // the bench process itself is the client: counted so that "other load" means other programs
  const pids = { daemon: daemon.pid, testbed: testbed.pid, bridge: bridge.pid, client: process.pid };
  return { kind, testbed, bridge, daemon, target: { socketPath: daemon.socketPath, deviceId }, pids };
}

async function stopStack(s: Stack): Promise<void> {
  await s.daemon.stop();
  await s.bridge.stop();
  await s.testbed.stop();
}

/** One sample of one workload on one stack. */
interface Sample {
  readonly values: Record<string, number>;
  readonly bound: string;
}

type Samples = Map<string, Sample[]>;

function record(samples: Samples, key: string, sample: Sample): void {
  const list = samples.get(key) ?? [];
  list.push(sample);
  samples.set(key, list);
}

function cpuShares(meter: CpuMeter): { wall: number; cpu: Record<string, number>; shares: Record<string, number>; machineBusy: number } {
  const { wall, cpu, machineBusy } = meter.read();
  const shares: Record<string, number> = {};
  for (const [name, s] of Object.entries(cpu)) shares[name] = s / wall;
  return { wall, cpu, shares, machineBusy };
}

function bulkSample(bytes: number, meter: CpuMeter, seconds: number): Sample {
  const { cpu, shares, machineBusy } = cpuShares(meter);
  return {
    values: {
      mbps: bytes / seconds / MB,
      daemonSPerGB: ((cpu['daemon'] ?? 0) / bytes) * GB,
      testbedSPerGB: ((cpu['testbed'] ?? 0) / bytes) * GB,
      bridgeSPerGB: ((cpu['bridge'] ?? 0) / bytes) * GB,
    },
    bound: boundBy(shares, machineBusy),
  };
}

/** Bulk URBs the testbed completed per MiB of payload, each direction (ACKs and ZLPs included). */
function urbsPerMiB(before: TestbedStats, after: TestbedStats, bytes: number): Record<string, number> {
  return {
    outUrbsPerMiB: ((after.outTransfers - before.outTransfers) / bytes) * MIB,
    inUrbsPerMiB: ((after.inTransfers - before.inTransfers) / bytes) * MIB,
  };
}

type Workload = (s: Stack, o: Options) => Promise<Sample>;

const WORKLOADS: Readonly<Record<(typeof WORKLOAD_NAMES)[number], Workload>> = {
  d2h: async (s, o) => {
    const before = await s.testbed.stats();
    const meter = new CpuMeter(s.pids);
    const r = await deviceToHost(s.target, o.mib * MIB);
    const sample = bulkSample(r.bytes, meter, r.seconds);
    return { values: { ...sample.values, ...urbsPerMiB(before, await s.testbed.stats(), r.bytes) }, bound: sample.bound };
  },
  h2d: async (s, o) => {
    const delivered = async (): Promise<number> => (await s.testbed.stats()).outBytes;
    const before = await s.testbed.stats();
    const meter = new CpuMeter(s.pids);
    const r = await hostToDevice(s.target, o.mib * MIB, delivered);
    const sample = bulkSample(r.bytes, meter, r.seconds);
    return { values: { ...sample.values, ...urbsPerMiB(before, await s.testbed.stats(), r.bytes) }, bound: sample.bound };
  },
  'echo-bulk': async (s, o) => {
    const before = await s.testbed.stats();
    const meter = new CpuMeter(s.pids);
    const r = await echoBulk(s.target, o.echoMib * MIB);
    const sample = bulkSample(r.bytes, meter, r.seconds);
    return { values: { ...sample.values, ...urbsPerMiB(before, await s.testbed.stats(), r.bytes) }, bound: sample.bound };
  },
  echo: async (s, o) => {
    const meter = new CpuMeter(s.pids);
    const r = await echoLatency(s.target, o.echo);
    const c = cpuShares(meter);
    const perRoundTripUs = ((c.cpu['daemon'] ?? 0) / r.count) * 1e6;
    return { values: { p50: r.p50ms, p99: r.p99ms, cpuUs: perRoundTripUs }, bound: boundBy(c.shares, c.machineBusy) };
  },
  connect: async (s, o) => {
    const meter = new CpuMeter(s.pids);
    const r = await connectLatency(s.target, o.connects);
    const c = cpuShares(meter);
    const perConnectMs = ((c.cpu['daemon'] ?? 0) / r.count) * 1e3;
    return { values: { p50: r.p50ms, p99: r.p99ms, perSecond: r.perSecond, cpuMs: perConnectMs }, bound: boundBy(c.shares, c.machineBusy) };
  },
  parallel: async (s, o) => {
    const meter = new CpuMeter(s.pids);
    const r = await parallelDeviceToHost(s.target, o.tunnels, o.mib * MIB);
    const sample = bulkSample(r.bytes, meter, r.seconds);
    return { values: { ...sample.values, fairness: r.fairness }, bound: sample.bound };
  },
};

async function idleCpu(stacks: readonly Stack[], seconds: number): Promise<Map<Kind, string>> {
  await new Promise((r) => setTimeout(r, 1000)); // let the attach settle
  const meters = stacks.map((s) => new CpuMeter(s.pids));
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const out = new Map<Kind, string>();
  stacks.forEach((s, i) => {
    const cpu: Record<string, number> = meters[i]?.read().cpu ?? {};
    out.set(s.kind, Object.entries(cpu).map(([n, c]) => `${n} ${(c * 1000).toFixed(0)} ms`).join(', '));
  });
  return out;
}

/** The samples of one configuration, per stack kind. */
interface ConfigResult {
  readonly mode: Mode;
  readonly phone: PhoneName;
  readonly samples: Map<Kind, Samples>;
  readonly rss: Map<Kind, number>;
  readonly cpuTotal: Map<Kind, number>;
  readonly idle: Map<Kind, string>;
  readonly loads: string[];
}

function values(r: ConfigResult, kind: Kind, key: string, field: string): number[] {
  return (r.samples.get(kind)?.get(key) ?? []).map((s) => s.values[field] ?? Number.NaN);
}

function row(name: string, key: string, field: string, r: ConfigResult, kinds: readonly Kind[], digits: number, better: 'higher' | 'lower'): string {
  const bound = (k: Kind): string => [...new Set((r.samples.get(k)?.get(key) ?? []).map((s) => s.bound.replace(/ \(.*\)$/, '')))].join('/');
  const arrow = better === 'higher' ? '↑' : '↓';
  const cells = kinds.map((k) => medianSpread(values(r, k, key, field), digits));
  const ours = median(values(r, 'ours', key, field));
  const ratios = [ratio(ours, median(values(r, 'reference', key, field)))];
  if (kinds.includes('base')) ratios.push(ratio(ours, median(values(r, 'base', key, field))));
  const boundText = field === 'mbps' || field === 'p50' ? kinds.map(bound).join(' / ') : '';
  return `| ${name} ${arrow} | ${cells.join(' | ')} | ${ratios.join(' | ')} | ${boundText} |`;
}

function configTable(r: ConfigResult, kinds: readonly Kind[], o: Options): string {
  const header = `| figure | ${kinds.map((k) => `${k}: median (min–max)`).join(' | ')} | ours/ref${kinds.includes('base') ? ' | ours/base' : ''} | bound by (${kinds.join(' / ')}) |`;
  const rule = `|${' --- |'.repeat(kinds.length + (kinds.includes('base') ? 4 : 3))}`;
  const single = (name: string, m: Map<Kind, number>, digits: number): string => {
    const ours = m.get('ours') ?? Number.NaN;
    const cells = kinds.map((k) => m.get(k)?.toFixed(digits) ?? 'n/a');
    const ratios = [ratio(ours, m.get('reference') ?? Number.NaN)];
    if (kinds.includes('base')) ratios.push(ratio(ours, m.get('base') ?? Number.NaN));
    return `| ${name} ↓ | ${cells.join(' | ')} | ${ratios.join(' | ')} | |`;
  };
  const R = (name: string, key: string, field: string, digits: number, better: 'higher' | 'lower'): string => row(name, key, field, r, kinds, digits, better);
  const lines = [
    header,
    rule,
    R('device→host MB/s (source 19)', 'd2h', 'mbps', 2, 'higher'),
    R('  daemon CPU s/GB', 'd2h', 'daemonSPerGB', 1, 'lower'),
    R('  testbed CPU s/GB', 'd2h', 'testbedSPerGB', 1, 'lower'),
    R('  bridge CPU s/GB', 'd2h', 'bridgeSPerGB', 1, 'lower'),
    R('  OUT URBs per MiB (ACKs)', 'd2h', 'outUrbsPerMiB', 1, 'lower'),
    R('  IN URBs per MiB', 'd2h', 'inUrbsPerMiB', 1, 'lower'),
    R('host→device MB/s (discard 9)', 'h2d', 'mbps', 2, 'higher'),
    R('  daemon CPU s/GB', 'h2d', 'daemonSPerGB', 1, 'lower'),
    R('  testbed CPU s/GB', 'h2d', 'testbedSPerGB', 1, 'lower'),
    R('  bridge CPU s/GB', 'h2d', 'bridgeSPerGB', 1, 'lower'),
    R('  OUT URBs per MiB', 'h2d', 'outUrbsPerMiB', 1, 'lower'),
    R('  IN URBs per MiB (ACKs)', 'h2d', 'inUrbsPerMiB', 1, 'lower'),
    R('echo MB/s, counted one way (echo 7)', 'echo-bulk', 'mbps', 2, 'higher'),
    R('  daemon CPU s/GB', 'echo-bulk', 'daemonSPerGB', 1, 'lower'),
    R('  testbed CPU s/GB', 'echo-bulk', 'testbedSPerGB', 1, 'lower'),
    R('  OUT URBs per MiB', 'echo-bulk', 'outUrbsPerMiB', 1, 'lower'),
    R('  IN URBs per MiB', 'echo-bulk', 'inUrbsPerMiB', 1, 'lower'),
    R('echo 64 B round trip p50 ms', 'echo', 'p50', 3, 'lower'),
    R('echo 64 B round trip p99 ms', 'echo', 'p99', 3, 'lower'),
    R('  daemon CPU µs per round trip', 'echo', 'cpuUs', 0, 'lower'),
    R('Connect→Result p50 ms', 'connect', 'p50', 3, 'lower'),
    R('Connect→Result p99 ms', 'connect', 'p99', 3, 'lower'),
    R('  daemon CPU ms per Connect', 'connect', 'cpuMs', 3, 'lower'),
    R('connects/s (sequential)', 'connect', 'perSecond', 0, 'higher'),
    R(`${o.tunnels} tunnels device→host aggregate MB/s`, 'parallel', 'mbps', 2, 'higher'),
    R(`  fairness min/max bytes per tunnel`, 'parallel', 'fairness', 2, 'higher'),
    R('  daemon CPU s/GB', 'parallel', 'daemonSPerGB', 1, 'lower'),
    R('  testbed CPU s/GB', 'parallel', 'testbedSPerGB', 1, 'lower'),
    single('daemon peak RSS (VmHWM) MiB', r.rss, 1),
    single('daemon CPU s, whole run', r.cpuTotal, 2),
    `| idle CPU over 3 s, device attached | ${kinds.map((k) => r.idle.get(k) ?? 'n/a').join(' | ')} | | ${kinds.includes('base') ? '| ' : ''}|`,
  ];
  return lines.filter((l) => !/^\| [^|]*\|( n\/a \|)+/.test(l)).join('\n');
}

/** The targeted figures (issue 17), ours/reference per configuration and the worst. */
const TARGETS: readonly { name: string; key: string; field: string; target: string; limit: number; better: 'higher' | 'lower' }[] = [
  { name: 'daemon CPU per GB, device→host', key: 'd2h', field: 'daemonSPerGB', target: '≤ 0.8×', limit: 0.8, better: 'lower' },
  { name: 'daemon CPU per GB, host→device', key: 'h2d', field: 'daemonSPerGB', target: '≤ 0.8×', limit: 0.8, better: 'lower' },
  { name: 'daemon CPU per GB, echo', key: 'echo-bulk', field: 'daemonSPerGB', target: '≤ 0.8×', limit: 0.8, better: 'lower' },
  { name: `daemon CPU per GB, parallel tunnels`, key: 'parallel', field: 'daemonSPerGB', target: '≤ 0.8×', limit: 0.8, better: 'lower' },
  { name: 'daemon CPU per 64 B round trip', key: 'echo', field: 'cpuUs', target: '≤ 1.0×', limit: 1.0, better: 'lower' },
  { name: 'daemon CPU per Connect', key: 'connect', field: 'cpuMs', target: '≤ 1.0×', limit: 1.0, better: 'lower' },
  { name: 'Connect→Result p99', key: 'connect', field: 'p99', target: '≤ 1.5×', limit: 1.5, better: 'lower' },
  { name: 'Connect→Result p50', key: 'connect', field: 'p50', target: '', limit: Number.NaN, better: 'lower' },
  { name: 'throughput device→host', key: 'd2h', field: 'mbps', target: '≥ 1.0×', limit: 1.0, better: 'higher' },
  { name: 'throughput host→device', key: 'h2d', field: 'mbps', target: '≥ 1.0×', limit: 1.0, better: 'higher' },
  { name: 'throughput echo', key: 'echo-bulk', field: 'mbps', target: '≥ 1.0×', limit: 1.0, better: 'higher' },
];

function summary(results: readonly ConfigResult[], bareRss: number): string {
  const label = (r: ConfigResult): string => `${r.mode}, ${r.phone}`;
  const lines = [
    `| figure (ours / usbmuxd 1.1.1) | ${results.map(label).join(' | ')} | worst | target |`,
    `|${' --- |'.repeat(results.length + 3)}`,
  ];
  for (const t of TARGETS) {
    const ratios = results.map((r) => median(values(r, 'ours', t.key, t.field)) / median(values(r, 'reference', t.key, t.field)));
    if (ratios.every((x) => Number.isNaN(x))) continue;
    const finite = ratios.filter((x) => Number.isFinite(x));
    const worst = finite.length === 0 ? Number.NaN : t.better === 'lower' ? Math.max(...finite) : Math.min(...finite);
    const met = Number.isNaN(t.limit) || Number.isNaN(worst) ? '' : (t.better === 'lower' ? worst <= t.limit : worst >= t.limit) ? ' (met)' : ' (**not met**)';
    lines.push(`| ${t.name} | ${ratios.map((x) => (Number.isFinite(x) ? `${x.toFixed(2)}×` : 'n/a')).join(' | ')} | ${Number.isFinite(worst) ? `${worst.toFixed(2)}×` : 'n/a'} | ${t.target}${met} |`);
  }
  const rss = results.map((r) => r.rss.get('ours') ?? Number.NaN);
  const worstRss = Math.max(...rss.filter((x) => Number.isFinite(x)));
  lines.push(`| daemon peak RSS / bare node (${bareRss.toFixed(1)} MiB) | ${rss.map((x) => `${(x / bareRss).toFixed(2)}× (${x.toFixed(1)} MiB)`).join(' | ')} | ${(worstRss / bareRss).toFixed(2)}× | ≤ 1.5×${worstRss / bareRss <= 1.5 ? ' (met)' : ' (**not met**)'} |`);
  const refRss = results.map((r) => r.rss.get('reference') ?? Number.NaN);
  lines.push(`| usbmuxd 1.1.1 peak RSS MiB | ${refRss.map((x) => x.toFixed(1)).join(' | ')} | | |`);
  return lines.join('\n');
}

async function runConfig(mode: Mode, phone: PhoneName, o: Options, kinds: readonly Kind[]): Promise<ConfigResult> {
  process.stderr.write(`config ${mode}, phone ${phone}: load ${loadAverage()}\n`);
  const stacks: Stack[] = [];
  const samples = new Map<Kind, Samples>(kinds.map((k) => [k, new Map()]));
  const loads: string[] = [];
  try {
    for (const k of kinds) stacks.push(await startStack(k, mode, phone, o));
    const idle = await idleCpu(stacks, 3);
    for (let round = 0; round < o.rounds; round++) {
      const order = stacks.map((_s, i) => stacks[(i + round) % stacks.length]).filter((s): s is Stack => s !== undefined);
      loads.push(loadAverage());
      for (const name of WORKLOAD_NAMES) {
        if (o.workloads.length > 0 && !o.workloads.includes(name)) continue;
        for (const s of order) {
          const sample = await WORKLOADS[name](s, o);
          record(samples.get(s.kind) ?? new Map<string, Sample[]>(), name, sample);
          process.stderr.write(`  ${mode} ${phone} round ${round + 1} ${s.kind.padEnd(9)} ${name.padEnd(9)} ${JSON.stringify(sample.values, (_k, v: unknown) => (typeof v === 'number' ? Number(v.toFixed(3)) : v))} ${sample.bound}\n`);
        }
      }
    }
    const rss = new Map(stacks.map((s) => [s.kind, peakRssMiB(s.daemon.pid)]));
    const cpuTotal = new Map(stacks.map((s) => [s.kind, cpuSeconds(s.daemon.pid)]));
    return { mode, phone, samples, rss, cpuTotal, idle, loads };
  } finally {
    for (const s of stacks) await stopStack(s);
  }
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const kinds: Kind[] = o.only !== undefined ? [o.only] : o.base !== undefined ? ['ours', 'base', 'reference'] : ['ours', 'reference'];
  const started = new Date();
  const loadBefore = loadAverage();
  process.stderr.write(`usb-compare: ${o.modes.join('+')} × ${o.phones.join('+')}, ${o.rounds} rounds, ${o.mib} MiB per bulk run, load ${loadBefore}\n`);
  const bareRss = await bareNodeRssMiB();
  const results: ConfigResult[] = [];
  for (const mode of o.modes) {
    for (const phone of o.phones) results.push(await runConfig(mode, phone, o, kinds));
  }
  const modeText = (m: Mode): string => (m === 'sg' ? 'bulk scatter-gather: one URB per bulk transfer' : 'no bulk scatter-gather: libusb splits bulk transfers into 16 KiB URBs');
  const sections = results.map((r) => [
    `## ${r.mode === 'sg' ? 'Bulk scatter-gather' : 'No bulk scatter-gather'}, ${r.phone} phone`,
    '',
    `Testbed: ${modeText(r.mode)}. Phone: \`${r.phone}\` (bench/lib/phones.ts). Load at each round: ${r.loads.join(' | ')}.`,
    '',
    configTable(r, kinds, o),
    '',
  ].join('\n'));
  const report = [
    `# usb-compare ${started.toISOString()}`,
    '',
    `Machine: ${machineDescription()}.`,
    `Load average (1/5/15 min): ${loadBefore} at start; ${loadAverage()} at the end.`,
    `Command: \`node dist-bench/bench/usb-compare.js ${process.argv.slice(2).join(' ')}\`.`,
    `Options: ${o.rounds} rounds, ${o.mib} MiB per bulk run (device→host, host→device, and in all over ${o.tunnels} tunnels), ${o.echoMib} MiB through echo, ${o.echo} echoes, ${o.connects} connects. MB = 10^6 bytes, s/GB = CPU seconds per 10^9 payload bytes.`,
    `Stacks: ${kinds.join(', ')}${o.base !== undefined ? ` (base: ${o.base}${o.baseNodeArgs !== '' ? ` with node ${o.baseNodeArgs}` : ''})` : ''}${o.nodeArgs !== '' ? ` (ours with node ${o.nodeArgs})` : ''}, each daemon with its own umockdev testbed (Python ioctl handler, FIFO readiness) and its own emulated iPhone (bench/usb-bridge.ts). Order rotates per round. Per-round figures, with the CPU shares behind each "bound by" verdict, are on stderr.`,
    '',
    '## Summary: ours / usbmuxd 1.1.1 per configuration',
    '',
    summary(results, bareRss),
    '',
    ...sections,
  ].join('\n');
  process.stdout.write(`${report}\n`);
  if (o.save) {
    const dir = join(REPO_ROOT, 'bench', 'results');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `${started.toISOString().slice(0, 10)}-${o.tag}.md`);
    writeFileSync(file, report);
    process.stderr.write(`written to ${file}\n`);
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`usb-compare failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
