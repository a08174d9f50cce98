/**
 * Starting what a USB bench stack is made of: a umockdev testbed, the bench's device bridge, and
 * a daemon (ours or Debian's usbmuxd 1.1.1) under the testbed's preload.
 *
 * The starters are test/support/usb-testbed.ts's (it finds the repository from package.json, so
 * it works compiled into dist-bench/ too); this module only picks the bench's settings:
 * - daemons run without -v: the bench measures the data path, not logging;
 * - both daemons run with -p (no preflight): the bench compares the mux data path, and the
 *   emulated phone would otherwise be paired (RSA keys, TLS) by each daemon in the first second;
 * - environment overrides for A/B runs (below).
 *
 * Everything started is killed (and its temp dirs removed) when the bench process exits.
 */
import { join } from 'node:path';
import type { RunningDaemon } from '../../test/support/daemon.js';
import { REPO_ROOT, startEmulatorBridge, startOurUsbDaemon, startReferenceUsbDaemon, startUsbTestbed } from '../../test/support/usb-testbed.js';
import type { UsbTestbed } from '../../test/support/usb-testbed.js';
import type { PhoneName } from './phones.js';

export { REPO_ROOT };
export const BENCH_OUT = join(REPO_ROOT, 'dist-bench', 'bench');
/** `MUXD_BENCH_TESTBED_DIR`: another copy of test/usb-emulation (e.g. a committed snapshot). */
const TESTBED_DIR = process.env['MUXD_BENCH_TESTBED_DIR'];
/** `MUXD_BENCH_DAEMON=<path to main.js>`: bench another build of our daemon (A/B of a change). */
const OUR_DAEMON = process.env['MUXD_BENCH_DAEMON'];
const DAEMON_READY_MS = 15_000;

export interface Proc {
  readonly pid: number;
  logs(): string;
  stop(): Promise<void>;
}

export type Testbed = UsbTestbed;
export type Daemon = RunningDaemon;

export function startTestbed(extraArgs: readonly string[] = []): Promise<Testbed> {
  return startUsbTestbed({ extraArgs, ...(TESTBED_DIR === undefined ? {} : { script: join(TESTBED_DIR, 'testbed.py') }) });
}

/** The bench's emulated iPhone on the testbed's device socket; resolves once the testbed sees it. */
export function startBridge(testbed: Testbed, phone: PhoneName = 'default'): Promise<Proc> {
  return startEmulatorBridge(testbed, { entry: join(BENCH_OUT, 'usb-bridge.js'), extraArgs: ['--phone', phone] });
}

/**
 * `node dist/main.js -S <tmp>/usbmuxd.sock -P NONE -C <tmp>/config -f -p` under the testbed's preload;
 * `entry`: another build's main.js (default: MUXD_BENCH_DAEMON, else this checkout's dist/main.js).
 */
export function startOurDaemon(
  env: Readonly<Record<string, string>>,
  extraArgs: readonly string[] = [],
  entry: string | undefined = OUR_DAEMON,
  // MUXD_BENCH_NODE_ARGS: node flags for our daemon, e.g. "--cpu-prof --cpu-prof-dir=/tmp/p"
  nodeArgs: string = process.env['MUXD_BENCH_NODE_ARGS'] ?? '',
): Promise<Daemon> {
  return startOurUsbDaemon(env, {
    ...(entry === undefined ? {} : { entry }),
    nodeArgs: nodeArgs.split(' ').filter((a) => a !== ''),
    // MUXD_BENCH_NO_FOREGROUND=1: without -f (log base WARNING: no per-client info lines, no peer lookup)
    foreground: process.env['MUXD_BENCH_NO_FOREGROUND'] !== '1',
    verbose: false,
    preflight: false,
    extraArgs,
    readyTimeoutMs: DAEMON_READY_MS,
  });
}

/** Debian's usbmuxd -f -p in a private mount namespace; the spawned pid is usbmuxd itself. */
export function startReferenceDaemon(env: Readonly<Record<string, string>>): Promise<Daemon> {
  return startReferenceUsbDaemon(env, { verbose: false, readyTimeoutMs: DAEMON_READY_MS });
}
