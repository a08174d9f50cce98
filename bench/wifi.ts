/**
 * Wi-Fi iPhones through our daemon, across a real link: the daemon (dist/main.js --no-usb) in one
 * network namespace, emulated Wi-Fi phones (dist/emulator/wifi-phone-cli.js) in others on a Linux
 * bridge, discovery over real multicast (test/support/wifi-lab.ts). Needs root and iproute2.
 *
 *   npm run bench:wifi -- [--rounds 3] [--mib 256] [--no-slow] [--only-throughput] [--cpu-prof DIR]
 *
 * Latency (wall clock; Attached/Detached as a listening client receives them, the phone's
 * announcement time as the phone stamps it, same clock):
 *   - advert → Attached, a phone seen for the first time (a new namespace and phone each round);
 *   - link down → Detached (the heartbeat deadline: Interval 1 s + grace 5 s; one round at a
 *     real phone's Interval of 10 s with --slow, the default);
 *   - link up → Attached, with the phone's re-announcement and without it (backoff);
 *   - IP change → Detached / Attached at the new address.
 * Throughput, the order rotated every round: one client program in the daemon's namespace
 * (bench/lib/wifi-load.ts) moves `--mib` MiB from the phone's source (19), into its discard (9),
 * and through its echo (7), over a direct TCP connection to the phone, through a Connect to the
 * daemon, and through the least a Node relay does (bench/lib/wifi-relay.ts: `pipe()` both ways),
 * which is the floor for any proxy on Node's streams. MB/s, then CPU seconds per GB of the daemon
 * (or the relay), the client and the phone (from /proc, deltas over the transfer).
 */
import { performance } from 'node:perf_hooks';
import { join } from 'node:path';
import { netnsUnavailable } from '../test/support/netns.js';
import { REPO_ROOT } from '../test/support/usb-testbed.js';
import { WifiLab, networkAddressOf, wifiLabUnavailable } from '../test/support/wifi-lab.js';
import type { LabDaemon, LabPhone, MuxEvent } from '../test/support/wifi-lab.js';
import { CpuMeter, loadAverage, machineDescription, median } from './lib/measure.js';

const MIB = 1024 * 1024;
const GB = 1e9;
const LOAD = join(REPO_ROOT, 'dist-bench', 'bench', 'lib', 'wifi-load.js');
const RELAY = join(REPO_ROOT, 'dist-bench', 'bench', 'lib', 'wifi-relay.js');
type Mode = 'direct' | 'proxied' | 'relay';
const MODES: readonly Mode[] = ['direct', 'proxied', 'relay'];

interface Args {
  readonly rounds: number;
  readonly mib: number;
  readonly slow: boolean;
  readonly latency: boolean;
  /** Write the daemon's V8 CPU profile here (node --cpu-prof). */
  readonly cpuProf: string | undefined;
}

function parse(argv: readonly string[]): Args {
  let rounds = 3;
  let mib = 256;
  let slow = true;
  let latency = true;
  let cpuProf: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--rounds') rounds = Number(argv[++i]);
    else if (a === '--mib') mib = Number(argv[++i]);
    else if (a === '--no-slow') slow = false;
    else if (a === '--only-throughput') latency = false;
    else if (a === '--cpu-prof') cpuProf = argv[++i];
    else throw new Error(`unknown argument ${String(a)}`);
  }
  if (!(rounds >= 1 && mib >= 1)) throw new Error('--rounds and --mib must be ≥ 1');
  return { rounds, mib, slow, latency, cpuProf };
}

const sleep = (t: number): Promise<void> => new Promise((r) => setTimeout(r, t));
const fmt = (values: readonly number[], digits = 0): string => {
  if (values.length === 0) return 'n/a';
  const m = median(values);
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  return values.length === 1 ? m.toFixed(digits) : `${m.toFixed(digits)} (${lo.toFixed(digits)}–${hi.toFixed(digits)})`;
};

interface LatencyRows {
  firstSeen: number[];
  downToDetached: number[];
  upReannounced: number[];
  upSilent: number[];
  ipChangeDetached: number[];
  ipChangeAttached: number[];
  slowDownToDetached: number[];
  slowUpToAttached: number[];
}

async function dropAndReturn(daemon: LabDaemon, phone: LabPhone, current: MuxEvent, announce: boolean, awayMs: number): Promise<{ detached: number; attached: number; event: MuxEvent }> {
  await phone.ctl('watch', `announce=${String(announce)}`);
  const down = Date.now();
  phone.linkDown();
  const detached = await daemon.events.detachedOf(current, 60_000);
  await sleep(awayMs);
  const mark = daemon.events.mark;
  const up = Date.now();
  phone.linkUp();
  const event = await daemon.events.networkAttached(phone.udid, 120_000, mark);
  await phone.ctl('watch', 'announce=true');
  return { detached: detached.t - down, attached: event.t - up, event };
}

async function latency(lab: WifiLab, daemon: LabDaemon, args: Args): Promise<LatencyRows> {
  const rows: LatencyRows = { firstSeen: [], downToDetached: [], upReannounced: [], upSilent: [], ipChangeDetached: [], ipChangeAttached: [], slowDownToDetached: [], slowUpToAttached: [] };
  let last: LabPhone | undefined;
  let current: MuxEvent | undefined;
  for (let i = 0; i < args.rounds; i++) {
    const udid = `00008110-0000BE0C0000${String(i).padStart(4, '0')}`;
    const mark = daemon.events.mark;
    const phone = await lab.addPhone(`seen${i}`, { udid, ipv4: `10.77.0.${100 + i}/24` }, daemon);
    const e = await daemon.events.networkAttached(udid, 20_000, mark);
    rows.firstSeen.push(e.t - (phone.ready.announcedAt ?? e.t));
    if (last !== undefined) await last.stop();
    last = phone;
    current = e;
  }
  if (last === undefined || current === undefined) throw new Error('no phone');
  const phone = last;
  for (let i = 0; i < args.rounds; i++) {
    // away for 8 s after the loss: the backoff has grown past its first steps
    const a = await dropAndReturn(daemon, phone, current, true, 8000);
    rows.downToDetached.push(a.detached);
    rows.upReannounced.push(a.attached);
    const b = await dropAndReturn(daemon, phone, a.event, false, 8000);
    rows.downToDetached.push(b.detached);
    rows.upSilent.push(b.attached);
    current = b.event;
  }
  for (let i = 0; i < Math.min(args.rounds, 2); i++) {
    // the session on IPv4 (an advert without IPv6 moves it there if it is elsewhere), then a new address
    const mark0 = daemon.events.mark;
    await phone.ctl('advert', 'families=ipv4');
    if (networkAddressOf(current).family === 6) current = await daemon.events.networkAttached(phone.udid, 10_000, mark0);
    await sleep(1500);
    await phone.ctl('advert', 'families=dual');
    await sleep(1500);
    const old = phone.ipv4 ?? '';
    const next = `10.77.0.${200 + i}`;
    const mark = daemon.events.mark;
    const t = Date.now();
    phone.ns.changeIpv4('wl0', `${old}/24`, `${next}/24`);
    const detached = await daemon.events.detachedOf(current, 60_000);
    current = await daemon.events.networkAttached(phone.udid, 60_000, mark);
    rows.ipChangeDetached.push(detached.t - t);
    rows.ipChangeAttached.push(current.t - t);
  }
  await phone.stop();
  if (args.slow) {
    // a real phone's Interval: 10 s, so the deadline is 10 + 10 s
    const udid = '00008110-0000BE0C0000FFFF';
    const mark = daemon.events.mark;
    const slow = await lab.addPhone('slow', { udid, ipv4: '10.77.0.150/24', heartbeatInterval: 10 }, daemon);
    const e = await daemon.events.networkAttached(udid, 20_000, mark);
    await sleep(2000);
    const r = await dropAndReturn(daemon, slow, e, true, 3000);
    rows.slowDownToDetached.push(r.detached);
    rows.slowUpToAttached.push(r.attached);
    await slow.stop();
  }
  return rows;
}

interface LoadResult {
  readonly mbps: number;
  readonly daemonSPerGb: number;
  readonly clientSPerGb: number;
  readonly phoneSPerGb: number;
}

interface Rig {
  readonly lab: WifiLab;
  readonly daemon: LabDaemon;
  readonly phone: LabPhone;
  readonly deviceId: number;
  readonly relayPid: number;
}

async function transfer(rig: Rig, mode: Mode, kind: 'source' | 'discard' | 'echo', bytes: number): Promise<LoadResult> {
  const { lab, daemon, phone, deviceId } = rig;
  const job = { mode, kind, bytes, host: phone.ipv4 ?? '', socketPath: daemon.socketPath, deviceId, relayDir: lab.lab.tmp };
  const base = kind === 'discard' ? ((await phone.ctl('status'))['discardBytes'] as number) : 0;
  // "daemon" is whoever sits between the client and the phone: our daemon, or the minimal relay
  const meter = new CpuMeter({ daemon: mode === 'relay' ? rig.relayPid : daemon.pid, phone: phone.proc.pid });
  const client = lab.host.spawn('node', [LOAD, JSON.stringify(job)]);
  let arrivedAt: number | undefined;
  if (kind === 'discard') {
    // done when the phone has every byte (the client's last write only reached its kernel)
    for (;;) {
      const got = (await phone.ctl('status'))['discardBytes'] as number;
      if (got - base >= bytes) {
        arrivedAt = performance.timeOrigin + performance.now();
        break;
      }
      if (client.child.exitCode !== null) throw new Error(`wifi-load ${mode} ${kind} exited: ${client.errLines.join('\n')}`);
      await sleep(5);
    }
  }
  const line = await client.waitForLine((l) => l.startsWith('{'), 300_000);
  const cpu = meter.read().cpu;
  client.child.stdin?.end();
  const code = await client.exited;
  if (code !== 0) throw new Error(`wifi-load ${mode} ${kind}: ${client.errLines.join('\n')}`);
  const out = JSON.parse(line) as { startedAt: number; endedAt: number; cpuSeconds: number };
  const seconds = ((arrivedAt ?? out.endedAt) - out.startedAt) / 1000;
  const gb = (kind === 'echo' ? 2 * bytes : bytes) / GB;
  return {
    mbps: bytes / MIB / seconds,
    daemonSPerGb: (cpu['daemon'] ?? Number.NaN) / gb,
    clientSPerGb: out.cpuSeconds / gb,
    phoneSPerGb: (cpu['phone'] ?? Number.NaN) / gb,
  };
}

async function throughput(lab: WifiLab, daemon: LabDaemon, args: Args): Promise<Map<string, LoadResult[]>> {
  const udid = '00008110-0000BE0C0000AAAA';
  const mark = daemon.events.mark;
  const phone = await lab.addPhone('bulk', { udid, ipv4: '10.77.0.160/24', heartbeatInterval: 10 }, daemon);
  const e = await daemon.events.networkAttached(udid, 20_000, mark);
  const relay = lab.host.spawn('node', [RELAY, JSON.stringify({ host: phone.ipv4, dir: lab.lab.tmp, ports: [7, 9, 19] })]);
  await relay.waitForLine((l) => l.includes('"ready"'));
  const rig: Rig = { lab, daemon, phone, deviceId: e.deviceId, relayPid: relay.pid };
  const results = new Map<string, LoadResult[]>();
  const bytes = args.mib * MIB;
  // warm-up (JIT, socket buffers) in every mode, not counted
  for (const mode of MODES) await transfer(rig, mode, 'source', 32 * MIB);
  for (let round = 0; round < args.rounds; round++) {
    for (const kind of ['source', 'discard', 'echo'] as const) {
      const order = [...MODES.slice(round % MODES.length), ...MODES.slice(0, round % MODES.length)];
      for (const mode of order) {
        const key = `${kind} ${mode}`;
        const r = await transfer(rig, mode, kind, bytes);
        results.set(key, [...(results.get(key) ?? []), r]);
        process.stderr.write(`  ${key.padEnd(16)} ${r.mbps.toFixed(0)} MB/s, in between ${r.daemonSPerGb.toFixed(2)} s/GB\n`);
      }
    }
  }
  relay.child.stdin?.end();
  await relay.stop();
  await phone.stop();
  return results;
}

async function main(): Promise<void> {
  const args = parse(process.argv.slice(2));
  const reason = wifiLabUnavailable(netnsUnavailable());
  if (reason !== undefined) {
    process.stderr.write(`bench:wifi cannot run: ${reason}\n`);
    process.exitCode = 1;
    return;
  }
  const lab = WifiLab.create();
  try {
    const daemon = await lab.daemon({ daemonArgs: ['--no-usb'], quiet: true, ...(args.cpuProf === undefined ? {} : { nodeArgs: ['--cpu-prof', '--cpu-prof-dir', args.cpuProf] }) });
    const loadBefore = loadAverage();
    process.stderr.write('latency rounds …\n');
    const lat = args.latency ? await latency(lab, daemon, args) : undefined;
    process.stderr.write('throughput rounds …\n');
    const tp = await throughput(lab, daemon, args);
    const lines: string[] = [];
    lines.push(`Wi-Fi bench: ${machineDescription()}; load ${loadBefore} → ${loadAverage()}; ${args.rounds} rounds, ${args.mib} MiB per transfer`);
    lines.push('');
    if (lat !== undefined) {
      lines.push('| latency (ms; median (min–max)) | value |');
      lines.push('| --- | --- |');
      lines.push(`| advert → Attached (phone seen for the first time) | ${fmt(lat.firstSeen)} |`);
      lines.push(`| link down → Detached (Interval 1 s + grace 5 s) | ${fmt(lat.downToDetached)} |`);
      lines.push(`| link up → Attached, the phone re-announces | ${fmt(lat.upReannounced)} |`);
      lines.push(`| link up → Attached, no re-announcement (backoff) | ${fmt(lat.upSilent)} |`);
      lines.push(`| IP change → Detached at the old address | ${fmt(lat.ipChangeDetached)} |`);
      lines.push(`| IP change → Attached at the new address | ${fmt(lat.ipChangeAttached)} |`);
      if (args.slow) {
        lines.push(`| link down → Detached, Interval 10 s (a real phone's) + grace 10 s | ${fmt(lat.slowDownToDetached)} |`);
        lines.push(`| link up → Attached, Interval 10 s, re-announced | ${fmt(lat.slowUpToAttached)} |`);
      }
      lines.push('');
    }
    lines.push('| transfer | path | MB/s | vs direct | in between s/GB | client s/GB | phone s/GB |');
    lines.push('| --- | --- | --- | --- | --- | --- | --- |');
    for (const kind of ['source', 'discard', 'echo'] as const) {
      const label = kind === 'source' ? 'source (19), device → host' : kind === 'discard' ? 'discard (9), host → device' : 'echo (7), both ways (MB/s each way)';
      const direct = median((tp.get(`${kind} direct`) ?? []).map((r) => r.mbps));
      for (const mode of MODES) {
        const rs = tp.get(`${kind} ${mode}`) ?? [];
        const name = mode === 'direct' ? 'direct TCP' : mode === 'proxied' ? 'Connect through our daemon' : 'minimal Node relay (pipe)';
        const between = mode === 'direct' ? '—' : fmt(rs.map((r) => r.daemonSPerGb), 2);
        lines.push(`| ${mode === 'direct' ? label : ''} | ${name} | ${fmt(rs.map((r) => r.mbps))} | ${(median(rs.map((r) => r.mbps)) / direct).toFixed(2)} | ${between} | ${median(rs.map((r) => r.clientSPerGb)).toFixed(2)} | ${median(rs.map((r) => r.phoneSPerGb)).toFixed(2)} |`);
      }
    }
    process.stdout.write(`${lines.join('\n')}\n`);
    if (args.cpuProf !== undefined) await daemon.stop(); // the profile is written at a clean exit
  } finally {
    await lab.cleanup();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:wifi: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
