/**
 * Whose is that client? The uid (and pid, gid) of the process at the other end of an accepted
 * socket, known at accept time, so the server can give each local user a fair share of it.
 *
 *   Unix socket:   getsockopt(SO_PEERCRED) on the accepted fd, through koffi (a C FFI with
 *                  prebuilt binaries; Node has no getsockopt). The kernel fills it at connect:
 *                  about a microsecond, synchronous, no process spawned. usbmuxd reads the same.
 *   TCP loopback:  the uid column of /proc/net/tcp or tcp6 for the client's address:port (the
 *                  kernel's owner of the client's socket); read asynchronously, one file read.
 *   Anything else: unknown (a remote client has no local uid).
 *
 * `loadPeerCredentials()` returns undefined where koffi or getsockopt is not available (then Unix
 * clients have no known owner and the server shares only its total); it never throws.
 */
import { readFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import type { PeerCredentials, PeerCredentialsLookup } from '../server/index.js';
import { isLoopbackHost } from '../config.js';
import { procTcpAddress } from './peer.js';

const SOL_SOCKET = 1;
/** SO_PEERCRED by architecture (asm-generic value 17; powerpc 21). */
const SO_PEERCRED: Partial<Record<NodeJS.Architecture, number>> = { x64: 17, arm64: 17, arm: 17, ia32: 17, riscv64: 17, loong64: 17, s390x: 17, ppc64: 21, ppc: 21 };
/** struct ucred { pid_t pid; uid_t uid; gid_t gid; } */
const UCRED_SIZE = 12;

type Getsockopt = (fd: number, level: number, name: number, value: Buffer, length: Uint32Array) => number;

/** The accepted socket's fd (what libuv holds), or undefined for a socket without one. */
export function socketFd(socket: Socket): number | undefined {
  const handle: unknown = Reflect.get(socket, '_handle');
  if (typeof handle === 'object' && handle !== null && 'fd' in handle && typeof handle.fd === 'number' && handle.fd >= 0) {
    return handle.fd;
  }
  return undefined;
}

/** Reused by every call (synchronous, one at a time): plain pointers, nothing marshalled per call. */
const ucred = Buffer.alloc(UCRED_SIZE);
const ucredLength = new Uint32Array(1);

/** SO_PEERCRED of a Unix socket fd, or undefined (not a Unix socket, or the call failed). */
function peerCred(getsockopt: Getsockopt, option: number, fd: number): PeerCredentials | undefined {
  const value = ucred;
  ucredLength[0] = UCRED_SIZE;
  if (getsockopt(fd, SOL_SOCKET, option, value, ucredLength) !== 0 || ucredLength[0] !== UCRED_SIZE) return undefined;
  const pid = value.readInt32LE(0);
  const uid = value.readUInt32LE(4);
  const gid = value.readUInt32LE(8);
  // A socket that is not a connected Unix socket reports pid 0 and the overflow uid (-1).
  if (pid <= 0 || uid === 0xffffffff) return undefined;
  return { pid, uid, gid };
}

/** "::ffff:127.0.0.1" → "127.0.0.1"; "::1" stays. */
function plainAddress(address: string): string {
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

/** "::1", 5000 → the /proc/net/tcp6 spelling: four host-order 32-bit words, then the port in hex. */
export function procTcp6Address(ipv6: string, port: number): string | undefined {
  if (ipv6 !== '::1') return undefined;
  const words = Buffer.alloc(16);
  words[15] = 1;
  let hex = '';
  for (let i = 0; i < 16; i += 4) hex += words.readUInt32LE(i).toString(16).toUpperCase().padStart(8, '0');
  return `${hex}:${port.toString(16).toUpperCase().padStart(4, '0')}`;
}

/** From /proc/net/tcp{,6} text: the uid of the socket whose local address is `local`. */
export function uidFromProcTcp(text: string, local: string): number | undefined {
  for (const line of text.split('\n')) {
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
    const f = line.trim().split(/\s+/);
    if (f[1] === local && f.length >= 10) {
      const uid = Number(f[7]);
      return Number.isInteger(uid) && uid >= 0 ? uid : undefined;
    }
  }
  return undefined;
}

/** The uid owning a loopback TCP client's socket, from /proc/net/tcp (IPv4) or tcp6 (::1). */
export async function loopbackTcpCredentials(socket: Socket): Promise<PeerCredentials | undefined> {
  const address = socket.remoteAddress;
  const port = socket.remotePort;
  if (address === undefined || port === undefined) return undefined;
  const plain = plainAddress(address);
  if (!isLoopbackHost(plain)) return undefined;
  const v4 = procTcpAddress(plain, port);
  const [file, local] = v4 !== undefined ? ['/proc/net/tcp', v4] : ['/proc/net/tcp6', procTcp6Address(plain, port)];
  if (local === undefined) return undefined;
  // A client on 127.0.0.1 through an IPv6 socket is listed in tcp6 with its v4-mapped address; the
  // IPv4 table is tried first, tcp6 second.
  try {
    const uid = uidFromProcTcp(await readFile(file, 'utf8'), local);
    if (uid !== undefined) return { uid };
    if (v4 !== undefined) {
      const mapped = `0000000000000000FFFF0000${v4}`;
      const uid6 = uidFromProcTcp(await readFile('/proc/net/tcp6', 'utf8'), mapped);
      if (uid6 !== undefined) return { uid: uid6 };
    }
  } catch {
    // no procfs: unknown
  }
  return undefined;
}

/**
 * The server's `peerCredentials` hook: SO_PEERCRED for Unix clients (synchronous), /proc/net/tcp
 * for loopback TCP clients (a promise). undefined when koffi cannot be loaded here; the reason is
 * returned too, for one warning at startup.
 */
export async function loadPeerCredentials(): Promise<{ lookup: PeerCredentialsLookup } | { lookup: undefined; reason: string }> {
  const option = SO_PEERCRED[process.arch];
  if (option === undefined || process.platform !== 'linux') return { lookup: undefined, reason: `SO_PEERCRED is not known on ${process.platform}/${process.arch}` };
  let getsockopt: Getsockopt;
  try {
    const koffi = (await import('koffi')).default;
    // The process's own symbols: libc is always loaded in Node (glibc or musl alike).
    getsockopt = koffi.load(null).func('int getsockopt(int, int, int, void *, void *)');
  } catch (err) {
    return { lookup: undefined, reason: `koffi could not be loaded: ${err instanceof Error ? err.message : String(err)}` };
  }
  const lookup: PeerCredentialsLookup = (socket) => {
    if (socket.remoteAddress !== undefined) return loopbackTcpCredentials(socket);
    const fd = socketFd(socket);
    return fd === undefined ? undefined : peerCred(getsockopt, option, fd);
  };
  return { lookup };
}
