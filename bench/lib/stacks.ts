/**
 * Starting what a USB bench stack is made of: a umockdev testbed, the bench's device bridge, and
 * a daemon (ours or Debian's usbmuxd 1.1.1) under the testbed's preload.
 *
 * test/support/usb-testbed.ts does the same for the test suite, but it finds the repository from
 * its own location, which is wrong once compiled into dist-bench/; these helpers find it from
 * dist-bench/bench/lib/ and reuse only the location-free parts (control command, socket wait).
 * Daemons run without -v: the bench measures the data path, not logging.
 *
 * Everything started is killed when the bench process exits, whatever happens.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitUntilAccepting } from '../../test/support/daemon.js';
import { SYSTEM_PYTHON, testbedCommand } from '../../test/support/usb-testbed.js';
import type { TestbedStats } from '../../test/support/usb-testbed.js';

/** dist-bench/bench/lib/ → the repository root (also right for bench/lib/ under tsx). */
function findRepoRoot(): string {
  const here = fileURLToPath(new URL('.', import.meta.url));
  for (const up of ['../../../', '../../']) {
    const candidate = join(here, up);
    if (existsSync(join(candidate, 'package.json')) && existsSync(join(candidate, 'test', 'usb-emulation'))) return candidate;
  }
  throw new Error(`cannot find the repository root from ${here}`);
}

export const REPO_ROOT = findRepoRoot();
export const BENCH_OUT = join(REPO_ROOT, 'dist-bench', 'bench');
/** `MUXD_BENCH_TESTBED_DIR`: another copy of test/usb-emulation (e.g. a committed snapshot). */
const TESTBED_SCRIPT = join(process.env['MUXD_BENCH_TESTBED_DIR'] ?? join(REPO_ROOT, 'test', 'usb-emulation'), 'testbed.py');
/** `MUXD_BENCH_DAEMON=<path to main.js>`: bench another build of our daemon (A/B of a change). */
const OUR_DAEMON = process.env['MUXD_BENCH_DAEMON'] ?? join(REPO_ROOT, 'dist', 'main.js');
const REFERENCE_DAEMON = '/usr/sbin/usbmuxd';

const live = new Set<ChildProcess>();
const tempDirs = new Set<string>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

function exited(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => { resolve(false); }, ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

async function terminate(child: ChildProcess): Promise<void> {
  child.kill('SIGTERM');
  if (!(await exited(child, 3000))) {
    child.kill('SIGKILL');
    await exited(child, 3000);
  }
  live.delete(child);
}

function track(child: ChildProcess): { logs: () => string } {
  live.add(child);
  const chunks: string[] = [];
  child.stdout?.setEncoding('utf8').on('data', (s: string) => chunks.push(s));
  child.stderr?.setEncoding('utf8').on('data', (s: string) => chunks.push(s));
  return { logs: () => chunks.join('') };
}

export interface Proc {
  readonly pid: number;
  logs(): string;
  stop(): Promise<void>;
}

export interface Testbed extends Proc {
  readonly devSock: string;
  readonly env: Readonly<Record<string, string>>;
  stats(): Promise<TestbedStats>;
}

interface Ready {
  root: string;
  stateDir: string;
  devSock: string;
  ctlSock: string;
  env: Record<string, string>;
}

export async function startTestbed(extraArgs: readonly string[] = []): Promise<Testbed> {
  const child = spawn(SYSTEM_PYTHON, [TESTBED_SCRIPT, '--exit-with-parent', ...extraArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  let out = '';
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const ready = await new Promise<Ready>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`testbed not READY:\n${err}`)); }, 20_000);
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const line = /^READY (.*)$/m.exec(out);
      if (line?.[1] === undefined) return;
      clearTimeout(timer);
      resolve(JSON.parse(line[1]) as Ready);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`testbed exited (${String(code)}) before READY:\n${err}`));
    });
  });
  tempDirs.add(ready.root);
  tempDirs.add(ready.stateDir);
  return {
    pid: child.pid ?? -1,
    devSock: ready.devSock,
    env: ready.env,
    logs: () => err,
    stats: async () => (await testbedCommand(ready.ctlSock, 'stats')) as TestbedStats,
    async stop() {
      await terminate(child);
      for (const dir of [ready.root, ready.stateDir]) {
        rmSync(dir, { recursive: true, force: true });
        tempDirs.delete(dir);
      }
    },
  };
}

/** The bench's emulated iPhone on the testbed's device socket; resolves once the testbed sees it. */
export async function startBridge(testbed: Testbed): Promise<Proc> {
  const entry = join(BENCH_OUT, 'usb-bridge.js');
  const child = spawn(process.execPath, [entry, '--socket', testbed.devSock], { stdio: ['ignore', 'pipe', 'pipe'] });
  const { logs } = track(child);
  const deadline = Date.now() + 15_000;
  while (!(await testbed.stats()).emulatorConnected) {
    if (child.exitCode !== null) throw new Error(`bridge exited:\n${logs()}`);
    if (Date.now() > deadline) throw new Error(`bridge did not connect:\n${logs()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { pid: child.pid ?? -1, logs, stop: () => terminate(child) };
}

export interface Daemon extends Proc {
  readonly socketPath: string;
}

async function superviseDaemon(child: ChildProcess, socketPath: string, cleanup: () => void): Promise<Daemon> {
  const { logs } = track(child);
  let exitInfo: string | undefined;
  child.once('exit', (code, signal) => {
    exitInfo = signal === null ? `exit code ${String(code)}` : `signal ${signal}`;
  });
  const stop = async (): Promise<void> => {
    await terminate(child);
    cleanup();
  };
  try {
    await waitUntilAccepting(socketPath, 15_000, () => exitInfo);
  } catch (err) {
    await stop();
    throw new Error(`daemon did not come up: ${err instanceof Error ? err.message : String(err)}\n${logs()}`);
  }
  return { pid: child.pid ?? -1, socketPath, logs, stop };
}

/** `node dist/main.js -f -S <tmp>/usbmuxd.sock -P NONE -C <tmp>/config` under the testbed's preload. */
export function startOurDaemon(env: Readonly<Record<string, string>>, extraArgs: readonly string[] = []): Promise<Daemon> {
  if (!existsSync(OUR_DAEMON)) throw new Error(`${OUR_DAEMON} is missing: npm run build`);
  const dir = mkdtempSync(join(tmpdir(), 'muxd-bench-'));
  tempDirs.add(dir);
  const socketPath = join(dir, 'usbmuxd.sock');
  // MUXD_BENCH_NODE_ARGS: node flags for our daemon, e.g. "--cpu-prof --cpu-prof-dir=/tmp/p"
  const nodeArgs = (process.env['MUXD_BENCH_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '');
  // MUXD_BENCH_NO_FOREGROUND=1: without -f (log base WARNING: no per-client info lines, no peer lookup)
  const foreground = process.env['MUXD_BENCH_NO_FOREGROUND'] === '1' ? [] : ['-f'];
  const args = [...nodeArgs, OUR_DAEMON, ...foreground, '-S', socketPath, '-P', 'NONE', '-C', join(dir, 'config'), ...extraArgs];
  const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  return superviseDaemon(child, socketPath, () => {
    rmSync(dir, { recursive: true, force: true });
    tempDirs.delete(dir);
  });
}

/** Debian's usbmuxd -f -p in a private mount namespace; the spawned pid is usbmuxd itself. */
export function startReferenceDaemon(env: Readonly<Record<string, string>>): Promise<Daemon> {
  if (!existsSync(REFERENCE_DAEMON)) throw new Error(`${REFERENCE_DAEMON} is missing (scripts/setup-system.sh)`);
  if (!existsSync('/var/lib/lockdown')) mkdirSync('/var/lib/lockdown', { recursive: true, mode: 0o755 });
  const script = `mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /var/lib/lockdown && exec ${REFERENCE_DAEMON} -f -p`;
  const child = spawn('unshare', ['-m', 'sh', '-c', script], {
    env: { ...process.env, PATH: '/usr/sbin:/usr/bin:/sbin:/bin', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return superviseDaemon(child, `/proc/${String(child.pid)}/root/run/usbmuxd`, () => undefined);
}
