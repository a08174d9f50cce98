/**
 * Helpers for the end-to-end CLI tests: spawn the real `dist/main.js`, read its JSON log lines,
 * wait for "usbmuxd ready", send signals, collect the exit code. Temp dirs are removed by cleanup().
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot: string = fileURLToPath(new URL('../../', import.meta.url));
export const mainJs: string = join(repoRoot, 'dist', 'main.js');

export interface LogLine { readonly level: number; readonly msg: string; readonly [key: string]: unknown }

export interface Daemon {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Parsed JSON log lines so far (stderr). */
  lines(): LogLine[];
  /** Raw stdout + stderr so far. */
  output(): string;
  /** Resolves with the first log line matching `pred`. */
  waitFor(pred: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** Resolves with the exit code (or 128+signal). */
  exited: Promise<number>;
}

const temps: string[] = [];
const children: ChildProcess[] = [];

export function tempDir(prefix = 'muxd-cli-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  temps.push(d);
  return d;
}

/** Kill every daemon still running and remove temp dirs (afterEach). */
export function cleanup(): void {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of temps.splice(0)) rmSync(d, { recursive: true, force: true });
}

function parseLines(text: string): LogLine[] {
  const out: LogLine[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const v: unknown = JSON.parse(line);
      if (typeof v === 'object' && v !== null && 'msg' in v && 'level' in v) out.push(v as LogLine);
    } catch {
      /* not a log line */
    }
  }
  return out;
}

/** Spawn `node dist/main.js ...args` (or another command line when `command` is given). */
export function startDaemon(args: readonly string[], options: SpawnOptions & { command?: readonly string[] } = {}): Daemon {
  const [cmd, ...pre] = options.command ?? [process.execPath, mainJs];
  const child = spawn(cmd ?? process.execPath, [...pre, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  children.push(child);
  let text = '';
  const waiters: { pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  const onText = (chunk: Buffer): void => {
    text += chunk.toString('utf8');
    const lines = parseLines(text);
    for (const w of waiters.slice()) {
      const hit = lines.find(w.pred);
      if (hit) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(hit);
      }
    }
  };
  child.stdout?.on('data', onText);
  child.stderr?.on('data', onText);
  const exited = new Promise<number>((resolve) => {
    child.on('exit', (code, signal) => { resolve(code ?? 128 + (signal === null ? 0 : osSignal(signal))); });
  });
  const daemon: Daemon = {
    child,
    pid: child.pid ?? -1,
    lines: () => parseLines(text),
    output: () => text,
    exited,
    waitFor(pred, timeoutMs = 10_000) {
      const hit = parseLines(text).find(pred);
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => { reject(new Error(`timed out waiting for a log line; output so far:\n${text}`)); }, timeoutMs);
        const w = { pred, resolve: (l: LogLine) => { clearTimeout(timer); resolve(l); } };
        waiters.push(w);
        void exited.then((code) => {
          if (waiters.includes(w)) {
            clearTimeout(timer);
            reject(new Error(`daemon exited (${code}) before the awaited log line; output:\n${text}`));
          }
        });
      });
    },
  };
  return daemon;
}

function osSignal(name: NodeJS.Signals): number {
  const table: Partial<Record<NodeJS.Signals, number>> = { SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15, SIGUSR1: 10, SIGUSR2: 12 };
  return table[name] ?? 0;
}

export const isReady = (l: LogLine): boolean => l.msg === 'usbmuxd ready';

/** Run the binary to completion (for -x, -X, usage errors). */
export function runOnce(args: readonly string[], options: { env?: NodeJS.ProcessEnv; uid?: number; gid?: number } = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [mainJs, ...args], { encoding: 'utf8', timeout: 15_000, ...options });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** `idevice_id -l` against a socket address (`UNIX:/path` or `host:port`). */
export function ideviceIdList(address: string): { status: number | null; stdout: string } {
  const r = spawnSync('idevice_id', ['-l'], { encoding: 'utf8', timeout: 15_000, env: { ...process.env, USBMUXD_SOCKET_ADDRESS: address } });
  return { status: r.status, stdout: r.stdout };
}
