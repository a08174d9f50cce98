/**
 * The client limit under a low RLIMIT_NOFILE.
 *
 * Node cannot call getrlimit, and libuv meets EMFILE on accept by accepting and closing the
 * connection at once, silently. So with `ulimit -n 256` and the default limit of 1024 clients the
 * daemon ran out of descriptors long before its own limit: new clients were dropped without a log
 * line, and pair-record writes and USB opens failed for lack of descriptors. The soft limit is read
 * from /proc/self/limits instead, and the client limit lowered to leave a reserve for the daemon's
 * own files (stdio, epoll, the listening socket, the log file, USB device nodes, pair-record writes),
 * so the server's "client limit reached" warning fires before the descriptors run out.
 */
import { readFileSync } from 'node:fs';

/** Descriptors kept for the daemon itself beyond one per client. */
export const FD_RESERVE = 64;

/** The soft "Max open files" limit in a /proc/<pid>/limits text; undefined if unlimited or absent. */
export function parseSoftNofile(limitsText: string): number | undefined {
  const match = /^Max open files\s+(\d+|unlimited)\s/m.exec(limitsText);
  if (match?.[1] === undefined || match[1] === 'unlimited') return undefined;
  return Number(match[1]);
}

/** `configured`, lowered so that clients plus the reserve fit under `softNofile` (at least 1). */
export function clientLimitFor(configured: number, softNofile: number | undefined): number {
  if (softNofile === undefined) return configured;
  return Math.max(1, Math.min(configured, softNofile - FD_RESERVE));
}

/** The soft RLIMIT_NOFILE of this process, or undefined when it cannot be read (not Linux). */
export function readSoftNofile(read: (path: string) => string = (path) => readFileSync(path, 'utf8')): number | undefined {
  try {
    return parseSoftNofile(read('/proc/self/limits'));
  } catch {
    return undefined;
  }
}
