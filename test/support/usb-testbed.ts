/**
 * Helpers for the usb tier: the umockdev testbed (test/usb-emulation/testbed.py, one emulated
 * iPhone per testbed) and the device emulator behind it (`node dist/emulator/bridge-cli.js`).
 *
 * Every program that must see the emulated bus (our daemon, Debian's usbmuxd) runs with
 * `testbed.env` (LD_PRELOAD=libumockdev-preload.so.0, UMOCKDEV_DIR=<root>). Each daemon gets its
 * own testbed: two daemons on one emulated device would steal each other's IN data.
 *
 * Cleanup: stop() is idempotent; everything still running when the test process exits is killed
 * and its temp dirs removed, and the testbed also exits by itself when its parent dies.
 *
 * The daemons, the bridge and the testbed write their logs into files, not pipes: a child whose
 * pipe nobody reads stops (output-file.ts says how).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { referenceDaemonBinary, waitForDeviceCount, waitUntilAccepting } from './daemon.js';
import { OutputFile } from './output-file.js';
import type { RunningDaemon } from './daemon.js';

const PACKAGE_NAME = 'usbmuxd-ts';

function isOurPackageJson(file: string): boolean {
  if (!existsSync(file)) return false;
  const parsed: unknown = JSON.parse(readFileSync(file, 'utf8'));
  return typeof parsed === 'object' && parsed !== null && 'name' in parsed && parsed.name === PACKAGE_NAME;
}

/**
 * The repository root: the nearest directory at or above `from` whose package.json is this
 * project's. Right from test/support/ (vitest, tsx) and from dist-bench/test/support/ (compiled).
 */
export function findRepoRoot(from: string = dirname(fileURLToPath(import.meta.url))): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (isOurPackageJson(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) throw new Error(`no package.json named ${PACKAGE_NAME} at or above ${from}`);
  }
}

export const REPO_ROOT = findRepoRoot();
/** Debian's python with gi; the pyenv python3 on PATH has no gi. */
export const SYSTEM_PYTHON = '/usr/bin/python3';
export const TESTBED_SCRIPT = join(REPO_ROOT, 'test', 'usb-emulation', 'testbed.py');
/** The emulator's standalone bridge (`MUXD_USB_BRIDGE` points at another build of it). */
export const BRIDGE_ENTRY = process.env['MUXD_USB_BRIDGE'] ?? join(REPO_ROOT, 'dist', 'emulator', 'bridge-cli.js');
/** Our built daemon. */
export const OUR_DAEMON_ENTRY = join(REPO_ROOT, 'dist', 'main.js');
/** The emulated iPhone's USB serial and the UDID hosts derive from it. */
export const TESTBED_USB_SERIAL = '00008030001A2B3C4D5E802E';
export const TESTBED_UDID = '00008030-001A2B3C4D5E802E';

/** `MUXD_HW=1`: run the usb suite against a real iPhone instead of the testbed. */
export function hardwareMode(): boolean {
  return process.env['MUXD_HW'] === '1';
}

export interface TestbedStats {
  readonly present: boolean;
  readonly configuration: number;
  readonly setConfiguration: readonly number[];
  readonly claimed: readonly number[];
  readonly urbsInFlight: number;
  readonly emulatorConnected: boolean;
  readonly outTransfers: number;
  readonly outBytes: number;
  readonly inTransfers: number;
  readonly inBytes: number;
  readonly getMode: number;
  readonly setMode: number;
  readonly faultsFired: number;
  readonly adds: number;
  readonly removes: number;
  readonly ioctls: Readonly<Record<string, number>>;
}

export interface TestbedOptions {
  /** Start with an empty bus (plug in later with add()). */
  readonly noDevice?: boolean;
  /** Plug in unconfigured (bConfigurationValue 0), as the udev rule leaves a device. */
  readonly unconfigured?: boolean;
  /** FIFO readiness for the device node (default true; false makes libusb busy-poll). */
  readonly fifoPoll?: boolean;
  readonly verbose?: boolean;
  /** Another testbed.py (default TESTBED_SCRIPT). */
  readonly script?: string;
  /** Appended to testbed.py's arguments (e.g. `--bulk-sg`). */
  readonly extraArgs?: readonly string[];
}

export interface UsbTestbed {
  readonly root: string;
  readonly devSock: string;
  readonly ctlSock: string;
  /** LD_PRELOAD and UMOCKDEV_DIR for programs that must see the emulated bus. */
  readonly env: Readonly<Record<string, string>>;
  readonly pid: number;
  add(options?: { readonly unconfigured?: boolean }): Promise<void>;
  /** Unplug: in-flight URBs complete with -ENODEV, then the remove uevent. */
  unplug(): Promise<void>;
  /** Fail the next bulk URB on the mux endpoint (stall = -EPIPE, error = -EPROTO). */
  inject(kind: 'stall' | 'error', direction: 'in' | 'out'): Promise<string>;
  stats(): Promise<TestbedStats>;
  logs(): string;
  stop(): Promise<void>;
}

interface Ready {
  readonly root: string;
  readonly stateDir: string;
  readonly devSock: string;
  readonly ctlSock: string;
  readonly env: Record<string, string>;
}

const READY_TIMEOUT_MS = 15_000;
const STOP_GRACE_MS = 3_000;

const live = new Map<ChildProcess, readonly string[]>();
process.once('exit', () => {
  for (const [child, dirs] of live) {
    child.kill('SIGKILL');
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }
});

function isReady(value: unknown): value is Ready {
  if (typeof value !== 'object' || value === null) return false;
  return ['root', 'stateDir', 'devSock', 'ctlSock'].every((k) => k in value && typeof (value as Record<string, unknown>)[k] === 'string');
}

/** Send one control command and return its result (rejects on `ok: false`). */
export function testbedCommand(ctlSock: string, command: string, timeoutMs = 10_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = connect(ctlSock);
    let text = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`testbed command "${command}" timed out`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${command}\n`));
    socket.on('data', (d: string) => (text += d));
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      try {
        const reply = JSON.parse(text) as { ok: boolean; result?: unknown; error?: string };
        if (reply.ok) resolve(reply.result);
        else reject(new Error(reply.error ?? `testbed command "${command}" failed`));
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  });
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
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
  if (!(await waitExit(child, STOP_GRACE_MS))) {
    child.kill('SIGKILL');
    await waitExit(child, STOP_GRACE_MS);
  }
}

export async function startUsbTestbed(options: TestbedOptions = {}): Promise<UsbTestbed> {
  const args = [options.script ?? TESTBED_SCRIPT, '--exit-with-parent'];
  if (options.noDevice === true) args.push('--no-device');
  if (options.unconfigured === true) args.push('--unconfigured');
  if (options.fifoPoll === false) args.push('--no-fifo-poll');
  if (options.verbose === true) args.push('-v');
  args.push(...(options.extraArgs ?? []));
  const logDir = mkdtempSync(join(tmpdir(), 'muxd-usbtb-log-'));
  const log = new OutputFile(logDir, 'testbed.log');
  // stdout stays a pipe: it carries the READY line, and nothing after it
  const child = spawn(SYSTEM_PYTHON, args, { stdio: ['ignore', 'pipe', log.fd] });
  log.detach();
  live.set(child, [logDir]);
  const stdout = child.stdout;
  if (stdout === null) throw new Error('testbed: no stdout pipe');
  let out = '';
  const ready = await new Promise<Ready>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`testbed not READY after ${READY_TIMEOUT_MS} ms:\n${log.text()}`)); }, READY_TIMEOUT_MS);
    stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const line = /^READY (.*)$/m.exec(out);
      if (!line?.[1]) return;
      clearTimeout(timer);
      const parsed: unknown = JSON.parse(line[1]);
      if (isReady(parsed)) resolve(parsed);
      else reject(new Error(`bad READY line: ${line[1]}`));
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`testbed exited (${String(code)}) before READY:\n${log.text()}`));
    });
  }).catch(async (err: unknown) => {
    await terminate(child);
    live.delete(child);
    rmSync(logDir, { recursive: true, force: true });
    throw err;
  });
  live.set(child, [ready.root, ready.stateDir, logDir]);
  const pid = child.pid ?? -1;
  let stopped: Promise<void> | undefined;
  const command = (c: string): Promise<unknown> => testbedCommand(ready.ctlSock, c);
  return {
    root: ready.root,
    devSock: ready.devSock,
    ctlSock: ready.ctlSock,
    env: ready.env,
    pid,
    async add(addOptions = {}) {
      await command(addOptions.unconfigured === true ? 'add unconfigured' : 'add');
    },
    async unplug() {
      await command('unplug');
    },
    async inject(kind, direction) {
      return String(await command(`${kind} ${direction}`));
    },
    async stats() {
      return (await command('stats')) as TestbedStats;
    },
    logs: () => log.text(),
    stop() {
      stopped ??= (async () => {
        await terminate(child);
        live.delete(child);
        log.keep();
        for (const dir of [ready.root, ready.stateDir, logDir]) rmSync(dir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}

export interface EmulatorBridge {
  readonly pid: number;
  logs(): string;
  stop(): Promise<void>;
}

export interface EmulatorBridgeOptions {
  readonly udid?: string;
  /** Another bridge program taking `--socket <path>` (default BRIDGE_ENTRY). */
  readonly entry?: string;
  /** `--state FILE`: the phone's identity kept across plugs (and shared with its Wi-Fi face). */
  readonly statePath?: string;
  /** Appended to the bridge's arguments. */
  readonly extraArgs?: readonly string[];
}

/** Start the device emulator on the testbed's device socket and wait until it is connected. */
export async function startEmulatorBridge(testbed: UsbTestbed, options: EmulatorBridgeOptions = {}): Promise<EmulatorBridge> {
  const entry = options.entry ?? BRIDGE_ENTRY;
  if (!existsSync(entry)) throw new Error(`${entry} does not exist: run \`npm run build\` first`);
  const args = [entry, '--socket', testbed.devSock];
  if (options.udid !== undefined) args.push('--udid', options.udid);
  if (options.statePath !== undefined) args.push('--state', options.statePath);
  args.push(...(options.extraArgs ?? []));
  const logDir = mkdtempSync(join(tmpdir(), 'muxd-bridge-log-'));
  const log = new OutputFile(logDir, 'bridge.log');
  const child = spawn(process.execPath, args, { stdio: ['ignore', log.fd, log.fd] });
  log.detach();
  live.set(child, [logDir]);
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if ((await testbed.stats()).emulatorConnected) break;
    if (child.exitCode !== null) throw new Error(`emulator bridge exited (${child.exitCode}):\n${log.text()}`);
    if (Date.now() > deadline) throw new Error(`emulator bridge did not connect:\n${log.text()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  let stopped: Promise<void> | undefined;
  return {
    pid: child.pid ?? -1,
    logs: () => log.text(),
    stop() {
      stopped ??= terminate(child).then(() => {
        live.delete(child);
        log.keep();
        rmSync(logDir, { recursive: true, force: true });
      });
      return stopped;
    },
  };
}

/** Poll `check` every 25 ms until it returns a value other than undefined, or throw after `ms`. */
export async function waitFor<T>(what: string, ms: number, check: () => T | undefined | Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** utime + stime of a process in clock ticks (/proc/<pid>/stat fields 14 and 15). */
export async function cpuTicks(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state); utime is field 14, stime field 15
  return Number(fields[11]) + Number(fields[12]);
}

export interface UsbDaemonOptions {
  /** Let the daemon pair with the phone on attach (preflight); default false: `-p`, no lockdownd traffic. */
  readonly preflight?: boolean;
  /** `-f` (default true): foreground, log base INFO. */
  readonly foreground?: boolean;
  /** `-v` (default true). */
  readonly verbose?: boolean;
  /** Appended after the standard arguments. */
  readonly extraArgs?: readonly string[];
  readonly readyTimeoutMs?: number;
}

export interface OurUsbDaemonOptions extends UsbDaemonOptions {
  /** Another build of our daemon's main.js (default OUR_DAEMON_ENTRY). */
  readonly entry?: string;
  /** Node flags before the entry point (e.g. `--cpu-prof`). */
  readonly nodeArgs?: readonly string[];
}

function daemonArgs(options: UsbDaemonOptions): string[] {
  const args: string[] = [];
  if (options.foreground !== false) args.push('-f');
  if (options.verbose !== false) args.push('-v');
  if (options.preflight !== true) args.push('-p');
  return [...args, ...(options.extraArgs ?? [])];
}

/**
 * Our daemon with USB on: `node dist/main.js -S <tmp>/usbmuxd.sock -P NONE -C <tmp>/config -f -v -p`
 * (see UsbDaemonOptions), under the testbed's preload (`env`; pass `{}` for real hardware).
 */
export async function startOurUsbDaemon(env: Readonly<Record<string, string>>, options: OurUsbDaemonOptions = {}): Promise<RunningDaemon> {
  const entry = options.entry ?? OUR_DAEMON_ENTRY;
  if (!existsSync(entry)) throw new Error(`${entry} does not exist: run \`npm run build\` first`);
  const dir = mkdtempSync(join(tmpdir(), 'muxd-usb-'));
  const socketPath = join(dir, 'usbmuxd.sock');
  const configDir = join(dir, 'config');
  const args = [...(options.nodeArgs ?? []), entry, '-S', socketPath, '-P', 'NONE', '-C', configDir, ...daemonArgs(options)];
  const log = new OutputFile(dir, 'daemon.log');
  const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', log.fd, log.fd] });
  log.detach();
  return superviseDaemon(child, 'ours', socketPath, configDir, options.readyTimeoutMs ?? 15_000, [dir], log);
}

/**
 * Debian's usbmuxd 1.1.1 (`-f -v -p`, see UsbDaemonOptions) in a private mount namespace (its socket path is fixed),
 * under the testbed's preload. Clients reach it at /proc/<pid>/root/run/usbmuxd.
 */
export async function startReferenceUsbDaemon(env: Readonly<Record<string, string>>, options: UsbDaemonOptions = {}): Promise<RunningDaemon> {
  if (!existsSync(referenceDaemonBinary)) throw new Error(`${referenceDaemonBinary} is missing (scripts/setup-system.sh)`);
  if (!existsSync('/var/lib/lockdown')) mkdirSync('/var/lib/lockdown', { recursive: true, mode: 0o755 });
  const script = `mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /var/lib/lockdown && exec ${referenceDaemonBinary} "$@"`;
  const childEnv: Record<string, string | undefined> = { ...process.env, PATH: '/usr/sbin:/usr/bin:/sbin:/bin', ...env };
  delete childEnv['USBMUXD_SOCKET_ADDRESS']; // its preflight (libimobiledevice) must reach its own socket
  const logDir = mkdtempSync(join(tmpdir(), 'muxd-usb-ref-log-'));
  const log = new OutputFile(logDir, 'daemon.log');
  const child = spawn('unshare', ['-m', 'sh', '-c', script, 'sh', ...daemonArgs(options)], {
    env: childEnv,
    stdio: ['ignore', log.fd, log.fd],
  });
  log.detach();
  const root = `/proc/${String(child.pid)}/root`;
  return superviseDaemon(child, 'reference', `${root}/run/usbmuxd`, `${root}/var/lib/lockdown`, options.readyTimeoutMs ?? 10_000, [logDir], log);
}

async function superviseDaemon(
  child: ChildProcess,
  kind: RunningDaemon['kind'],
  socketPath: string,
  configDir: string,
  readyTimeoutMs: number,
  tempDirs: readonly string[],
  log: OutputFile,
): Promise<RunningDaemon> {
  const cleanup = (): void => {
    log.keep();
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  };
  const pid = child.pid;
  if (pid === undefined) {
    cleanup();
    throw new Error(`could not spawn the ${kind} daemon`);
  }
  live.set(child, tempDirs);
  const logs = (): string => log.text();
  let exitInfo: string | undefined;
  child.once('exit', (code, signal) => {
    exitInfo = signal === null ? `exit code ${String(code)}` : `signal ${signal}`;
  });
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= terminate(child).then(() => {
      live.delete(child);
      cleanup();
    });
    return stopping;
  };
  try {
    await waitUntilAccepting(socketPath, readyTimeoutMs, () => exitInfo);
  } catch (err) {
    await stop();
    throw new Error(`${kind} daemon did not come up: ${err instanceof Error ? err.message : String(err)}\n--- log ---\n${logs()}`);
  }
  return { kind, socketPath, pid, configDir, logs, stop };
}

/** The usb tier's usual stack: a testbed, the emulated iPhone on it, and a daemon that lists it. */
export interface UsbStack {
  readonly testbed: UsbTestbed;
  readonly bridge: EmulatorBridge;
  readonly daemon: RunningDaemon;
}

/**
 * Start a UsbStack with our daemon or usbmuxd 1.1.1 and wait until the phone is listed (within
 * `listedWithinMs`). What started is stopped again if a later step fails.
 */
export async function startUsbStack(kind: 'ours' | 'reference', options: UsbDaemonOptions & { readonly listedWithinMs?: number } = {}): Promise<UsbStack> {
  const testbed = await startUsbTestbed();
  let bridge: EmulatorBridge | undefined;
  let daemon: RunningDaemon | undefined;
  try {
    bridge = await startEmulatorBridge(testbed);
    daemon = kind === 'ours' ? await startOurUsbDaemon(testbed.env, options) : await startReferenceUsbDaemon(testbed.env, options);
    await waitForDeviceCount(daemon.socketPath, 1, options.listedWithinMs ?? 15_000);
    return { testbed, bridge, daemon };
  } catch (err) {
    await stopUsbStack({ testbed, bridge, daemon });
    throw err;
  }
}

/** Stop the daemon, then the phone, then the testbed (whichever exist). */
export async function stopUsbStack(stack: { readonly testbed?: UsbTestbed | undefined; readonly bridge?: EmulatorBridge | undefined; readonly daemon?: RunningDaemon | undefined } | undefined): Promise<void> {
  await stack?.daemon?.stop();
  await stack?.bridge?.stop();
  await stack?.testbed?.stop();
}
