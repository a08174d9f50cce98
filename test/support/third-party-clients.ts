/**
 * Running the third-party clients nobody here wrote (pymobiledevice3, tidevice, go-ios), installed
 * by scripts/setup-clients.sh into .venv-clients/bin, against a daemon socket.
 *
 * How each is pointed at a socket (read from their sources):
 *   - pymobiledevice3 11.45: `USBMUXD_SOCKET_ADDRESS` (or `--usbmux`) holding a BARE path or
 *     HOST:PORT. libusbmuxd's `UNIX:/path` form is split at the colon and fails.
 *   - go-ios 1.2.0: `USBMUXD_SOCKET_ADDRESS`, a bare path (it prefixes unix://) or HOST:PORT; a value
 *     with a colon is always TCP, so `UNIX:/path` fails too.
 *   - tidevice 0.12.11: `--socket PATH|HOST:PORT` before the subcommand; it ignores the environment.
 * Each run gets its own HOME (pymobiledevice3 and tidevice keep pair records and caches there).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runProcess } from './clients.js';
import type { ClientResult } from './clients.js';
import { REPO_ROOT } from './usb-testbed.js';

export type ThirdPartyClient = 'pymobiledevice3' | 'go-ios' | 'tidevice';
export const THIRD_PARTY_CLIENTS: readonly ThirdPartyClient[] = ['pymobiledevice3', 'go-ios', 'tidevice'];

export const CLIENTS_BIN = join(REPO_ROOT, '.venv-clients', 'bin');
const BINARY: Readonly<Record<ThirdPartyClient, string>> = { pymobiledevice3: 'pymobiledevice3', 'go-ios': 'ios', tidevice: 'tidevice' };
/** The python of pymobiledevice3's venv (for its library: Listen has no command). */
const PMD3_PYTHON = join(REPO_ROOT, '.venv-clients', 'pymobiledevice3', 'bin', 'python');

/** Throws with the fix when scripts/setup-clients.sh has not run. */
export function requireThirdPartyClients(): void {
  for (const client of THIRD_PARTY_CLIENTS) {
    const path = join(CLIENTS_BIN, BINARY[client]);
    if (!existsSync(path)) throw new Error(`${path} is missing: run \`bash scripts/setup-system.sh\` (or scripts/setup-clients.sh)`);
  }
}

/** Where one client talks to one daemon: its socket, and a HOME of its own. */
export class ClientSeat {
  readonly home: string;
  private readonly children = new Set<ChildProcess>();

  constructor(readonly client: ThirdPartyClient, readonly socketPath: string) {
    this.home = mkdtempSync(join(tmpdir(), `muxd-${client}-home-`));
  }

  private command(args: readonly string[]): { file: string; args: string[]; env: NodeJS.ProcessEnv } {
    const env: NodeJS.ProcessEnv = { ...process.env, HOME: this.home, USBMUXD_SOCKET_ADDRESS: this.socketPath, NO_COLOR: '1', TERM: 'dumb' };
    delete env['PYMOBILEDEVICE3_USBMUX'];
    const file = join(CLIENTS_BIN, BINARY[this.client]);
    if (this.client === 'tidevice') return { file, args: ['--socket', this.socketPath, ...args], env };
    return { file, args: [...args], env };
  }

  /** Run to completion (stdin closed), killed after `timeoutMs`. */
  run(args: readonly string[], timeoutMs = 30_000): Promise<ClientResult> {
    const { file, args: argv, env } = this.command(args);
    return runProcess(file, argv, env, timeoutMs, this.children);
  }

  /** Like run, but a failure is an error carrying both streams. */
  async ok(args: readonly string[], timeoutMs = 30_000): Promise<string> {
    const r = await this.run(args, timeoutMs);
    if (r.code !== 0 || r.timedOut) throw new Error(`${this.client} ${args.join(' ')}: ${describeResult(r)}`);
    return r.stdout;
  }

  /** pymobiledevice3's library: a Python snippet run in its venv (argv[1] is the socket). */
  python(script: string, timeoutMs = 30_000): Promise<ClientResult> {
    const env: NodeJS.ProcessEnv = { ...process.env, HOME: this.home };
    return runProcess(PMD3_PYTHON, ['-c', script, this.socketPath], env, timeoutMs, this.children);
  }

  /**
   * Start a long-running command and resolve with its output once `ready(output)` holds (or reject
   * after `timeoutMs`); the process keeps running until `stop()` of the returned handle.
   */
  async spawnUntil(args: readonly string[], ready: (output: string) => boolean, timeoutMs = 20_000): Promise<Running> {
    const { file, args: argv, env } = this.command(args);
    const child = spawn(file, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.children.add(child);
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (output += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (output += s));
    const running: Running = {
      output: () => output,
      stop: () => stopProcess(child, this.children),
    };
    const deadline = Date.now() + timeoutMs;
    while (!ready(output)) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`${this.client} ${args.join(' ')} exited (${String(child.exitCode ?? child.signalCode)}) before it was ready:\n${output}`);
      }
      if (Date.now() > deadline) {
        await running.stop();
        throw new Error(`${this.client} ${args.join(' ')} not ready after ${timeoutMs} ms:\n${output}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    return running;
  }

  /** The client's port forwarder from 127.0.0.1:localPort to devicePort, once it listens. */
  forward(localPort: number, devicePort: number): Promise<Running> {
    const args = {
      pymobiledevice3: ['usbmux', 'forward', String(localPort), String(devicePort)],
      'go-ios': ['forward', String(localPort), String(devicePort)],
      tidevice: ['relay', String(localPort), String(devicePort)],
    }[this.client];
    let listening = false;
    void (async () => {
      for (let i = 0; i < 400 && !listening; i++) {
        listening = await listeningOnAnyAddress(localPort);
        if (!listening) await new Promise((r) => setTimeout(r, 50));
      }
    })();
    return this.spawnUntil(args, () => listening);
  }

  async dispose(): Promise<void> {
    await Promise.all([...this.children].map((c) => stopProcess(c, this.children)));
    rmSync(this.home, { recursive: true, force: true });
  }
}

/**
 * A TCP socket LISTENs on `port` at any local address (go-ios and tidevice bind 0.0.0.0 or ::,
 * pymobiledevice3 127.0.0.1). Read from /proc, not probed: a probe would open a device connection.
 */
export async function listeningOnAnyAddress(port: number): Promise<boolean> {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const text = await readFile(table, 'utf8').catch(() => '');
    for (const line of text.split('\n')) {
      const cols = line.trim().split(/\s+/);
      if (cols[1]?.endsWith(`:${hexPort}`) === true && cols[3] === '0A') return true;
    }
  }
  return false;
}

export interface Running {
  output(): string;
  stop(): Promise<void>;
}

export function describeResult(r: ClientResult): string {
  const how = r.timedOut ? 'timed out' : `exit ${String(r.code)}${r.signal === null ? '' : ` (${r.signal})`}`;
  return `${how}\nstdout: ${r.stdout.slice(-3000)}\nstderr: ${r.stderr.slice(-3000)}`;
}

async function stopProcess(child: ChildProcess, children: Set<ChildProcess>): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  }
  children.delete(child);
}
