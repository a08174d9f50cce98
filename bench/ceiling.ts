/**
 * Our software ceiling: the daemon's own cost with the emulated iPhone in-process (no USB, no
 * umockdev). Run with `npm run bench:ceiling -- [--mib 512] [--devices 32] [--tunnels 16] [--rounds 3]
 * [--window KiB]` (--window: the receive window the host advertises, default TX_WINDOW = 128).
 *
 *   server process (forked, `--serve`): DeviceRegistry + MuxdServer on a real Unix socket +
 *     N × createVirtualDevice (MemoryTransportPair, USB-sized transfers: 16 KiB IN, OUT split at
 *     16 KiB like libusb), the phone's source (19) served from a precomputed pattern;
 *   this process: the clients (plist Connect, then raw tunnels, backpressure honoured, the source
 *     stream checked byte for byte).
 *
 * Measured over a real Unix socket, not mux-only: the socket costs are part of what a client sees
 * (`npm run bench:mux` has the mux engine alone). CPU per GB is the server process only — the mux,
 * the server, the socket writes AND the emulated phones — so it is an upper bound on the daemon's
 * share. Rows: one tunnel device→host and host→device, then devices × tunnels device→host at once.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SOURCE_PORT, createVirtualDevice } from '../src/emulator/index.js';
import type { VirtualDevice } from '../src/emulator/index.js';
import { silentLogger } from '../src/log.js';
import { DeviceRegistry, TX_WINDOW } from '../src/mux/index.js';
import { FilePairRecordStore } from '../src/pairrecords/index.js';
import { MuxdServer } from '../src/server/index.js';
import { CpuMeter, loadAverage, machineDescription, medianSpread, peakRssMiB } from './lib/measure.js';
import { deviceToHost, firstDeviceId, hostToDevice, openTunnels } from './lib/workloads.js';
import type { Target } from './lib/workloads.js';
import { MuxdClient } from '../test/support/muxd-client.js';

const MIB = 1024 * 1024;
const GB = 1e9;

type ToServer = { readonly type: 'discardBytes' };
type FromServer = { readonly type: 'ready' } | { readonly type: 'discardBytes'; readonly bytes: number };

// ---------------------------------------------------------------------------------- server side

async function serve(socketPath: string, devices: number, window: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'muxd-ceiling-'));
  const log = silentLogger();
  const registry = new DeviceRegistry({ log, window });
  const store = new FilePairRecordStore({ dir, log });
  await store.init();
  const server = new MuxdServer({ directory: registry, store, log });
  await server.listen({ kind: 'unix', path: socketPath });
  const phones: VirtualDevice[] = [];
  for (let i = 0; i < devices; i++) {
    const udid = `00008030-${(0x1a2b3c4d5e0000 + i).toString(16).toUpperCase().padStart(16, '0')}`;
    const dev = createVirtualDevice({ emulator: { udid } });
    registry.addDevice(dev.transport, dev.info);
    phones.push(dev);
  }
  process.on('message', (_m: ToServer) => {
    // the one request there is: bytes the phones' discard services swallowed
    const bytes = phones.reduce((sum, p) => sum + p.emulator.stats.discardBytes, 0);
    process.send?.({ type: 'discardBytes', bytes } satisfies FromServer);
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
  /** Receive window the host advertises per connection, KiB (DeviceRegistry `window`). */
  windowKiB: number;
}

function parseOptions(argv: readonly string[]): Options {
  const o: Options = { mib: 512, devices: 32, tunnels: 16, rounds: 3, windowKiB: TX_WINDOW / 1024 };
  for (let i = 0; i < argv.length; i += 2) {
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
  private waiting: ((bytes: number) => void)[] = [];
  private constructor(readonly child: ChildProcess, readonly socketPath: string, private readonly dir: string) {
    child.on('message', (m: FromServer) => {
      if (m.type === 'discardBytes') this.waiting.shift()?.(m.bytes);
    });
  }
  static async start(devices: number, windowKiB: number): Promise<Server> {
    const dir = mkdtempSync(join(tmpdir(), 'muxd-ceiling-sock-'));
    const socketPath = join(dir, 'muxd.sock');
    const entry = fileURLToPath(import.meta.url);
    const child = fork(entry, ['--serve', socketPath, String(devices), String(windowKiB * 1024)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      // CEILING_PROF=<dir>: a V8 CPU profile of the server process, for finding hot spots
      execArgv: process.env['CEILING_PROF'] === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${process.env['CEILING_PROF']}`],
    });
    const [msg] = (await once(child, 'message')) as [FromServer];
    if (msg.type !== 'ready') throw new Error('server did not start');
    return new Server(child, socketPath, dir);
  }
  get pid(): number {
    return this.child.pid ?? -1;
  }
  discardBytes(): Promise<number> {
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.child.send({ type: 'discardBytes' } satisfies ToServer);
    });
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

interface Row {
  readonly mbps: number[];
  readonly sPerGB: number[];
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

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const load0 = loadAverage();
  const rows = new Map<string, Row>();
  const fairness: number[] = [];
  const add = (name: string, bytes: number, seconds: number, cpu: number): void => {
    const row = rows.get(name) ?? { mbps: [], sPerGB: [] };
    row.mbps.push(bytes / seconds / 1e6);
    row.sPerGB.push((cpu / bytes) * GB);
    rows.set(name, row);
  };
  const single = await Server.start(1, o.windowKiB);
  const many = await Server.start(o.devices, o.windowKiB);
  try {
    const [id] = await single.deviceIds(1);
    if (id === undefined) throw new Error('no device');
    const target: Target = { socketPath: single.socketPath, deviceId: id };
    const ids = await many.deviceIds(o.devices);
    await firstDeviceId(many.socketPath);
    for (let r = 0; r < o.rounds; r++) {
      let m = new CpuMeter({ server: single.pid });
      const d = await deviceToHost(target, o.mib * MIB);
      add('1 tunnel device→host', d.bytes, d.seconds, m.read().cpu['server'] ?? Number.NaN);
      m = new CpuMeter({ server: single.pid });
      const h = await hostToDevice(target, o.mib * MIB, () => single.discardBytes());
      add('1 tunnel host→device', h.bytes, h.seconds, m.read().cpu['server'] ?? Number.NaN);
      const warmBytes = ids.length * o.tunnels * o.windowKiB * 1024 * 2;
      const f = await fanIn(many, ids, o.tunnels, o.mib * MIB, warmBytes, () => {
        m = new CpuMeter({ server: many.pid });
      });
      add(`${o.devices} devices × ${o.tunnels} tunnels device→host`, f.bytes, f.seconds, m.read().cpu['server'] ?? Number.NaN);
      fairness.push(f.fairness);
      process.stderr.write(`  round ${r + 1}: d2h ${(d.bytes / d.seconds / 1e6).toFixed(0)} MB/s, h2d ${(h.bytes / h.seconds / 1e6).toFixed(0)} MB/s, fan-in ${(f.bytes / f.seconds / 1e6).toFixed(0)} MB/s\n`);
    }
    const lines = [
      `# ceiling ${new Date().toISOString()}`,
      '',
      `Machine: ${machineDescription()}. Load average: ${load0} at start, ${loadAverage()} at the end.`,
      `${o.rounds} rounds of ${o.mib} MiB per row (the fan-in measured after the first 2 windows per tunnel have arrived), host window ${o.windowKiB} KiB per connection. Server process = DeviceRegistry + MuxdServer (Unix socket) + the emulated phones; clients in another process.`,
      '',
      '| row | GB/s: median (min–max) | server CPU s/GB | ',
      '| --- | --- | --- |',
      ...[...rows].map(([name, row]) => `| ${name} | ${medianSpread(row.mbps.map((v) => v / 1000), 3)} | ${medianSpread(row.sPerGB, 2)} |`),
      `| fan-in fairness (min/max bytes per tunnel) | ${medianSpread(fairness, 2)} | |`,
      `| server peak RSS MiB (1 device / ${o.devices} devices) | ${peakRssMiB(single.pid).toFixed(1)} / ${peakRssMiB(many.pid).toFixed(1)} | |`,
      '',
    ];
    process.stdout.write(lines.join('\n'));
  } finally {
    single.stop();
    many.stop();
  }
}

if (process.argv[2] === '--serve') {
  void serve(process.argv[3] ?? '', Number(process.argv[4] ?? 1), Number(process.argv[5] ?? TX_WINDOW));
} else {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`ceiling failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
