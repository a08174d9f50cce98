/**
 * Start-up (issue 17 item 4): how long from exec until a daemon listens, and until a client that
 * arrives at once (a udev- or socket-started daemon's first client) has its answer, side by side
 * with a bare `node -e ''` and with Debian's usbmuxd 1.1.1, in one run.
 *
 *   npm run bench:startup -- [--rounds 10] [--daemon <main.js>] [--base <other main.js>] [--no-save]
 *
 * Rows, each started fresh `--rounds` times (the order rotates per round, so all see the same load):
 *   node -e ''                 exec → exit, and its peak RSS
 *   ours, no USB, no Wi-Fi     exec → socket accepts; RSS one second later
 *   ours (USB on, Wi-Fi on)    the same with the defaults (under a umockdev testbed: USB is on)
 *   ours --no-network          the same without Wi-Fi devices (no mDNS socket)
 *   … with a phone attached    exec → the first ListDevices answered, and → the first that lists the
 *                              phone (USB open, VERSION exchanged), a client polling from exec on
 *   usbmuxd 1.1.1              the same two, in its private mount namespace
 * Ours runs `-f -p -S <tmp> -P NONE -C <tmp>` (-p: no pairing, as in the USB bench); the client
 * retries connect() every 2 ms from exec on. The table goes to bench/results/<date>-startup.md.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, startBridge, startTestbed } from './lib/stacks.js';
import type { Proc, Testbed } from './lib/stacks.js';
import { loadAverage, machineDescription, medianSpread, peakRssMiB } from './lib/measure.js';
import { MuxdClient } from '../test/support/muxd-client.js';
import { referenceDaemonBinary } from '../test/support/daemon.js';

const OUR_ENTRY = join(REPO_ROOT, 'dist', 'main.js');
const POLL_MS = 2;
const TIMEOUT_MS = 20_000;

interface Options {
  rounds: number;
  save: boolean;
  daemon: string;
  base: string | undefined;
}

function parseOptions(argv: readonly string[]): Options {
  const o: Options = { rounds: 10, save: true, daemon: process.env['MUXD_BENCH_DAEMON'] ?? OUR_ENTRY, base: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === '--rounds' && v !== undefined && Number(v) > 0) {
      o.rounds = Number(v);
      i++;
    } else if (a === '--daemon' && v !== undefined) {
      o.daemon = v;
      i++;
    } else if (a === '--base' && v !== undefined) {
      o.base = v;
      i++;
    } else if (a === '--no-save') o.save = false;
    else throw new Error(`unknown option ${String(a)}`);
  }
  return o;
}

const now = (): number => Number(process.hrtime.bigint()) / 1e6;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Resolves when `path` accepts a connection (the socket closed again at once). */
async function whenAccepting(path: string, child: ChildProcess, deadline: number): Promise<void> {
  for (;;) {
    if (child.exitCode !== null) throw new Error(`daemon exited (${child.exitCode}) before listening`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(path);
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => { resolve(false); });
    });
    if (ok) return;
    if (now() > deadline) throw new Error(`${path} did not accept within ${TIMEOUT_MS} ms`);
    await sleep(POLL_MS);
  }
}

/** Devices in a ListDevices answer; undefined when the request failed (daemon not up yet). */
async function listDevices(path: string): Promise<number | undefined> {
  let client: MuxdClient | undefined;
  try {
    client = await MuxdClient.connect(path);
    const { reply } = await client.request({ MessageType: 'ListDevices' });
    if (reply.kind !== 'plist') return undefined;
    const list = reply.dict['DeviceList'];
    return Array.isArray(list) ? list.length : 0;
  } catch {
    return undefined;
  } finally {
    await client?.close().catch(() => undefined);
  }
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

interface Launch {
  readonly child: ChildProcess;
  readonly socketPath: string;
  readonly t0: number;
  cleanup(): void;
}

function launchOurs(entry: string, args: readonly string[], env: Readonly<Record<string, string>>): Launch {
  const dir = mkdtempSync(join(tmpdir(), 'muxd-startup-'));
  const socketPath = join(dir, 'usbmuxd.sock');
  const t0 = now();
  const child = spawn(process.execPath, [entry, '-f', '-p', '-S', socketPath, '-P', 'NONE', '-C', join(dir, 'config'), ...args], {
    env: { ...process.env, ...env },
    stdio: 'ignore',
  });
  return { child, socketPath, t0, cleanup: () => { rmSync(dir, { recursive: true, force: true }); } };
}

function launchReference(env: Readonly<Record<string, string>>): Launch {
  const script = `mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /var/lib/lockdown && exec ${referenceDaemonBinary} -f -p`;
  const childEnv: Record<string, string | undefined> = { ...process.env, PATH: '/usr/sbin:/usr/bin:/sbin:/bin', ...env };
  delete childEnv['USBMUXD_SOCKET_ADDRESS'];
  mkdirSync('/var/lib/lockdown', { recursive: true, mode: 0o755 });
  const t0 = now();
  const child = spawn('unshare', ['-m', 'sh', '-c', script], { env: childEnv, stdio: 'ignore' });
  return { child, socketPath: `/proc/${String(child.pid)}/root/run/usbmuxd`, t0, cleanup: () => undefined };
}

type Sample = Record<string, number>;

/** exec → accepting, and the RSS one second after (the daemon idle). */
async function timeListen(launch: Launch): Promise<Sample> {
  try {
    await whenAccepting(launch.socketPath, launch.child, launch.t0 + TIMEOUT_MS);
    const listenMs = now() - launch.t0;
    await sleep(1000);
    return { listenMs, rssMiB: peakRssMiB(launch.child.pid ?? -1) };
  } finally {
    await stop(launch.child);
    launch.cleanup();
  }
}

/** A client polling from exec on: the first ListDevices answered, and the first listing the phone. */
async function timeFirstClient(launch: Launch): Promise<Sample> {
  try {
    const deadline = launch.t0 + TIMEOUT_MS;
    let answeredMs: number | undefined;
    for (;;) {
      if (launch.child.exitCode !== null) throw new Error(`daemon exited (${launch.child.exitCode})`);
      const count = await listDevices(launch.socketPath);
      if (count !== undefined) answeredMs ??= now() - launch.t0;
      if (count !== undefined && count > 0) return { answeredMs: answeredMs ?? Number.NaN, deviceMs: now() - launch.t0 };
      if (now() > deadline) throw new Error('the phone was not listed in time');
      await sleep(POLL_MS);
    }
  } finally {
    await stop(launch.child);
    launch.cleanup();
  }
}

async function bareNode(): Promise<Sample> {
  const t0 = now();
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await new Promise((r) => child.once('exit', r));
  const exitMs = now() - t0;
  const held = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 1500)'], { stdio: 'ignore' });
  await sleep(1000);
  const rssMiB = peakRssMiB(held.pid ?? -1);
  await stop(held);
  return { exitMs, rssMiB };
}

interface Row {
  readonly name: string;
  readonly run: () => Promise<Sample>;
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const started = new Date();
  const loadBefore = loadAverage();
  // One testbed and phone for the rows with a device; each daemon is a new "plug-in" to it.
  let testbed: Testbed | undefined;
  let bridge: Proc | undefined;
  const samples = new Map<string, Sample[]>();
  try {
    testbed = await startTestbed(['--bulk-sg']);
    bridge = await startBridge(testbed);
    const env = testbed.env;
    const builds: [string, string][] = [['ours', o.daemon]];
    if (o.base !== undefined) builds.push(['base', o.base]);
    const rows: Row[] = [{ name: "node -e ''", run: bareNode }];
    for (const [label, entry] of builds) {
      rows.push(
        { name: `${label}, --no-usb --no-network`, run: () => timeListen(launchOurs(entry, ['--no-usb', '--no-network'], {})) },
        { name: `${label}, defaults (USB, Wi-Fi)`, run: () => timeListen(launchOurs(entry, [], env)) },
        { name: `${label}, --no-network`, run: () => timeListen(launchOurs(entry, ['--no-network'], env)) },
        { name: `${label}, first client, phone attached`, run: () => timeFirstClient(launchOurs(entry, [], env)) },
      );
    }
    rows.push(
      { name: 'usbmuxd 1.1.1', run: () => timeListen(launchReference(env)) },
      { name: 'usbmuxd 1.1.1, first client, phone attached', run: () => timeFirstClient(launchReference(env)) },
    );
    for (let round = 0; round < o.rounds; round++) {
      const order = rows.map((_r, i) => rows[(i + round) % rows.length]).filter((r): r is Row => r !== undefined);
      for (const row of order) {
        const sample = await row.run();
        const list = samples.get(row.name) ?? [];
        list.push(sample);
        samples.set(row.name, list);
        process.stderr.write(`  round ${round + 1} ${row.name}: ${JSON.stringify(sample, (_k, v: unknown) => (typeof v === 'number' ? Number(v.toFixed(1)) : v))}\n`);
      }
    }
    const cell = (name: string, field: string): string => medianSpread((samples.get(name) ?? []).map((s) => s[field] ?? Number.NaN), 0);
    const cell1 = (name: string, field: string): string => medianSpread((samples.get(name) ?? []).map((s) => s[field] ?? Number.NaN), 1);
    const lines = [
      '| process | exec → listening ms | exec → first ListDevices answered ms | exec → phone listed ms | exec → exit ms | RSS 1 s after start MiB |',
      '| --- | --- | --- | --- | --- | --- |',
      ...rows.map((r) => {
        const s = samples.get(r.name) ?? [];
        const has = (f: string): boolean => s.some((x) => x[f] !== undefined);
        return `| ${r.name} | ${has('listenMs') ? cell(r.name, 'listenMs') : ''} | ${has('answeredMs') ? cell(r.name, 'answeredMs') : ''} | ${has('deviceMs') ? cell(r.name, 'deviceMs') : ''} | ${has('exitMs') ? cell(r.name, 'exitMs') : ''} | ${has('rssMiB') ? cell1(r.name, 'rssMiB') : ''} |`;
      }),
    ];
    const report = [
      `# startup ${started.toISOString()}`,
      '',
      `Machine: ${machineDescription()}. Load average: ${loadBefore} at start, ${loadAverage()} at the end.`,
      `Command: \`node dist-bench/bench/startup.js ${process.argv.slice(2).join(' ')}\`; ${o.rounds} rounds, rows in rotating order; median (min–max).`,
      `Ours: \`${o.daemon}\`${o.base !== undefined ? `; base: \`${o.base}\`` : ''}, \`-f -p\`; USB rows under a umockdev testbed (bulk scatter-gather) with the bench's phone.`,
      '',
      lines.join('\n'),
      '',
    ].join('\n');
    process.stdout.write(`${report}\n`);
    if (o.save) {
      const dir = join(REPO_ROOT, 'bench', 'results');
      mkdirSync(dir, { recursive: true });
      const file = join(dir, `${started.toISOString().slice(0, 10)}-startup.md`);
      writeFileSync(file, report);
      process.stderr.write(`written to ${file}\n`);
    }
  } finally {
    await bridge?.stop();
    await testbed?.stop();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`startup failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
