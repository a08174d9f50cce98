/**
 * Measuring helpers for the benches: process CPU and memory from /proc, percentiles, medians and
 * spreads, the machine description for the results file.
 */
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';

/** Clock ticks per second for /proc/<pid>/stat (USER_HZ; 100 on Linux x86_64). */
export const CLK_TCK: number = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** utime + stime of one process, in seconds (its threads included, its children not). */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state); utime is field 14, stime field 15
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return Number.NaN;
  }
}

/** Peak resident set (VmHWM) in MiB, or NaN when the process is gone. */
export function peakRssMiB(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /^VmHWM:\s+(\d+) kB/m.exec(status);
    return m?.[1] === undefined ? Number.NaN : Number(m[1]) / 1024;
  } catch {
    return Number.NaN;
  }
}

/** Resident set (VmRSS) in MiB now, or NaN when the process is gone. */
export function rssMiB(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
    return m?.[1] === undefined ? Number.NaN : Number(m[1]) / 1024;
  } catch {
    return Number.NaN;
  }
}

/** Peak RSS of a bare `node` process that lives a second: the floor any Node daemon starts from. */
export async function bareNodeRssMiB(nodeArgs: readonly string[] = []): Promise<number> {
  const child = spawn(process.execPath, [...nodeArgs, '-e', 'setTimeout(() => {}, 1500)'], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 1000));
  const rss = child.pid === undefined ? Number.NaN : peakRssMiB(child.pid);
  child.kill();
  return rss;
}

/** Busy and total jiffies of the whole machine (first line of /proc/stat). */
function machineJiffies(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busy: total - idle, total };
}

/** CPU seconds of a set of named processes (and the machine's busy share), read as deltas. */
export class CpuMeter {
  private readonly start = new Map<string, number>();
  private readonly t0 = process.hrtime.bigint();
  private readonly machine0 = machineJiffies();
  constructor(private readonly pids: Readonly<Record<string, number>>) {
    for (const [name, pid] of Object.entries(pids)) this.start.set(name, cpuSeconds(pid));
  }
  /** Wall seconds, CPU seconds per process, and the busy share (0..1) of all cores, since construction. */
  read(): { wall: number; cpu: Record<string, number>; machineBusy: number } {
    const wall = Number(process.hrtime.bigint() - this.t0) / 1e9;
    const cpu: Record<string, number> = {};
    for (const [name, pid] of Object.entries(this.pids)) cpu[name] = cpuSeconds(pid) - (this.start.get(name) ?? 0);
    const m = machineJiffies();
    const total = m.total - this.machine0.total;
    return { wall, cpu, machineBusy: total > 0 ? (m.busy - this.machine0.busy) / total : 0 };
  }
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] ?? Number.NaN;
}

export function sortedCopy(values: readonly number[]): number[] {
  return [...values].sort((a, b) => a - b);
}

export function median(values: readonly number[]): number {
  const s = sortedCopy(values.filter((v) => !Number.isNaN(v)));
  if (s.length === 0) return Number.NaN;
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] ?? Number.NaN) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
}

/** "median (min–max)" with `digits` decimals. */
export function medianSpread(values: readonly number[], digits = 1): string {
  const ok = values.filter((v) => !Number.isNaN(v));
  if (ok.length === 0) return 'n/a';
  const s = sortedCopy(ok);
  const m = median(s).toFixed(digits);
  if (s.length === 1) return m;
  return `${m} (${(s[0] ?? 0).toFixed(digits)}–${(s[s.length - 1] ?? 0).toFixed(digits)})`;
}

export function ratio(ours: number, reference: number, digits = 2): string {
  if (!Number.isFinite(ours) || !Number.isFinite(reference) || reference === 0) return 'n/a';
  return `${(ours / reference).toFixed(digits)}×`;
}

export function loadAverage(): string {
  return loadavg().map((l) => l.toFixed(2)).join(' ');
}

/** nproc, CPU model, kernel, node version: the header of a results file. */
export function machineDescription(): string {
  const model = cpus()[0]?.model ?? 'unknown';
  let kernel = 'unknown';
  try {
    kernel = execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim();
  } catch {
    // keep unknown
  }
  return `nproc ${cpus().length}, CPU "${model}", Linux ${kernel}, Node ${process.version}`;
}

/**
 * What a figure is bounded by, from the CPU share (of one core) each process used during it and
 * the busy share of the whole machine: a process at ≥ 85 % of a core bounds it; else, if the
 * machine's cores were ≥ 90 % busy, the machine does (with other work on it, "machine (other
 * load)"); else nothing was saturated and latency (round trips, timers) bounds it.
 */
export function boundBy(shares: Readonly<Record<string, number>>, machineBusy: number): string {
  const cores = cpus().length;
  let top = '';
  let topShare = 0;
  let total = 0;
  for (const [name, share] of Object.entries(shares)) {
    total += share;
    if (share > topShare) {
      top = name;
      topShare = share;
    }
  }
  if (topShare >= 0.85) return `${top} (${pct(topShare)} of a core)`;
  if (machineBusy >= 0.9) {
    const others = machineBusy * cores - total;
    return others > 0.3 ? `machine, other load (${pct(machineBusy)} busy, ${pct(others)} of a core not ours)` : `machine (${pct(machineBusy)} of ${cores} cores busy)`;
  }
  return `latency (busiest: ${top} ${pct(topShare)})`;
}

export function pct(share: number): string {
  return `${Math.round(share * 100)} %`;
}
