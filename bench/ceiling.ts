/**
 * Our software ceiling: the daemon's own cost with the emulated iPhone in-process (no USB, no
 * umockdev). Run with `npm run bench:ceiling -- [--mib 512] [--devices 32] [--tunnels 16] [--rounds 3]
 * [--window KiB]` (--window: the receive window the host advertises, default TX_WINDOW = 128).
 *
 *   server process (forked, `--serve`): DeviceRegistry + MuxProvider + MuxdServer on a real Unix socket +
 *     N × createVirtualDevice (MemoryTransportPair, USB-sized transfers: 16 KiB IN, OUT split at
 *     16 KiB like libusb), the phone's source (19) served from a precomputed pattern;
 *   this process: the clients (plist Connect, then raw tunnels, backpressure honoured, the source
 *     stream checked byte for byte).
 *
 * Measured over a real Unix socket, not mux-only: the socket costs are part of what a client sees
 * (`npm run bench:mux` has the mux engine alone). CPU per GB is the server process only — the mux,
 * the server, the socket writes AND the emulated phones — so it is an upper bound on the daemon's
 * share. Rows: one tunnel device→host and host→device, then devices × tunnels device→host at once.
 *
 * `--memory`: resident memory instead (issue 17 item 3), lean phones, against a bare `node` started
 * in the same run: the server with 1 and with N devices, then with N × tunnels idle connections
 * (to discard: no data moves), then its peak while all of them read from source; the marginal
 * memory per device and per tunnel. CEILING_NODE_ARGS applies to the server and the bare node.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DISCARD_PORT, SOURCE_PORT } from '../src/emulator/stock-ports.js';
import type { VirtualDevice } from '../src/emulator/index.js';
import { silentLogger } from '../src/log.js';
import { DeviceRegistry } from '../src/devices/index.js';
import { MuxProvider, TX_WINDOW } from '../src/mux/index.js';
import { FilePairRecordStore } from '../src/pairrecords/index.js';
import { MuxdServer } from '../src/server/index.js';
import { CpuMeter, bareNodeRssMiB, boundBy, loadAverage, machineDescription, median, medianSpread, peakRssMiB, rssMiB } from './lib/measure.js';
import { LeanPhone } from './lib/lean-phone.js';
import { deviceToHost, firstDeviceId, hostToDevice, openTunnels } from './lib/workloads.js';
import type { Target } from './lib/workloads.js';
import { MuxdClient } from '../test/support/muxd-client.js';

const MIB = 1024 * 1024;
const GB = 1e9;

type Phone = 'emulator' | 'lean';
type ToServer = { readonly type: 'discardBytes' } | { readonly type: 'phoneSeconds' } | { readonly type: 'dataPackets' };
type FromServer = { readonly type: 'ready' } | { readonly type: 'discardBytes'; readonly bytes: number } | { readonly type: 'phoneSeconds'; readonly seconds: number } | { readonly type: 'dataPackets'; readonly packets: number };

// ---------------------------------------------------------------------------------- server side

async function serve(socketPath: string, devices: number, window: number, phone: Phone): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'muxd-ceiling-'));
  const log = silentLogger();
  const registry = new DeviceRegistry({ log });
  const mux = new MuxProvider(registry, { window });
  const store = new FilePairRecordStore({ dir, log });
  await store.init();
  const server = new MuxdServer({ directory: registry, store, log });
  await server.listen({ kind: 'unix', path: socketPath });
  const phones: VirtualDevice[] = [];
  const leanPhones: LeanPhone[] = [];
  // The emulator only when it is the phone: with lean phones this process loads what a daemon does.
  const createVirtualDevice = phone === 'emulator' ? (await import('../src/emulator/index.js')).createVirtualDevice : undefined;
  for (let i = 0; i < devices; i++) {
    const udid = `00008030-${(0x1a2b3c4d5e0000 + i).toString(16).toUpperCase().padStart(16, '0')}`;
    if (phone === 'lean') {
      const lean = new LeanPhone(udid);
      mux.addDevice(lean, lean.info);
      leanPhones.push(lean);
    } else if (createVirtualDevice !== undefined) {
      const dev = createVirtualDevice({ emulator: { udid } });
      mux.addDevice(dev.transport, dev.info);
      phones.push(dev);
    }
  }
  process.on('message', (m: ToServer) => {
    if (m.type === 'discardBytes') {
      // bytes the phones' discard services swallowed
      const bytes = phones.reduce((sum, p) => sum + p.emulator.stats.discardBytes, 0) + leanPhones.reduce((sum, p) => sum + p.discardBytes, 0);
      process.send?.({ type: 'discardBytes', bytes } satisfies FromServer);
    } else if (m.type === 'dataPackets') {
      // host packets with payload the lean phones took (each one USB OUT transfer on a real cable)
      process.send?.({ type: 'dataPackets', packets: leanPhones.reduce((sum, p) => sum + p.dataPacketsIn, 0) } satisfies FromServer);
    } else {
      // CPU seconds the lean phones spent so far (the emulator's cannot be told apart)
      const seconds = leanPhones.reduce((sum, p) => sum + p.phoneSeconds, 0);
      process.send?.({ type: 'phoneSeconds', seconds } satisfies FromServer);
    }
  });
  process.on('disconnect', () => {
    rmSync(dir, { recursive: true, force: true });
    process.exit(0);
  });
  process.send?.({ type: 'ready' } satisfies FromServer);
}

// ---------------------------------------------------------------------------------- client side

interface Options {
  mib: number;
  devices: number;
  tunnels: number;
  rounds: number;
  /** Receive window the host advertises per connection, KiB (MuxProvider `window`). */
  windowKiB: number;
  /** Which phones: the full emulator, the lean one (daemon's share measurable), or both. */
  phones: Phone[];
  /** Which rows (`--only d2h,h2d,fan`; for profiling one workload). */
  only: Set<string>;
  /** Resident memory rows instead of throughput (see the header). */
  memory: boolean;
}

function parseOptions(argv: readonly string[]): Options {
  const o: Options = { mib: 512, devices: 32, tunnels: 16, rounds: 3, windowKiB: TX_WINDOW / 1024, phones: ['emulator', 'lean'], only: new Set(['d2h', 'h2d', 'fan']), memory: false };
  for (let i = 0; i < argv.length; i += 2) {
    if (argv[i] === '--memory') {
      o.memory = true;
      i--;
      continue;
    }
    if (argv[i] === '--only') {
      o.only = new Set((argv[i + 1] ?? '').split(','));
      continue;
    }
    if (argv[i] === '--phone') {
      const v = argv[i + 1];
      if (v === 'emulator' || v === 'lean') o.phones = [v];
      else if (v === 'both') o.phones = ['emulator', 'lean'];
      else throw new Error('--phone needs emulator, lean or both');
      continue;
    }
    const n = Number(argv[i + 1]);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`${String(argv[i])} needs a positive number`);
    if (argv[i] === '--mib') o.mib = n;
    else if (argv[i] === '--devices') o.devices = n;
    else if (argv[i] === '--tunnels') o.tunnels = n;
    else if (argv[i] === '--rounds') o.rounds = n;
    else if (argv[i] === '--window') o.windowKiB = n;
    else throw new Error(`unknown option ${String(argv[i])}`);
  }
  return o;
}

class Server {
  private readonly waiting = new Map<FromServer['type'], ((value: number) => void)[]>();
  private constructor(readonly child: ChildProcess, readonly socketPath: string, private readonly dir: string, private readonly phone: Phone) {
    child.on('message', (m: FromServer) => {
      if (m.type === 'discardBytes') this.waiting.get(m.type)?.shift()?.(m.bytes);
      else if (m.type === 'phoneSeconds') this.waiting.get(m.type)?.shift()?.(m.seconds);
      else if (m.type === 'dataPackets') this.waiting.get(m.type)?.shift()?.(m.packets);
    });
  }
  static async start(devices: number, windowKiB: number, phone: Phone): Promise<Server> {
    const dir = mkdtempSync(join(tmpdir(), 'muxd-ceiling-sock-'));
    const socketPath = join(dir, 'muxd.sock');
    const entry = fileURLToPath(import.meta.url);
    const child = fork(entry, ['--serve', socketPath, String(devices), String(windowKiB * 1024), phone], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      // CEILING_PROF=<dir>: a V8 CPU profile of the server process, for finding hot spots;
      // CEILING_NODE_ARGS: more node flags for it (e.g. --trace-gc)
      execArgv: [
        ...(process.env['CEILING_PROF'] === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${process.env['CEILING_PROF']}`]),
        ...(process.env['CEILING_NODE_ARGS']?.split(' ').filter((a) => a !== '') ?? []),
      ],
    });
    const [msg] = (await once(child, 'message')) as [FromServer];
    if (msg.type !== 'ready') throw new Error('server did not start');
    return new Server(child, socketPath, dir, phone);
  }
  get pid(): number {
    return this.child.pid ?? -1;
  }
  private ask(type: ToServer['type']): Promise<number> {
    return new Promise((resolve) => {
      const queue = this.waiting.get(type) ?? [];
      queue.push(resolve);
      this.waiting.set(type, queue);
      this.child.send({ type } satisfies ToServer);
    });
  }
  discardBytes(): Promise<number> {
    return this.ask('discardBytes');
  }
  /** Host packets with payload the lean phones took so far (NaN with the emulator). */
  dataPackets(): Promise<number> {
    return this.phone === 'lean' ? this.ask('dataPackets') : Promise.resolve(Number.NaN);
  }
  /** CPU seconds spent inside the lean phones so far (NaN with the emulator). */
  phoneSeconds(): Promise<number> {
    return this.phone === 'lean' ? this.ask('phoneSeconds') : Promise.resolve(Number.NaN);
  }
  async deviceIds(count: number): Promise<number[]> {
    const client = await MuxdClient.connect(this.socketPath);
    const ids: number[] = [];
    try {
      for await (const reply of client.listen({ timeoutMs: 10_000 })) {
        if (reply.kind === 'attached') ids.push(reply.deviceId);
        if (ids.length >= count) break;
      }
    } finally {
      await client.close();
    }
    return ids;
  }
  stop(): void {
    this.child.disconnect();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** One measurement of one row: bytes, wall time, CPU of server / phones / client, machine busy share. */
interface Sample {
  readonly bytes: number;
  readonly seconds: number;
  readonly server: number;
  readonly phone: number;
  readonly client: number;
  readonly machineBusy: number;
}

interface Row {
  readonly gbps: number[];
  readonly serverSPerGB: number[];
  readonly daemonSPerGB: number[];
  readonly clientSPerGB: number[];
  readonly bound: string[];
}

/** Starts the CPU meters (server and this client process) and the phone-time reading. */
async function meter(server: Server): Promise<() => Promise<Omit<Sample, 'bytes' | 'seconds'>>> {
  const phone0 = await server.phoneSeconds();
  const m = new CpuMeter({ server: server.pid, client: process.pid });
  return async () => {
    const r = m.read();
    const phone1 = await server.phoneSeconds();
    return { server: r.cpu['server'] ?? Number.NaN, client: r.cpu['client'] ?? Number.NaN, phone: phone1 - phone0, machineBusy: r.machineBusy };
  };
}

/**
 * Many source tunnels over many devices at once. Every tunnel's first window is already on its way
 * (or buffered) before the clients start reading, so the clock, the CPU meter (`onWarm`) and the
 * fairness count start only once `warmBytes` have arrived; `bytes` more are then measured.
 */
async function fanIn(server: Server, ids: readonly number[], tunnels: number, bytes: number, warmBytes: number, onWarm: () => void): Promise<{ bytes: number; seconds: number; fairness: number }> {
  const socks = await openTunnels(ids.flatMap((deviceId) => Array.from({ length: tunnels }, () => ({ socketPath: server.socketPath, deviceId }))), SOURCE_PORT);
  const per = socks.map(() => 0);
  let total = 0;
  let warm = false;
  let t0 = process.hrtime.bigint();
  await new Promise<void>((resolve) => {
    let done = false;
    socks.forEach((s, i) => {
      s.on('data', (chunk: Buffer) => {
        if (done) return;
        total += chunk.length;
        if (!warm) {
          if (total < warmBytes) return;
          warm = true;
          total = 0;
          t0 = process.hrtime.bigint();
          onWarm();
          return;
        }
        per[i] = (per[i] ?? 0) + chunk.length;
        if (total >= bytes) {
          done = true;
          resolve();
        }
      });
      s.on('error', () => undefined);
      s.resume();
    });
  });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  for (const s of socks) s.destroy();
  return { bytes: total, seconds, fairness: Math.min(...per) / Math.max(...per) };
}

async function measurePhone(o: Options, phone: Phone, rows: Map<string, Row>): Promise<void> {
  const add = (name: string, s: Sample): void => {
    const row = rows.get(name) ?? { gbps: [], serverSPerGB: [], daemonSPerGB: [], clientSPerGB: [], bound: [] };
    row.gbps.push(s.bytes / s.seconds / GB);
    row.serverSPerGB.push((s.server / s.bytes) * GB);
    row.daemonSPerGB.push(((s.server - s.phone) / s.bytes) * GB);
    row.clientSPerGB.push((s.client / s.bytes) * GB);
    row.bound.push(boundBy({ server: s.server / s.seconds, client: s.client / s.seconds }, s.machineBusy));
    rows.set(name, row);
  };
  const tag = phone === 'lean' ? 'lean phone' : 'emulator';
  const single = await Server.start(1, o.windowKiB, phone);
  const many = await Server.start(o.devices, o.windowKiB, phone);
  try {
    const [id] = await single.deviceIds(1);
    if (id === undefined) throw new Error('no device');
    const target: Target = { socketPath: single.socketPath, deviceId: id };
    const ids = await many.deviceIds(o.devices);
    await firstDeviceId(many.socketPath);
    const fairness: number[] = [];
    for (let r = 0; r < o.rounds; r++) {
      const mbps = (b: { bytes: number; seconds: number }): string => (b.bytes / b.seconds / 1e6).toFixed(0);
      let progress = `  ${tag} round ${r + 1}:`;
      if (o.only.has('d2h')) {
        const stop = await meter(single);
        const d = await deviceToHost(target, o.mib * MIB);
        add(`1 tunnel device→host, ${tag}`, { ...d, ...(await stop()) });
        progress += ` d2h ${mbps(d)} MB/s`;
      }
      if (o.only.has('h2d')) {
        const packets0 = await single.dataPackets();
        const stop = await meter(single);
        const h = await hostToDevice(target, o.mib * MIB, () => single.discardBytes());
        add(`1 tunnel host→device, ${tag}`, { ...h, ...(await stop()) });
        const packets = (await single.dataPackets()) - packets0;
        if (!Number.isNaN(packets)) rows.set(`host→device packets per MiB, ${tag}`, { gbps: [], serverSPerGB: [], daemonSPerGB: [], clientSPerGB: [], bound: [...(rows.get(`host→device packets per MiB, ${tag}`)?.bound ?? []), (packets / (h.bytes / MIB)).toFixed(1)] });
        progress += ` h2d ${mbps(h)} MB/s`;
      }
      if (!o.only.has('fan')) {
        process.stderr.write(`${progress}\n`);
        continue;
      }
      const warmBytes = ids.length * o.tunnels * o.windowKiB * 1024 * 2;
      let warmed: ReturnType<typeof meter> | undefined;
      const f = await fanIn(many, ids, o.tunnels, o.mib * MIB, warmBytes, () => {
        warmed = meter(many);
      });
      if (warmed === undefined) throw new Error('fan-in never warmed up');
      add(`${o.devices} devices × ${o.tunnels} tunnels device→host, ${tag}`, { bytes: f.bytes, seconds: f.seconds, ...(await (await warmed)()) });
      fairness.push(f.fairness);
      process.stderr.write(`${progress} fan-in ${mbps(f)} MB/s\n`);
    }
    if (fairness.length > 0) rows.set(`fan-in fairness (min/max bytes per tunnel), ${tag}`, { gbps: [], serverSPerGB: [], daemonSPerGB: [], clientSPerGB: [], bound: [medianSpread(fairness, 2)] });
    rows.set(`server peak RSS MiB (1 device / ${o.devices} devices), ${tag}`, { gbps: [], serverSPerGB: [], daemonSPerGB: [], clientSPerGB: [], bound: [`${peakRssMiB(single.pid).toFixed(1)} / ${peakRssMiB(many.pid).toFixed(1)}`] });
  } finally {
    single.stop();
    many.stop();
  }
}

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 1000));

/** Resident memory of the server at 1 and N devices, N × tunnels idle, and under fan-in traffic. */
async function measureMemory(o: Options): Promise<string[]> {
  const nodeArgs = process.env['CEILING_NODE_ARGS']?.split(' ').filter((a) => a !== '') ?? [];
  const bare = await bareNodeRssMiB(nodeArgs);
  const one = await Server.start(1, o.windowKiB, 'lean');
  const many = await Server.start(o.devices, o.windowKiB, 'lean');
  try {
    await one.deviceIds(1);
    const ids = await many.deviceIds(o.devices);
    await settle();
    const rssOne = rssMiB(one.pid);
    const rssMany = rssMiB(many.pid);
    const idle = await openTunnels(ids.flatMap((deviceId) => Array.from({ length: o.tunnels }, () => ({ socketPath: many.socketPath, deviceId }))), DISCARD_PORT);
    await settle();
    const rssTunnels = rssMiB(many.pid);
    const peakIdle = peakRssMiB(many.pid);
    const f = await fanIn(many, ids, o.tunnels, o.mib * MIB, ids.length * o.tunnels * o.windowKiB * 1024, () => undefined);
    await settle();
    const peak = peakRssMiB(many.pid);
    const after = rssMiB(many.pid);
    for (const sock of idle) sock.destroy();
    const tunnels = ids.length * o.tunnels;
    const r = (x: number): string => `${x.toFixed(1)} MiB (${(x / bare).toFixed(2)}×)`;
    process.stderr.write(`  memory: fan-in ${(f.bytes / f.seconds / 1e6).toFixed(0)} MB/s\n`);
    return [
      `| bare \`node\` (peak) | ${bare.toFixed(1)} MiB (1.00×) |`,
      `| server, 1 device | ${r(rssOne)} |`,
      `| server, ${ids.length} devices | ${r(rssMany)} |`,
      `| server, ${ids.length} devices × ${o.tunnels} idle tunnels (${tunnels}) | ${r(rssTunnels)} (peak so far ${peakIdle.toFixed(1)}) |`,
      `| server peak, after ${o.mib} MiB from all ${tunnels} tunnels at once | ${r(peak)} (${after.toFixed(1)} MiB a second after) |`,
      `| marginal per device | ${(((rssMany - rssOne) / (ids.length - 1)) * 1024).toFixed(0)} KiB |`,
      `| marginal per idle tunnel (client socket, session, mux connection) | ${(((rssTunnels - rssMany) / tunnels) * 1024).toFixed(1)} KiB |`,
    ];
  } finally {
    one.stop();
    many.stop();
  }
}

/** The most frequent entry (ties: the first). */
function mode(values: readonly string[]): string {
  const counts = new Map<string, number>();
  for (const v of values) counts.set(v.replace(/ \(.*\)$/, ''), (counts.get(v.replace(/ \(.*\)$/, '')) ?? 0) + 1);
  let best = '';
  let n = 0;
  for (const [v, c] of counts) if (c > n) [best, n] = [v, c];
  return values.length > 1 ? `${best} (${n}/${values.length} rounds)` : (values[0] ?? '');
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const load0 = loadAverage();
  if (o.memory) {
    const memory = await measureMemory(o);
    process.stdout.write([
      `# ceiling memory ${new Date().toISOString()}`,
      '',
      `Machine: ${machineDescription()}. Load average: ${load0} at start, ${loadAverage()} at the end. Server node flags: ${process.env['CEILING_NODE_ARGS'] ?? '(none)'}.`,
      `Server process = DeviceRegistry + MuxProvider + MuxdServer (Unix socket) + lean phones (bench/lib/lean-phone.ts); RSS (VmRSS) a second after each step, ratio to the bare node's peak measured in the same run. Host window ${o.windowKiB} KiB per connection.`,
      '',
      '| state | RSS (× bare node) |',
      '| --- | --- |',
      ...memory,
      '',
    ].join('\n'));
    return;
  }
  const rows = new Map<string, Row>();
  for (const phone of o.phones) await measurePhone(o, phone, rows);
  const lines = [
    `# ceiling ${new Date().toISOString()}`,
    '',
    `Machine: ${machineDescription()}. Load average: ${load0} at start, ${loadAverage()} at the end.`,
    `${o.rounds} rounds of ${o.mib} MiB per row (the fan-in measured after the first 2 windows per tunnel have arrived), host window ${o.windowKiB} KiB per connection. Server process = DeviceRegistry + MuxProvider + MuxdServer (Unix socket) + the phones; clients in this process.`,
    'Phones: "emulator" = src/emulator over MemoryTransportPair (its CPU is inside "server" and cannot be told apart); "lean phone" = bench/lib/lean-phone.ts (same protocol, timed on the spot): daemon = server − phone.',
    '',
    '| row | GB/s: median (min–max) | server CPU s/GB | daemon CPU s/GB (GB/s per core) | client CPU s/GB | bound by |',
    '| --- | --- | --- | --- | --- | --- |',
    ...[...rows].map(([name, row]) => {
      if (row.gbps.length === 0) return `| ${name} | ${row.bound.join(', ')} | | | | |`;
      const daemon = row.daemonSPerGB.filter((v) => !Number.isNaN(v));
      const perCore = daemon.length === 0 ? '' : `${medianSpread(daemon, 2)} (${(1 / median(daemon)).toFixed(2)})`;
      return `| ${name} | ${medianSpread(row.gbps, 3)} | ${medianSpread(row.serverSPerGB, 2)} | ${perCore || 'n/a (emulator inside)'} | ${medianSpread(row.clientSPerGB, 2)} | ${mode(row.bound)} |`;
    }),
    '',
    '"bound by": a process at ≥ 85 % of a core, else "machine" when both cores were ≥ 90 % busy, else latency (bench/lib/measure.ts boundBy).',
    '',
  ];
  process.stdout.write(lines.join('\n'));
}

if (process.argv[2] === '--serve') {
  const phone = process.argv[6] === 'lean' ? 'lean' : 'emulator';
  void serve(process.argv[3] ?? '', Number(process.argv[4] ?? 1), Number(process.argv[5] ?? TX_WINDOW), phone);
} else {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`ceiling failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
