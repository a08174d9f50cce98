/**
 * Side by side with Debian's usbmuxd 1.1.1 under the umockdev USB emulation (issue 7).
 *
 *   npm run bench -- [--rounds 3] [--mib 256] [--echo 1000] [--connects 200] [--tunnels 8]
 *                    [--only ours|reference] [--workloads d2h,h2d,echo,connect,parallel]
 *                    [--no-save] [--no-bulk-sg]
 *
 * Two complete stacks run at once, each with its OWN testbed (test/usb-emulation/testbed.py), its
 * own emulated iPhone (bench/usb-bridge.ts on the testbed's device socket) and its own daemon:
 *   ours       node dist/main.js -f -p -S <tmp sock> -P NONE -C <tmp>          (USB on)
 *   reference  usbmuxd -f -p in a private mount namespace (socket /proc/<pid>/root/run/usbmuxd)
 * Every workload runs on one stack and then on the other, the order alternating per round, so both
 * see the same machine load. Volumes: --mib for each bulk direction and for the parallel run.
 *
 * CPU is read from /proc/<pid>/stat (utime+stime) for the daemon, the testbed and the bridge
 * separately; "s/GB" is CPU seconds per 10^9 payload bytes. The "bound" column names what limited
 * a figure: a process at ≥ 85 % of a core, or both cores busy (machine), or neither (latency).
 * The testbeds offer bulk scatter-gather (USBDEVFS_CAP_BULK_SCATTER_GATHER, as xHCI hosts do), so
 * libusb hands each bulk transfer over as one URB instead of 16 KiB pieces: the Python ioctl
 * handler costs per URB, and this takes it out of the way of both daemons (--no-bulk-sg: old way).
 * The results (machine, load, table) are written to bench/results/<date>-usb-compare.md.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT, startBridge, startOurDaemon, startReferenceDaemon, startTestbed } from './lib/stacks.js';
import type { Daemon, Proc, Testbed } from './lib/stacks.js';
import type { TestbedStats } from '../test/support/usb-testbed.js';
import { CpuMeter, boundBy, cpuSeconds, loadAverage, machineDescription, median, medianSpread, peakRssMiB, ratio } from './lib/measure.js';
import { connectLatency, deviceToHost, echoLatency, firstDeviceId, hostToDevice, parallelDeviceToHost } from './lib/workloads.js';
import type { Target } from './lib/workloads.js';

type Kind = 'ours' | 'reference';
const KINDS: readonly Kind[] = ['ours', 'reference'];
const MB = 1e6;
const GB = 1e9;
const MIB = 1024 * 1024;

interface Options {
  rounds: number;
  mib: number;
  echo: number;
  connects: number;
  tunnels: number;
  only: Kind | undefined;
  save: boolean;
  /** Testbed offers bulk scatter-gather: one URB per bulk transfer (testbed.py --bulk-sg). */
  bulkSg: boolean;
  /** Only these workloads (d2h, h2d, echo, connect, parallel); all when empty. */
  workloads: string[];
}

function parseOptions(argv: readonly string[]): Options {
  const o: Options = { rounds: 3, mib: 256, echo: 1000, connects: 200, tunnels: 8, only: undefined, save: true, bulkSg: true, workloads: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    const num = (): number => {
      const n = Number(v);
      if (!Number.isFinite(n) || n <= 0) throw new Error(`${String(a)} needs a positive number`);
      i++;
      return n;
    };
    if (a === '--rounds') o.rounds = num();
    else if (a === '--mib') o.mib = num();
    else if (a === '--echo') o.echo = num();
    else if (a === '--connects') o.connects = num();
    else if (a === '--tunnels') o.tunnels = num();
    else if (a === '--no-save') o.save = false;
    else if (a === '--bulk-sg') o.bulkSg = true;
    else if (a === '--workloads' && v !== undefined) {
      o.workloads = v.split(',');
      i++;
    }
    else if (a === '--no-bulk-sg') o.bulkSg = false;
    else if (a === '--only' && (v === 'ours' || v === 'reference')) {
      o.only = v;
      i++;
    } else throw new Error(`unknown option ${String(a)}`);
  }
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

async function startStack(kind: Kind, o: Options): Promise<Stack> {
  const testbed = await startTestbed(o.bulkSg ? ['--bulk-sg'] : []);
  const bridge = await startBridge(testbed);
  const daemon = kind === 'ours' ? await startOurDaemon(testbed.env) : await startReferenceDaemon(testbed.env);
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

type Workload = readonly [string, (s: Stack, o: Options) => Promise<[string, Sample]>];

const WORKLOADS: readonly Workload[] = [
  ['d2h', async (s, o) => {
    const before = await s.testbed.stats();
    const meter = new CpuMeter(s.pids);
    const r = await deviceToHost(s.target, o.mib * MIB);
    const sample = bulkSample(r.bytes, meter, r.seconds);
    return ['d2h', { values: { ...sample.values, ...urbsPerMiB(before, await s.testbed.stats(), r.bytes) }, bound: sample.bound }];
  }],
  ['h2d', async (s, o) => {
    const delivered = async (): Promise<number> => (await s.testbed.stats()).outBytes;
    const before = await s.testbed.stats();
    const meter = new CpuMeter(s.pids);
    const r = await hostToDevice(s.target, o.mib * MIB, delivered);
    const sample = bulkSample(r.bytes, meter, r.seconds);
    return ['h2d', { values: { ...sample.values, ...urbsPerMiB(before, await s.testbed.stats(), r.bytes) }, bound: sample.bound }];
  }],
  ['echo', async (s, o) => {
    const meter = new CpuMeter(s.pids);
    const r = await echoLatency(s.target, o.echo);
    const c = cpuShares(meter);
    return ['echo', { values: { p50: r.p50ms, p99: r.p99ms }, bound: boundBy(c.shares, c.machineBusy) }];
  }],
  ['connect', async (s, o) => {
    const meter = new CpuMeter(s.pids);
    const r = await connectLatency(s.target, o.connects);
    const c = cpuShares(meter);
    return ['connect', { values: { p50: r.p50ms, p99: r.p99ms, perSecond: r.perSecond }, bound: boundBy(c.shares, c.machineBusy) }];
  }],
  ['parallel', async (s, o) => {
    const meter = new CpuMeter(s.pids);
    const r = await parallelDeviceToHost(s.target, o.tunnels, o.mib * MIB);
    const sample = bulkSample(r.bytes, meter, r.seconds);
    return ['parallel', { values: { ...sample.values, fairness: r.fairness }, bound: sample.bound }];
  }],
];

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

function row(name: string, key: string, field: string, stacks: Map<Kind, Samples>, digits: number, better: 'higher' | 'lower'): string {
  const vals = (k: Kind): number[] => (stacks.get(k)?.get(key) ?? []).map((s) => s.values[field] ?? Number.NaN);
  const bound = (k: Kind): string => [...new Set((stacks.get(k)?.get(key) ?? []).map((s) => s.bound.replace(/ \(.*\)$/, '')))].join('/');
  const o = vals('ours');
  const r = vals('reference');
  const arrow = better === 'higher' ? '↑' : '↓';
  const boundText = field === 'mbps' || field === 'p50' ? `${bound('ours')} / ${bound('reference')}` : '';
  return `| ${name} ${arrow} | ${medianSpread(o, digits)} | ${medianSpread(r, digits)} | ${ratio(median(o), median(r))} | ${boundText} |`;
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const kinds = o.only === undefined ? KINDS : [o.only];
  const started = new Date();
  const loadBefore = loadAverage();
  process.stderr.write(`usb-compare: ${o.rounds} rounds, ${o.mib} MiB per bulk run, load ${loadBefore}\n`);
  const stacks: Stack[] = [];
  const samples = new Map<Kind, Samples>(kinds.map((k) => [k, new Map()]));
  const loads: string[] = [];
  try {
    for (const k of kinds) stacks.push(await startStack(k, o));
    const idle = await idleCpu(stacks, 3);
    for (let round = 0; round < o.rounds; round++) {
      const order = round % 2 === 0 ? stacks : [...stacks].reverse();
      loads.push(loadAverage());
      for (const [name, workload] of WORKLOADS) {
        if (o.workloads.length > 0 && !o.workloads.includes(name)) continue;
        for (const s of order) {
          const [key, sample] = await workload(s, o);
          record(samples.get(s.kind) ?? new Map<string, Sample[]>(), key, sample);
          process.stderr.write(`  round ${round + 1} ${s.kind.padEnd(9)} ${key.padEnd(8)} ${JSON.stringify(sample.values, (_k, v: unknown) => (typeof v === 'number' ? Number(v.toFixed(3)) : v))} ${sample.bound}\n`);
        }
      }
    }
    const rss = new Map(stacks.map((s) => [s.kind, peakRssMiB(s.daemon.pid)]));
    const daemonCpuTotal = new Map(stacks.map((s) => [s.kind, cpuSeconds(s.daemon.pid)]));
    const table = [
      `| figure | ours: median (min–max) | reference: median (min–max) | ours/ref | bound by (ours / reference) |`,
      `| --- | --- | --- | --- | --- |`,
      row('device→host MB/s (source 19)', 'd2h', 'mbps', samples, 2, 'higher'),
      row('  daemon CPU s/GB', 'd2h', 'daemonSPerGB', samples, 1, 'lower'),
      row('  testbed CPU s/GB', 'd2h', 'testbedSPerGB', samples, 1, 'lower'),
      row('  bridge CPU s/GB', 'd2h', 'bridgeSPerGB', samples, 1, 'lower'),
      row('  OUT URBs per MiB (ACKs)', 'd2h', 'outUrbsPerMiB', samples, 1, 'lower'),
      row('  IN URBs per MiB', 'd2h', 'inUrbsPerMiB', samples, 1, 'lower'),
      row('host→device MB/s (discard 9)', 'h2d', 'mbps', samples, 2, 'higher'),
      row('  daemon CPU s/GB', 'h2d', 'daemonSPerGB', samples, 1, 'lower'),
      row('  testbed CPU s/GB', 'h2d', 'testbedSPerGB', samples, 1, 'lower'),
      row('  bridge CPU s/GB', 'h2d', 'bridgeSPerGB', samples, 1, 'lower'),
      row('  OUT URBs per MiB', 'h2d', 'outUrbsPerMiB', samples, 1, 'lower'),
      row('  IN URBs per MiB (ACKs)', 'h2d', 'inUrbsPerMiB', samples, 1, 'lower'),
      row('echo 64 B round trip p50 ms', 'echo', 'p50', samples, 3, 'lower'),
      row('echo 64 B round trip p99 ms', 'echo', 'p99', samples, 3, 'lower'),
      row('Connect→Result p50 ms', 'connect', 'p50', samples, 3, 'lower'),
      row('Connect→Result p99 ms', 'connect', 'p99', samples, 3, 'lower'),
      row('connects/s (sequential)', 'connect', 'perSecond', samples, 0, 'higher'),
      row(`${o.tunnels} tunnels device→host aggregate MB/s`, 'parallel', 'mbps', samples, 2, 'higher'),
      row(`  fairness min/max bytes per tunnel`, 'parallel', 'fairness', samples, 2, 'higher'),
      row('  daemon CPU s/GB', 'parallel', 'daemonSPerGB', samples, 1, 'lower'),
      row('  testbed CPU s/GB', 'parallel', 'testbedSPerGB', samples, 1, 'lower'),
      `| daemon peak RSS (VmHWM) MiB ↓ | ${rss.get('ours')?.toFixed(1) ?? 'n/a'} | ${rss.get('reference')?.toFixed(1) ?? 'n/a'} | ${ratio(rss.get('ours') ?? Number.NaN, rss.get('reference') ?? Number.NaN)} | |`,
      `| daemon CPU s, whole run ↓ | ${daemonCpuTotal.get('ours')?.toFixed(2) ?? 'n/a'} | ${daemonCpuTotal.get('reference')?.toFixed(2) ?? 'n/a'} | ${ratio(daemonCpuTotal.get('ours') ?? Number.NaN, daemonCpuTotal.get('reference') ?? Number.NaN)} | |`,
      `| idle CPU over 3 s, device attached | ${idle.get('ours') ?? 'n/a'} | ${idle.get('reference') ?? 'n/a'} | | |`,
    ].join('\n');
    const report = [
      `# usb-compare ${started.toISOString()}`,
      '',
      `Machine: ${machineDescription()}.`,
      `Load average (1/5/15 min): ${loadBefore} at start; per round: ${loads.join(' | ')}; ${loadAverage()} at the end.`,
      `Options: ${o.rounds} rounds, ${o.mib} MiB per bulk run (device→host, host→device, and in all over ${o.tunnels} tunnels), ${o.echo} echoes, ${o.connects} connects. MB = 10^6 bytes, s/GB = CPU seconds per 10^9 payload bytes.`,
      'Per-round figures, with the CPU shares behind each "bound by" verdict, are on stderr.',
      `Stacks: each daemon with its own umockdev testbed (Python ioctl handler, FIFO readiness, ${o.bulkSg ? 'bulk scatter-gather: one URB per bulk transfer' : 'libusb splits bulk transfers into 16 KiB URBs'}) and its own emulated iPhone (bench/usb-bridge.ts). Order alternates per round.`,
      '',
      table,
      '',
    ].join('\n');
    process.stdout.write(`${report}\n`);
    if (o.save) {
      const dir = join(REPO_ROOT, 'bench', 'results');
      mkdirSync(dir, { recursive: true });
      const file = join(dir, `${started.toISOString().slice(0, 10)}-usb-compare.md`);
      writeFileSync(file, report);
      process.stderr.write(`written to ${file}\n`);
    }
  } finally {
    for (const s of stacks) await stopStack(s);
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`usb-compare failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
