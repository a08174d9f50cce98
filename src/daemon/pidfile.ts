/**
 * Pidfile and single-instance lock.
 *
 * usbmuxd holds an fcntl write lock on the whole pidfile and finds a running instance with
 * F_GETLK (the kernel reports the holder's pid). Node has no fcntl locks, so we use another
 * kernel-held lock with the same two properties — exclusive, and released by the kernel the
 * moment the holder dies, whatever the way — a Linux *abstract* Unix socket:
 *
 *     lock name = "\0usbmuxd-lock/" + sha256(absolute pidfile path)[0..40]
 *
 *   acquire ──bind ok──► HELD ── answers every connection with its pid, then closes it
 *      │                  │
 *      │ EADDRINUSE       └─ release(): unlink the pidfile (if still ours), close the socket
 *      ▼
 *   connect → read pid → InstanceRunningError(pid)   (the "F_GETLK" of this design)
 *
 * - Nothing in the filesystem decides liveness, so a stale pidfile (crash, SIGKILL, reboot) is
 *   never mistaken for a running daemon and no "stale?" heuristic is needed.
 * - Binding is atomic: two daemons starting at once cannot both win.
 * - The pidfile itself is written after the lock is held (temp file + rename, mode 0644, the
 *   decimal pid without a newline, like usbmuxd) for systemd's PIDFile= and for people.
 * - Unlike usbmuxd we remove the pidfile at a clean exit (it is no longer the lock).
 * - Interop with the C usbmuxd: if the pidfile names a live process whose name is `usbmuxd`,
 *   that daemon holds its fcntl lock; we refuse to start, and `-x`/`-X` signal it. The same
 *   check (by command line) covers one of ours in another network namespace.
 * - Abstract sockets live in a network namespace; across namespaces only the pidfile check
 *   above applies (our unit does not set PrivateNetwork=).
 */
import { createHash } from 'node:crypto';
import { readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import type { Server } from 'node:net';
import { resolve } from 'node:path';
import { systemErrorCode } from '../errors.js';
import { InstanceRunningError, PidfileError } from './errors.js';

export function lockNameFor(pidfile: string): string {
  const digest = createHash('sha256').update(resolve(pidfile)).digest('hex').slice(0, 40);
  return `\0usbmuxd-lock/${digest}`;
}

/** Ask the lock holder for its pid; undefined when nobody holds the lock. */
export function queryLockHolder(lockName: string, timeoutMs = 1000): Promise<number | undefined> {
  return new Promise((resolvePid) => {
    const sock = createConnection({ path: lockName });
    let text = '';
    let settled = false;
    const finish = (pid: number | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      resolvePid(pid);
    };
    const timer = setTimeout(() => { finish(undefined); }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => { text += chunk; });
    sock.on('end', () => {
      const pid = Number(text.trim());
      finish(Number.isInteger(pid) && pid > 0 ? pid : undefined);
    });
    sock.on('error', () => { finish(undefined); });
  });
}

function processName(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function looksLikeUsbmuxd(pid: number): boolean {
  if (processName(pid) === 'usbmuxd') return true; // the C daemon
  let argv: string[];
  try {
    argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return false;
  }
  // ours: `node /usr/local/bin/usbmuxd …` or `node …/dist/main.js …`
  const script = argv[1] ?? '';
  return script.endsWith('/usbmuxd') || script === 'usbmuxd' || script.endsWith('/dist/main.js');
}

/**
 * The pid written in `pidfile`, if it is a live usbmuxd other than us: the C daemon (which holds
 * an fcntl lock we cannot see) or ours in another network namespace (whose abstract lock we
 * cannot see). A dead pid, or a live process that is something else, is a stale file.
 */
export function foreignUsbmuxdFromPidfile(pidfile: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(pidfile, 'utf8').trim();
  } catch {
    return undefined;
  }
  const pid = Number(text);
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return undefined;
  return looksLikeUsbmuxd(pid) ? pid : undefined;
}

/** Find a running instance for this pidfile: ours (lock) first, then a C usbmuxd named in it. */
export async function findRunningInstance(pidfile: string): Promise<number | undefined> {
  const holder = await queryLockHolder(lockNameFor(pidfile));
  return holder ?? foreignUsbmuxdFromPidfile(pidfile);
}

export class InstanceLock {
  private constructor(
    private readonly server: Server,
    readonly pidfile: string,
    readonly lockName: string,
  ) {}

  /** Take the lock and write the pidfile, or throw InstanceRunningError / PidfileError. */
  static async acquire(pidfile: string): Promise<InstanceLock> {
    const lockName = lockNameFor(pidfile);
    const server = createServer((sock) => {
      sock.on('error', () => { /* a querier that went away is no concern of ours */ });
      sock.end(String(process.pid));
    });
    try {
      await new Promise<void>((ok, fail) => {
        server.once('error', fail);
        server.listen({ path: lockName, exclusive: true }, () => {
          server.off('error', fail);
          ok();
        });
      });
    } catch (err) {
      if (systemErrorCode(err) === 'EADDRINUSE') {
        throw new InstanceRunningError(await queryLockHolder(lockName), lockName);
      }
      throw new PidfileError(`cannot take the instance lock for ${pidfile}`, { cause: err });
    }
    server.unref();
    const foreign = foreignUsbmuxdFromPidfile(pidfile);
    if (foreign !== undefined) {
      server.close();
      throw new InstanceRunningError(foreign, lockName);
    }
    const lock = new InstanceLock(server, pidfile, lockName);
    try {
      lock.write();
    } catch (err) {
      server.close();
      throw new PidfileError(`cannot write pidfile ${pidfile}`, { cause: err });
    }
    return lock;
  }

  private write(): void {
    const tmp = `${this.pidfile}.${process.pid}.tmp`;
    try {
      writeFileSync(tmp, String(process.pid), { mode: 0o644 });
      renameSync(tmp, this.pidfile);
    } catch (err) {
      try { unlinkSync(tmp); } catch { /* the temp file may never have been created */ }
      throw err;
    }
  }

  /** Remove the pidfile if it still names us, then drop the lock. Idempotent. */
  release(): void {
    try {
      if (readFileSync(this.pidfile, 'utf8').trim() === String(process.pid)) unlinkSync(this.pidfile);
    } catch {
      /* already gone, or replaced by someone with the right to do so */
    }
    if (this.server.listening) this.server.close();
  }
}
