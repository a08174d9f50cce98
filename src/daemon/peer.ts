/**
 * Who is that client? pid and command line of the process at the other end of an accepted
 * socket, for the log (usbmuxd logs the pid from SO_PEERCRED at INFO).
 *
 * Unix clients (the common case): the server hands us the peer's credentials read with
 * SO_PEERCRED at accept (peer-credentials.ts), so the pid is known and only /proc/PID/cmdline is
 * read, synchronously: one open, one read of at most CMDLINE_MAX bytes and a close of a procfs
 * file (microseconds; the asynchronous fs API costs tens of microseconds and five thread-pool round
 * trips for the same file, paid on every Connect). The command line goes on the 'client connected'
 * line; later lines of that client carry its pid through the server's bindings.
 *
 * Without a pid (koffi unavailable, or a TCP client) we find the peer through the kernel's
 * tables, asynchronously, and log it on its own line ('client identity', 'client disconnected'):
 *   Unix socket: our end's inode (fstat of the accepted fd) → the peer end's inode from the
 *                kernel's unix socket diagnostics (`ss -xnH`, netlink UNIX_DIAG_PEER: procfs does
 *                not publish the peer) → the process holding `socket:[peer]` in /proc/PID/fd.
 *   TCP loopback: the client's address:port → its socket inode in /proc/net/tcp → same scan.
 * Then /proc/PID/cmdline. Bounded: at most MAX_IN_FLIGHT such lookups at once (others are
 * skipped), each scanning at most MAX_PIDS processes, recently seen client processes first; one
 * `ss` run serves all lookups of a 100 ms interval.
 *
 * Nothing runs unless 'info' is enabled. Never throws: an unknown peer is logged as such.
 */
import { execFile } from 'node:child_process';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { readFile, readdir, readlink } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { promisify } from 'node:util';
import type { Logger } from '../log.js';
import type { ClientDescription, PeerCredentials } from '../server/index.js';

const MAX_IN_FLIGHT = 4;
/** Bytes of /proc/PID/cmdline read at most (a longer command line is cut, with "…"). */
const CMDLINE_MAX = 1024;
const MAX_PIDS = 8192;
const SS_TIMEOUT_MS = 1000;

export interface PeerIdentity { readonly pid: number; readonly cmdline: string }

/** From `ss -xnH` output: the peer inode of the socket whose own inode is `inode`. */
export function peerInodeFromSs(text: string, inode: number): number | undefined {
  for (const line of text.split('\n')) {
    // Netid State Recv-Q Send-Q Local-Address Local-Port(inode) Peer-Address Peer-Port(inode)
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    if (Number(f[5]) === inode) {
      const peer = Number(f[7]);
      return Number.isInteger(peer) && peer > 0 ? peer : undefined;
    }
  }
  return undefined;
}

/** "127.0.0.1", 5000 → "0100007F:1388", the /proc/net/tcp spelling (host-order word, big-endian port). */
export function procTcpAddress(ipv4: string, port: number): string | undefined {
  const parts = ipv4.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) return undefined;
  const b = Buffer.from(parts);
  return `${b.readUInt32LE(0).toString(16).toUpperCase().padStart(8, '0')}:${port.toString(16).toUpperCase().padStart(4, '0')}`;
}

/** From /proc/net/tcp text: the inode of the socket whose local address is `local`. */
export function inodeFromProcTcp(text: string, local: string): number | undefined {
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f[1] === local && f.length >= 10) {
      const inode = Number(f[9]);
      return Number.isInteger(inode) && inode > 0 ? inode : undefined;
    }
  }
  return undefined;
}

function handleFd(socket: Socket): number | undefined {
  const handle: unknown = Reflect.get(socket, '_handle');
  if (typeof handle === 'object' && handle !== null && 'fd' in handle && typeof handle.fd === 'number' && handle.fd >= 0) {
    return handle.fd;
  }
  return undefined;
}

/** "a\0b\0" → "a b"; "" (a zombie, or a kernel thread) stays "". */
function formatCmdline(raw: string): string {
  return raw.replace(/\0+$/, '').replace(/\0/g, ' ');
}

const execFileAsync = promisify(execFile);

async function runSs(): Promise<string> {
  const { stdout } = await execFileAsync('ss', ['-xnH'], { timeout: SS_TIMEOUT_MS, maxBuffer: 8 * 1024 * 1024, encoding: 'utf8' });
  return stdout;
}

/**
 * One `ss` run serves every lookup that asked before it started, and runs start at most every
 * SS_MIN_INTERVAL_MS: a client that opens a socket per request (libusbmuxd does) costs one
 * process spawn per interval, not one per Connect. A run that started before a socket was
 * accepted cannot see it, so a caller always waits for a run that starts after its request.
 */
const SS_MIN_INTERVAL_MS = 100;
let ssNext: Promise<string> | undefined;
let ssLastStart = 0;

function ssSnapshot(): Promise<string> {
  if (ssNext !== undefined) return ssNext;
  const wait = Math.max(0, ssLastStart + SS_MIN_INTERVAL_MS - Date.now());
  const next = new Promise<string>((resolve, reject) => {
    setTimeout(() => {
      ssNext = undefined; // later callers wait for the following run
      ssLastStart = Date.now();
      runSs().then(resolve, reject);
    }, wait).unref();
  });
  ssNext = next;
  return next;
}

/** Pids of recently identified clients, newest first: looked at before the full /proc scan. */
const recentPids: number[] = [];
const RECENT_PIDS = 8;

function rememberPid(pid: number): void {
  const at = recentPids.indexOf(pid);
  if (at >= 0) recentPids.splice(at, 1);
  recentPids.unshift(pid);
  if (recentPids.length > RECENT_PIDS) recentPids.length = RECENT_PIDS;
}

async function peerSocketInode(socket: Socket): Promise<number | undefined> {
  if (socket.remoteAddress !== undefined) {
    if (socket.remotePort === undefined) return undefined;
    const local = procTcpAddress(socket.remoteAddress.replace(/^::ffff:/, ''), socket.remotePort);
    if (local === undefined) return undefined;
    return inodeFromProcTcp(await readFile('/proc/net/tcp', 'utf8'), local);
  }
  const fd = handleFd(socket);
  if (fd === undefined) return undefined;
  const own = fstatSync(fd).ino;
  return peerInodeFromSs(await ssSnapshot(), own);
}

/** The process that holds `socket:[inode]` (the first found), bounded by MAX_PIDS. */
export async function processHoldingSocket(inode: number): Promise<PeerIdentity | undefined> {
  const needle = `socket:[${inode}]`;
  // Recent clients first (one process often opens a socket per request), then newest first: a
  // client usually started moments ago.
  const all = (await readdir('/proc')).filter((n) => /^\d+$/.test(n)).sort((a, b) => Number(b) - Number(a)).slice(0, MAX_PIDS);
  const recent = recentPids.map(String).filter((p) => all.includes(p));
  const pids = [...recent, ...all.filter((p) => !recent.includes(p))];
  for (const pid of pids) {
    if (Number(pid) === process.pid) continue;
    let fds: string[];
    try {
      fds = await readdir(`/proc/${pid}/fd`);
    } catch {
      continue; // gone, or not ours to look at
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = await readlink(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      if (target === needle) {
        const raw = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
        rememberPid(Number(pid));
        return { pid: Number(pid), cmdline: formatCmdline(raw) };
      }
    }
  }
  return undefined;
}

const cmdlineBuffer = Buffer.allocUnsafe(CMDLINE_MAX);

/** /proc/PID/cmdline read synchronously (procfs: never waits on a disk), or undefined when the process is gone. */
export function readCmdlineSync(pid: number): string | undefined {
  let fd: number;
  try {
    fd = openSync(`/proc/${pid}/cmdline`, 'r');
  } catch {
    return undefined;
  }
  try {
    const n = readSync(fd, cmdlineBuffer, 0, CMDLINE_MAX, null);
    const text = formatCmdline(cmdlineBuffer.toString('utf8', 0, n));
    return n === CMDLINE_MAX ? `${text}…` : text;
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/** A client whose pid SO_PEERCRED did not give: found through the kernel's socket tables. */
export async function identifyPeer(socket: Socket): Promise<PeerIdentity | undefined> {
  const inode = await peerSocketInode(socket);
  return inode === undefined ? undefined : processHoldingSocket(inode);
}

/**
 * The `identify` hook for MuxdServer: the command line for the connect line when the pid is
 * known; otherwise `{ peer: n }` now, and pid and command line on a line of their own once found.
 */
export function createPeerIdentifier(log: Logger): (socket: Socket, credentials: PeerCredentials | undefined) => ClientDescription {
  let counter = 0;
  let inFlight = 0;
  return (socket, credentials) => {
    if (!log.isLevelEnabled('info')) return {};
    if (credentials?.pid !== undefined) {
      const cmdline = readCmdlineSync(credentials.pid);
      return cmdline === undefined ? {} : { connected: { cmdline } };
    }
    const peer = ++counter;
    if (inFlight >= MAX_IN_FLIGHT) {
      log.debug({ peer }, 'client identity lookup skipped (too many in flight)');
      return { bindings: { peer } };
    }
    inFlight++;
    let who: PeerIdentity | undefined;
    void identifyPeer(socket).then(
      (id) => {
        who = id;
        if (id) log.info({ peer, pid: id.pid, cmdline: id.cmdline }, 'client identity');
        else log.info({ peer }, 'client identity unknown');
      },
      (err: unknown) => { log.debug({ peer, err }, 'client identity lookup failed'); },
    ).finally(() => { inFlight--; });
    socket.once('close', () => {
      log.info({ peer, pid: who?.pid, cmdline: who?.cmdline }, 'client disconnected');
    });
    return { bindings: { peer } };
  };
}
