/**
 * Spawning daemons for the interop tier: our `dist/main.js` and Debian's usbmuxd 1.1.1.
 *
 * Both helpers return the same {@link RunningDaemon} shape, so a test can point the real
 * libimobiledevice clients (or a raw client) at either one and compare.
 *
 * - Ours: `node dist/main.js -f -v -S <tmp>/usbmuxd.sock -P NONE -C <tmp>/config --no-usb
 *   [--virtual-device[=UDID]]...`. Temp dirs live under os.tmpdir() and are removed by stop().
 * - Reference: usbmuxd 1.1.1 has its socket (/var/run/usbmuxd), pidfile and config dir
 *   (/var/lib/lockdown) hard-coded, so it runs in a private mount namespace with tmpfs over /run
 *   and /var/lib/lockdown (needs root; CI is root). `unshare` and `sh` both exec, so the pid we
 *   spawn IS the usbmuxd pid, and its namespace is reachable from outside through
 *   /proc/<pid>/root: the socket is /proc/<pid>/root/run/usbmuxd and the config dir
 *   /proc/<pid>/root/var/lib/lockdown. Nothing on the host is touched except creating the empty
 *   mountpoint /var/lib/lockdown if it is missing.
 *
 * Their output goes to a file, never a pipe (output-file.ts: a daemon whose pipe nobody reads
 * stops serving). "Ready" means the socket accepts a connection. A daemon that exits before that rejects the start
 * with its logs. stop() sends SIGTERM, waits, escalates to SIGKILL, and always cleans up.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import plist from 'plist';
import { OutputFile } from './output-file.js';
import { encodePlistRequest, oneShot } from './raw-client.js';

export interface RunningDaemon {
  /** Which implementation this is; tests use it to label differences. */
  readonly kind: 'ours' | 'reference';
  /** Unix socket path a client connects to (`USBMUXD_SOCKET_ADDRESS=UNIX:<socketPath>`). */
  readonly socketPath: string;
  /** Pid of the daemon process itself. */
  readonly pid: number;
  /** Where pair records and SystemConfiguration.plist are written. */
  readonly configDir: string;
  /** Everything the daemon wrote to stdout and stderr so far. */
  logs(): string;
  /** Terminate (SIGTERM, then SIGKILL after a grace period), wait for exit, remove temp dirs. Idempotent. */
  stop(): Promise<void>;
}

export interface OurDaemonOptions {
  /** One `--virtual-device` per entry; an empty string means the emulator's default UDID. */
  readonly virtualDevices?: readonly string[];
  /** Appended after the standard arguments. */
  readonly extraArgs?: readonly string[];
  /** Extra environment for the daemon process. */
  readonly env?: Readonly<Record<string, string>>;
  /** How long to wait for the socket to accept. Default 15 s. */
  readonly readyTimeoutMs?: number;
}

/** Repository root, found from this file's location (test/support/). */
export const repoRoot: string = fileURLToPath(new URL('../../', import.meta.url));
/** The built daemon entry point. */
export const ourDaemonEntry: string = join(repoRoot, 'dist', 'main.js');
/** Debian's usbmuxd. */
export const referenceDaemonBinary = '/usr/sbin/usbmuxd';

const STOP_GRACE_MS = 3000;
const POLL_MS = 25;

/** Every daemon not yet stopped, so a crashed test run still kills them on exit. */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

export async function startOurDaemon(options: OurDaemonOptions = {}): Promise<RunningDaemon> {
  if (!existsSync(ourDaemonEntry)) {
    throw new Error(`${ourDaemonEntry} does not exist: run \`npm run build\` first (npm run test:interop does)`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'muxd-interop-'));
  const socketPath = join(dir, 'usbmuxd.sock');
  const configDir = join(dir, 'config');
  const args = [ourDaemonEntry, '-f', '-v', '-S', socketPath, '-P', 'NONE', '-C', configDir, '--no-usb'];
  for (const udid of options.virtualDevices ?? []) {
    args.push(udid === '' ? '--virtual-device' : `--virtual-device=${udid}`);
  }
  args.push(...(options.extraArgs ?? []));
  const log = new OutputFile(dir, 'daemon.log');
  const child = spawn(process.execPath, args, {
    env: { ...process.env, ...options.env },
    stdio: ['ignore', log.fd, log.fd],
  });
  log.detach();
  const readyTimeoutMs = options.readyTimeoutMs ?? 15_000;
  const daemon = await supervise(child, {
    kind: 'ours',
    socketPath,
    configDir,
    readyTimeoutMs,
    log,
    cleanup: () => {
      rmSync(dir, { recursive: true, force: true });
    },
  });
  // The socket accepts before the virtual devices finish their version exchange (as with real
  // USB devices); tests expect them listed, so "ready" also means ListDevices shows them all.
  const wanted = options.virtualDevices?.length ?? 0;
  if (wanted > 0) {
    try {
      await waitForDeviceCount(socketPath, wanted, readyTimeoutMs);
    } catch (err) {
      await daemon.stop();
      const why = err instanceof Error ? err.message : String(err);
      throw new Error(`${why}\n--- daemon log ---\n${daemon.logs()}`);
    }
  }
  return daemon;
}

/** Polls ListDevices until at least `count` devices are listed. */
export async function waitForDeviceCount(socketPath: string, count: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let seen = -1;
  for (;;) {
    const reply = await oneShot(socketPath, encodePlistRequest({ MessageType: 'ListDevices', ProgName: 'interop-harness' }, 1));
    if (reply.kind === 'frame') {
      const body = plist.parse(reply.frame.body.toString('utf8'));
      const list = typeof body === 'object' && !Array.isArray(body) && !Buffer.isBuffer(body) && !(body instanceof Date) ? (body as plist.PlistObject)['DeviceList'] : undefined;
      seen = Array.isArray(list) ? list.length : -1;
      if (seen >= count) return;
    }
    if (Date.now() > deadline) throw new Error(`ListDevices showed ${seen} device(s), not ${count}, within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

/** The DeviceID of the first device ListDevices lists (throws if none is). */
export async function firstListedDeviceId(socketPath: string): Promise<number> {
  const reply = await oneShot(socketPath, encodePlistRequest({ MessageType: 'ListDevices', ProgName: 'interop-harness' }, 1), 3000);
  if (reply.kind !== 'frame') throw new Error(`ListDevices: ${reply.kind}`);
  const list = (plist.parse(reply.frame.body.toString('utf8')) as { DeviceList?: { DeviceID?: number }[] }).DeviceList;
  const id = list?.[0]?.DeviceID;
  if (id === undefined) throw new Error('no device listed');
  return id;
}

export interface ReferenceDaemonOptions {
  /** How long to wait for the socket to accept. Default 10 s. */
  readonly readyTimeoutMs?: number;
}

/** Debian's usbmuxd 1.1.1, foreground, verbose, no preflight, in a private mount namespace. */
export async function startReferenceDaemon(options: ReferenceDaemonOptions = {}): Promise<RunningDaemon> {
  if (!existsSync(referenceDaemonBinary)) {
    throw new Error(`${referenceDaemonBinary} is missing: install Debian's usbmuxd (scripts/setup-system.sh)`);
  }
  for (const mountpoint of ['/run', '/var/lib/lockdown']) {
    // Only an empty mountpoint is needed; the tmpfs on top is private to the namespace.
    if (!existsSync(mountpoint)) mkdirSync(mountpoint, { recursive: true, mode: 0o755 });
  }
  const script = 'mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /var/lib/lockdown && exec usbmuxd -f -v -p';
  const logDir = mkdtempSync(join(tmpdir(), 'muxd-interop-ref-log-'));
  const log = new OutputFile(logDir, 'daemon.log');
  const child = spawn('unshare', ['-m', 'sh', '-c', script], {
    env: { ...process.env, PATH: `/usr/sbin:/usr/bin:/sbin:/bin` },
    stdio: ['ignore', log.fd, log.fd],
  });
  log.detach();
  const pid = child.pid;
  if (pid === undefined) {
    rmSync(logDir, { recursive: true, force: true });
    throw new Error('could not spawn unshare');
  }
  const root = `/proc/${pid}/root`;
  return supervise(child, {
    kind: 'reference',
    socketPath: `${root}/run/usbmuxd`,
    configDir: `${root}/var/lib/lockdown`,
    readyTimeoutMs: options.readyTimeoutMs ?? 10_000,
    log,
    // The tmpfs mounts vanish with the namespace when the process exits.
    cleanup: () => {
      rmSync(logDir, { recursive: true, force: true });
    },
  });
}

interface SuperviseOptions {
  readonly kind: RunningDaemon['kind'];
  readonly socketPath: string;
  readonly configDir: string;
  readonly readyTimeoutMs: number;
  readonly log: OutputFile;
  readonly cleanup: () => void;
}

async function supervise(child: ChildProcess, opts: SuperviseOptions): Promise<RunningDaemon> {
  const pid = child.pid;
  if (pid === undefined) {
    opts.log.keep();
    opts.cleanup();
    throw new Error(`could not spawn the ${opts.kind} daemon`);
  }
  live.add(child);
  const logs = (): string => opts.log.text();

  let exitInfo: string | undefined;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exitInfo = signal === null ? `exit code ${String(code)}` : `signal ${signal}`;
      live.delete(child);
      resolve();
    });
  });

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (exitInfo === undefined) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
        await exited;
        clearTimeout(timer);
      }
      opts.log.keep();
      opts.cleanup();
    })();
    return stopping;
  };

  try {
    await waitUntilAccepting(opts.socketPath, opts.readyTimeoutMs, () => exitInfo);
  } catch (err) {
    await stop();
    const why = err instanceof Error ? err.message : String(err);
    throw new Error(`${opts.kind} daemon did not come up: ${why}\n--- daemon log ---\n${logs()}`);
  }
  return { kind: opts.kind, socketPath: opts.socketPath, pid, configDir: opts.configDir, logs, stop };
}

/** Resolves once a Unix-socket connect to `path` succeeds; rejects on timeout or early exit. */
export async function waitUntilAccepting(path: string, timeoutMs: number, exitedWith: () => string | undefined = () => undefined): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const exited = exitedWith();
    if (exited !== undefined) throw new Error(`daemon exited early (${exited})`);
    if (await accepts(path)) return;
    if (Date.now() > deadline) throw new Error(`socket ${path} did not accept within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

function accepts(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(path);
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
