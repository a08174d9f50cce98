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
 * with one warning. Writes are synchronous so a fatal line is on disk before the process exits.
 */
import { pino } from 'pino';
import type { DestinationStream, Level, Logger } from 'pino';
import type { DaemonConfig } from '../config.js';

const LADDER: readonly Level[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'];
const WARN_INDEX = 2;
const INFO_INDEX = 3;

/** usbmuxd's level rule, in pino's terms. */
export function levelFor(config: Pick<DaemonConfig, 'verbose' | 'foreground' | 'logfile'>): Level {
  const base = config.foreground || config.logfile !== undefined ? INFO_INDEX : WARN_INDEX;
  const index = Math.min(base + config.verbose, LADDER.length - 1);
  return LADDER[index] ?? 'trace';
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
  if (!stream) {
    sonic = config.logfile !== undefined
      ? pino.destination({ dest: config.logfile, append: true, mkdir: true, sync: true })
      : pino.destination({ fd: 2, sync: true });
    stream = sonic;
  }
  const log = pino({ level, base }, stream);
  if (prettyMissing) log.warn('pino-pretty is not installed; logging JSON instead');
  return {
    log,
    flush(): void {
      if (sonic) {
        try { sonic.flushSync(); } catch { /* a closed fd at exit has nothing left to flush */ }
      }
    },
  };
}
