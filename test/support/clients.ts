/**
 * Running Debian's real libimobiledevice clients against a daemon socket.
 *
 * Every tool is started with `USBMUXD_SOCKET_ADDRESS=UNIX:<socket>` (libusbmuxd ≥ 2.0 honours it)
 * and a hard timeout, so a hung client fails the test instead of the run.
 *
 * Versions on Debian 12: libusbmuxd-tools 2.0.2 (`iproxy LOCAL_PORT:DEVICE_PORT [-u UDID]`,
 * `inetcat DEVICE_PORT [-u UDID]`), libimobiledevice-utils 1.3.0 (idevice_id, ideviceinfo,
 * idevicepair).
 *
 * iproxy caveat (found with strace while building these tests): 2.0.2's per-connection thread
 * sizes its select() set from the usbmux socket's fd alone (nfds = sfd + 1). When that socket gets a
 * LOWER fd number than the accepted TCP client (because an earlier connection just freed one), the
 * client fd is never watched and the connection silently stalls: no byte goes towards the device.
 * So we never probe iproxy's port with a throw-away connection (readiness is read from
 * /proc/net/tcp instead), and parallel connections through one iproxy are opened one after another,
 * each once its tunnel is up, and none ends before all are up (parallelEchoes), so fd numbers only
 * grow while connections are being set up.
 *
 * inetcat caveat: 2.0.2 ignores EAGAIN when writing towards the device, so under backpressure it
 * silently drops host→device bytes (measured against the reference daemon too). Use it only to read
 * from the device; send bulk data through iproxy and a TCP socket. It also exits at once when its
 * stdin is at EOF, so its stdin is kept open as a pipe.
 */
import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import type { Socket } from 'node:net';

export interface ClientResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
}

export interface RunOptions {
  readonly timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 15_000;

/** The environment that points libusbmuxd at `socketPath`. */
export function muxdEnv(socketPath: string): NodeJS.ProcessEnv {
  return { ...process.env, USBMUXD_SOCKET_ADDRESS: `UNIX:${socketPath}` };
}

/** Run a client to completion (stdin closed), killing it after the timeout. */
export function runClient(socketPath: string, command: string, args: readonly string[], options: RunOptions = {}): Promise<ClientResult> {
  return runProcess(command, args, muxdEnv(socketPath), options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
}

/**
 * Run `file` to completion (stdin closed) with `env`, killing it after `timeoutMs`; while it runs
 * it is in `children` (when given), so a test's teardown can stop what is left.
 */
export function runProcess(file: string, args: readonly string[], env: NodeJS.ProcessEnv, timeoutMs: number, children?: Set<ChildProcess>): Promise<ClientResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    children?.add(child);
    const out: string[] = [];
    const err: string[] = [];
    child.stdout.setEncoding('utf8').on('data', (s: string) => out.push(s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => err.push(s));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      children?.delete(child);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      children?.delete(child);
      resolve({ code, signal, stdout: out.join(''), stderr: err.join(''), timedOut });
    });
  });
}

/** Like runClient, but a non-zero exit or timeout is an error carrying both output streams. */
export async function runClientOk(socketPath: string, command: string, args: readonly string[], options: RunOptions = {}): Promise<string> {
  const r = await runClient(socketPath, command, args, options);
  if (r.code !== 0 || r.timedOut) {
    throw new Error(`${command} ${args.join(' ')} failed (${r.timedOut ? 'timeout' : `code ${String(r.code)} signal ${String(r.signal)}`})\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  }
  return r.stdout;
}

/** `idevice_id -l`: the UDIDs, one per line. */
export async function ideviceIdList(socketPath: string, options: RunOptions = {}): Promise<string[]> {
  const out = await runClientOk(socketPath, 'idevice_id', ['-l'], options);
  return out.split('\n').map((l) => l.trim()).filter((l) => l !== '');
}

export interface IdeviceInfoOptions extends RunOptions {
  readonly key?: string;
  readonly udid?: string;
}

/** `ideviceinfo -s [-k Key] [-u UDID]` (simple mode: no pairing, no SSL): raw stdout. */
export function ideviceInfo(socketPath: string, options: IdeviceInfoOptions = {}): Promise<string> {
  const args = ['-s'];
  if (options.key !== undefined) args.push('-k', options.key);
  if (options.udid !== undefined) args.push('-u', options.udid);
  return runClientOk(socketPath, 'ideviceinfo', args, options);
}

/** Parses ideviceinfo's `Key: value` lines (top level only; nested dicts are indented and skipped). */
export function parseIdeviceInfo(out: string): Map<string, string> {
  const values = new Map<string, string>();
  for (const line of out.split('\n')) {
    const m = /^([A-Za-z0-9]+): (.*)$/.exec(line);
    if (m?.[1] !== undefined && m[2] !== undefined) values.set(m[1], m[2]);
  }
  return values;
}

/** `idevicepair systembuid`: the daemon's SystemBUID (via ReadBUID). */
export async function idevicePairSystemBuid(socketPath: string, options: RunOptions = {}): Promise<string> {
  return (await runClientOk(socketPath, 'idevicepair', ['systembuid'], options)).trim();
}

/** A local TCP port that was free a moment ago (bind to 0, read, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => {
        if (addr !== null && typeof addr === 'object') resolve(addr.port);
        else reject(new Error('no port'));
      });
    });
  });
}

export interface Iproxy {
  readonly localPort: number;
  readonly process: ChildProcess;
  logs(): string;
  stop(): Promise<void>;
}

export interface IproxyOptions {
  readonly udid?: string;
  /** `-n`: a network device (iproxy dials its NetworkAddress itself). */
  readonly network?: boolean;
  readonly readyTimeoutMs?: number;
}

/** `iproxy LOCAL:DEVICE [-u UDID]` on a free port; resolves once the local port accepts TCP. */
export async function startIproxy(socketPath: string, devicePort: number, options: IproxyOptions = {}): Promise<Iproxy> {
  const localPort = await freePort();
  const args = [`${localPort}:${devicePort}`];
  if (options.udid !== undefined) args.push('-u', options.udid);
  if (options.network === true) args.push('-n');
  const child = spawn('iproxy', args, { env: muxdEnv(socketPath), stdio: ['ignore', 'pipe', 'pipe'] });
  const chunks: string[] = [];
  child.stdout.setEncoding('utf8').on('data', (s: string) => chunks.push(s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => chunks.push(s));
  const state = { exited: false };
  const closed = new Promise<void>((resolve) => {
    child.once('close', () => {
      state.exited = true;
      resolve();
    });
  });
  const stop = async (): Promise<void> => {
    if (!state.exited) child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
    await closed;
    clearTimeout(timer);
  };
  const deadline = Date.now() + (options.readyTimeoutMs ?? 5000);
  while (!(await tcpListening(localPort))) {
    if (state.exited || Date.now() > deadline) {
      await stop();
      throw new Error(`iproxy did not listen on ${localPort}: ${chunks.join('')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return { localPort, process: child, logs: () => chunks.join(''), stop };
}

/**
 * Whether something listens on 127.0.0.1:port, read from /proc/net/tcp (state 0A = LISTEN)
 * rather than by connecting, which would hand iproxy a connection it then mishandles.
 */
export async function tcpListening(port: number): Promise<boolean> {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const table = await readFile('/proc/net/tcp', 'utf8');
  return table.split('\n').some((line) => {
    const cols = line.trim().split(/\s+/);
    return cols[1] === local && cols[3] === '0A';
  });
}

export interface EchoRun {
  /** Resolves when the first echoed byte arrives: the tunnel is up. */
  readonly firstEcho: Promise<void>;
  /** Everything that came back, once it is as long as what was sent. */
  readonly result: Promise<Buffer>;
  /** Send the rest of the data (only the first `headBytes` go out before this is called). */
  release(): void;
}

/**
 * Sends `data` over a fresh TCP connection to 127.0.0.1:port (honouring backpressure) while
 * reading the same number of bytes back. Only the first `headBytes` are sent until `release()`.
 */
export function startEcho(port: number, data: Buffer, timeoutMs = 30_000, headBytes = data.length): EchoRun {
  let released = false;
  let connected = false;
  let sendRest: () => void = () => undefined;
  const release = (): void => {
    if (released) return;
    released = true;
    if (connected) sendRest();
  };
  let tunnelUp: () => void = () => undefined;
  const firstEcho = new Promise<void>((resolve) => {
    tunnelUp = resolve;
  });
  const result = new Promise<Buffer>((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    const got: Buffer[] = [];
    let received = 0;
    const timer = setTimeout(() => {
      const queues = busySocketQueues();
      sock.destroy();
      reject(new Error(`echo timed out: ${received} of ${data.length} bytes back\n${queues}`));
    }, timeoutMs);
    sock.on('data', (chunk: Buffer) => {
      got.push(chunk);
      received += chunk.length;
      tunnelUp();
      if (received >= data.length) {
        clearTimeout(timer);
        sock.destroy();
        resolve(Buffer.concat(got, received));
      }
    });
    sock.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.once('close', () => {
      clearTimeout(timer);
      if (received < data.length) reject(new Error(`connection closed after ${received} of ${data.length} bytes`));
    });
    sendRest = () => {
      writeAll(sock, data.subarray(Math.min(headBytes, data.length)));
    };
    sock.once('connect', () => {
      connected = true;
      writeAll(sock, data.subarray(0, Math.min(headBytes, data.length)));
      if (released) sendRest();
    });
  });
  // A failed run must not leave firstEcho pending forever.
  result.then(tunnelUp, tunnelUp);
  return { firstEcho, result, release };
}

/**
 * Sockets of iproxy/node/usbmuxd processes with bytes queued (`ss`), for stall reports: a non-zero
 * Recv-Q on the daemon's end of a client socket means the daemon stopped reading it.
 */
export function busySocketQueues(): string {
  try {
    // -x and -t together: every line starts Netid State Recv-Q Send-Q.
    const lines = execFileSync('ss', ['-xtnpH'], { encoding: 'utf8', timeout: 2000 }).split('\n');
    const busy = lines.filter((l) => /iproxy|node|usbmuxd|inetcat/.test(l) && /^\S+\s+\S+\s+(\d+)\s+(\d+)/.exec(l)?.slice(1, 3).some((q) => q !== '0') === true);
    return `socket queues (ss, Recv-Q Send-Q):\n${busy.join('\n')}`;
  } catch (err) {
    return `(ss failed: ${err instanceof Error ? err.message : String(err)})`;
  }
}

/** One echo round trip: what came back. */
export function tcpEchoRoundTrip(port: number, data: Buffer, timeoutMs = 30_000): Promise<Buffer> {
  const run = startEcho(port, data, timeoutMs);
  run.release();
  return run.result;
}

/**
 * Several echo round trips through one iproxy, all transferring at the same time. Each connection
 * is opened once the previous one's tunnel is up, and bulk data flows only once every tunnel is up
 * (iproxy 2.0.2 fd caveat above).
 */
export async function parallelEchoes(port: number, payloads: readonly Buffer[], timeoutMs = 30_000): Promise<Buffer[]> {
  const runs: EchoRun[] = [];
  for (const payload of payloads) {
    const run = startEcho(port, payload, timeoutMs, 1024);
    runs.push(run);
    await run.firstEcho;
  }
  for (const run of runs) run.release();
  return Promise.all(runs.map((r) => r.result));
}

/** Writes `data` in 64 KiB slices, waiting for 'drain' whenever write() says the buffer is full. */
function writeAll(sock: Socket, data: Buffer): void {
  const slice = 65536;
  let offset = 0;
  const pump = (): void => {
    while (offset < data.length) {
      const end = Math.min(offset + slice, data.length);
      const more = sock.write(data.subarray(offset, end));
      offset = end;
      if (!more) {
        sock.once('drain', pump);
        return;
      }
    }
  };
  pump();
}

export interface InetcatReadOptions {
  readonly udid?: string;
  readonly timeoutMs?: number;
}

/**
 * `inetcat PORT` and read exactly `length` bytes of what the device sends, then kill it.
 * stdin stays an open pipe (inetcat quits on stdin EOF) and nothing is written to it.
 */
export function inetcatRead(socketPath: string, devicePort: number, length: number, options: InetcatReadOptions = {}): Promise<Buffer> {
  const args = [String(devicePort)];
  if (options.udid !== undefined) args.push('-u', options.udid);
  return new Promise((resolve, reject) => {
    const child = spawn('inetcat', args, { env: muxdEnv(socketPath), stdio: ['pipe', 'pipe', 'pipe'] });
    const got: Buffer[] = [];
    const err: string[] = [];
    let received = 0;
    let done = false;
    const finish = (e: Error | undefined): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      if (e !== undefined) reject(e);
      else resolve(Buffer.concat(got, received).subarray(0, length));
    };
    const timer = setTimeout(() => {
      finish(new Error(`inetcat timed out after ${received} of ${length} bytes; stderr: ${err.join('')}`));
    }, options.timeoutMs ?? 30_000);
    child.stderr.setEncoding('utf8').on('data', (s: string) => err.push(s));
    child.stdout.on('data', (chunk: Buffer) => {
      got.push(chunk);
      received += chunk.length;
      if (received >= length) finish(undefined);
    });
    child.once('error', (e) => {
      finish(e);
    });
    child.once('close', (code, signal) => {
      finish(new Error(`inetcat exited (code ${String(code)}, signal ${String(signal)}) after ${received} of ${length} bytes; stderr: ${err.join('')}`));
    });
  });
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** SHA-256 of the bytes `byteAt(0) … byteAt(length-1)`, generated in 64 KiB blocks. */
export function sha256OfPattern(length: number, byteAt: (offset: number) => number): string {
  const hash = createHash('sha256');
  const block = Buffer.allocUnsafe(65536);
  for (let base = 0; base < length; base += block.length) {
    const n = Math.min(block.length, length - base);
    for (let i = 0; i < n; i++) block[i] = byteAt(base + i);
    hash.update(block.subarray(0, n));
  }
  return hash.digest('hex');
}

/** Index of the first byte where `data` departs from the pattern, or -1 if it matches throughout. */
export function firstPatternMismatch(data: Buffer, byteAt: (offset: number) => number): number {
  for (let i = 0; i < data.length; i++) {
    if (data[i] !== byteAt(i)) return i;
  }
  return -1;
}

// ---- pairing and TLS sessions (issue 8) -------------------------------------------------

/** `idevicepair <subcommand> [-u UDID]` as it ran (never throws on a non-zero exit). */
export function idevicePair(socketPath: string, subcommand: 'pair' | 'validate' | 'unpair' | 'list', options: RunOptions & { readonly udid?: string } = {}): Promise<ClientResult> {
  const args: string[] = [];
  if (options.udid !== undefined) args.push('-u', options.udid);
  args.push(subcommand);
  return runClient(socketPath, 'idevicepair', args, options);
}

/** What idevicepair 1.3.0 prints while the phone shows "Trust This Computer?" (PairingDialogResponsePending). */
export const TRUST_DIALOG_PENDING = /Please accept the trust dialog/;

export interface PairOutcome {
  /** Runs of `idevicepair pair`, the successful one included. */
  readonly attempts: number;
  /** Runs that were answered "accept the trust dialog". */
  readonly pending: number;
  /** Output of the successful run. */
  readonly stdout: string;
}

/**
 * `idevicepair pair` again and again, as a user would while the phone shows the trust dialog,
 * until it succeeds. Any other failure (or no success within `timeoutMs`) throws with the
 * tool's output.
 */
export async function idevicePairUntilTrusted(socketPath: string, options: RunOptions & { readonly udid?: string; readonly retryMs?: number } = {}): Promise<PairOutcome> {
  const deadline = Date.now() + (options.timeoutMs ?? 15_000);
  let attempts = 0;
  let pending = 0;
  for (;;) {
    attempts++;
    const r = await idevicePair(socketPath, 'pair', { ...options, timeoutMs: 10_000 });
    const output = `${r.stdout}${r.stderr}`;
    if (r.code === 0 && !r.timedOut) return { attempts, pending, stdout: r.stdout };
    if (!TRUST_DIALOG_PENDING.test(output)) {
      throw new Error(`idevicepair pair failed (${r.timedOut ? 'timeout' : `code ${String(r.code)}`}) on attempt ${attempts}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    }
    pending++;
    if (Date.now() > deadline) throw new Error(`idevicepair pair still waiting for the trust dialog after ${attempts} attempts`);
    await new Promise((resolve) => setTimeout(resolve, options.retryMs ?? 150));
  }
}

export interface IdeviceInfoSessionOptions extends RunOptions {
  readonly key?: string;
  /** `-q DOMAIN`. */
  readonly domain?: string;
  readonly udid?: string;
}

/** `ideviceinfo [-q Domain] [-k Key] [-u UDID]` WITHOUT `-s`: through a lockdown TLS session (needs a pair record). */
export function ideviceInfoSession(socketPath: string, options: IdeviceInfoSessionOptions = {}): Promise<string> {
  const args: string[] = [];
  if (options.domain !== undefined) args.push('-q', options.domain);
  if (options.key !== undefined) args.push('-k', options.key);
  if (options.udid !== undefined) args.push('-u', options.udid);
  return runClientOk(socketPath, 'ideviceinfo', args, options);
}
