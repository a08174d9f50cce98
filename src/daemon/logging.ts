/**
 * The one root logger (pino), set up from the configuration.
 *
 * Level, like usbmuxd: the base is NOTICE in the foreground or with a logfile and WARNING when
 * run as a plain daemon; each `-v` raises it one step. pino has no NOTICE, so NOTICE maps to
 * 'info' and the ladder is  warn → info → debug → trace  (trace carries the per-packet lines
 * that usbmuxd prints at SPEW/FLOOD; they are guarded by `isLevelEnabled('trace')`).
 *
 * Output: JSON lines on stderr (journald picks them up under systemd), or appended to `-l FILE`.
 * Pretty lines when asked with `--log-format pretty`, or by default in the foreground on a TTY;
 * pino-pretty is an optional dependency loaded on demand, and without it we fall back to JSON
 * with one warning.
 *
 * A reader that stops reading stderr (a pipe into a stalled process, `usbmuxd -f | less` left
 * paused) must not stop the daemon: a blocking write would retry EAGAIN every 100 ms forever,
 * freezing every client and device (usbmuxd blocks in write() the same way). JSON on a pipe or a
 * socket (journald) or in a file goes through StderrWriter: one write(2) per line on the main
 * thread, the descriptor non-blocking, lines that do not fit a bounded backlog dropped and
 * counted, and a warning says how many once the reader is back. On a terminal it is written
 * asynchronously by sonic-boom into the same bound (a terminal is blocking: a write there could
 * stall the thread). At exit what is held is flushed synchronously for at most EXIT_FLUSH_MS, so
 * the fatal line of a crash still gets out. `-l FILE` is written synchronously (a file does not
 * stall; a full disk is reported, not waited for).
 */
import { fstatSync } from 'node:fs';
import { pino } from 'pino';
import type { DestinationStream, Level, Logger } from 'pino';
import type { DaemonConfig } from '../config.js';
import { StderrWriter } from './stderr-writer.js';

const LADDER: readonly Level[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'];
/** Bytes of log lines held for a slow stderr reader before lines are dropped. */
export const STDERR_BUFFER_BYTES = 1024 * 1024;
/** How long exit waits for a stalled stderr reader to take the last lines. */
const EXIT_FLUSH_MS = 1000;
/** sonic-boom's wait between EAGAIN retries. */
const EAGAIN_RETRY_MS = 100;
/** After lines were dropped, how soon the count is reported. */
const DROP_REPORT_MS = 1000;
const WARN_INDEX = 2;
const INFO_INDEX = 3;

/** usbmuxd's level rule, in pino's terms. */
export function levelFor(config: Pick<DaemonConfig, 'verbose' | 'foreground' | 'logfile'>): Level {
  const base = config.foreground || config.logfile !== undefined ? INFO_INDEX : WARN_INDEX;
  const index = Math.min(base + config.verbose, LADDER.length - 1);
  return LADDER[index] ?? 'trace';
}

/**
 * Whether `fd` can take StderrWriter's direct writes: a file never blocks, and a pipe or socket
 * is non-blocking once Node has opened it; a terminal is neither (it is shared with the shell).
 */
function takesDirectWrites(fd: number): boolean {
  try {
    const st = fstatSync(fd);
    return st.isFile() || st.isFIFO() || st.isSocket();
  } catch {
    return false;
  }
}

/** Whether the lines should be pretty-printed. */
export function wantsPretty(config: Pick<DaemonConfig, 'logFormat' | 'foreground' | 'logfile'>, stderrIsTty: boolean): boolean {
  if (config.logFormat !== undefined) return config.logFormat === 'pretty';
  return config.foreground && config.logfile === undefined && stderrIsTty;
}

export interface RootLogger {
  readonly log: Logger;
  /** Flush and close the destination (call at exit). */
  flush(): void;
}

export type PrettyFactory = (options: { destination: number | string; sync: boolean; colorize: boolean; append?: boolean; mkdir?: boolean }) => DestinationStream;

function isPrettyFactory(value: unknown): value is PrettyFactory {
  return typeof value === 'function';
}

async function loadPretty(): Promise<PrettyFactory | undefined> {
  try {
    const mod: unknown = await import('pino-pretty');
    const factory: unknown = typeof mod === 'object' && mod !== null && 'default' in mod ? mod.default : mod;
    return isPrettyFactory(factory) ? factory : undefined;
  } catch {
    return undefined;
  }
}

/** Build the root logger. Never throws for a missing pino-pretty; may throw if `-l FILE` cannot be opened. */
export async function createRootLogger(
  config: DaemonConfig,
  stderrIsTty: boolean = process.stderr.isTTY,
  loadPrettyFactory: () => Promise<PrettyFactory | undefined> = loadPretty,
): Promise<RootLogger> {
  const level = levelFor(config);
  const base = { name: 'usbmuxd' };
  let stream: DestinationStream | undefined;
  let prettyMissing = false;
  if (wantsPretty(config, stderrIsTty)) {
    const factory = await loadPrettyFactory();
    if (factory) {
      stream = config.logfile !== undefined
        ? factory({ destination: config.logfile, sync: true, colorize: false, append: true, mkdir: true })
        : factory({ destination: 2, sync: true, colorize: stderrIsTty });
    } else {
      prettyMissing = true;
    }
  }
  let sonic: ReturnType<typeof pino.destination> | undefined;
  let writer: StderrWriter | undefined;
  // Exit-time flushes retry EAGAIN for EXIT_FLUSH_MS at most; running, the async retries are timers.
  let exitRetries: number | undefined;
  const dropped = { lines: 0, timer: undefined as NodeJS.Timeout | undefined };
  const onDrop = (): void => {
    dropped.lines++;
    dropped.timer ??= setTimeout(reportDrops, DROP_REPORT_MS).unref();
  };
  if (!stream) {
    if (config.logfile !== undefined) {
      sonic = pino.destination({ dest: config.logfile, append: true, mkdir: true, sync: true });
    } else if (takesDirectWrites(2)) {
      // Opening process.stderr makes a pipe or socket non-blocking (libuv), which StderrWriter
      // needs (a file never blocks); Node's own warnings written there must not crash the daemon
      // when the reader is gone.
      process.stderr.on('error', () => undefined);
      writer = new StderrWriter({ fd: 2, maxQueuedBytes: STDERR_BUFFER_BYTES, onDrop });
    } else {
      sonic = pino.destination({
        fd: 2,
        sync: false,
        maxLength: STDERR_BUFFER_BYTES,
        retryEAGAIN: () => exitRetries === undefined || exitRetries-- > 0,
      });
      sonic.on('drop', onDrop);
      // A reader that went away (EPIPE): the lines have nowhere to go, and that is no crash.
      sonic.on('error', () => undefined);
    }
    stream = writer ?? sonic;
  }
  const log = pino({ level, base }, stream);
  function reportDrops(): void {
    dropped.timer = undefined;
    const lines = dropped.lines;
    dropped.lines = 0;
    log.warn({ dropped: lines }, 'stderr did not take them: log lines dropped');
  }
  if (prettyMissing) log.warn('pino-pretty is not installed; logging JSON instead');
  return {
    log,
    flush(): void {
      writer?.flushSync(Date.now() + EXIT_FLUSH_MS);
      if (sonic) {
        exitRetries = Math.ceil(EXIT_FLUSH_MS / EAGAIN_RETRY_MS);
        try { sonic.flushSync(); } catch { /* a closed or stalled fd at exit: what is left is lost */ }
      }
    },
  };
}
