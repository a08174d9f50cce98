/**
 * `-U USER`: drop root after the socket and the pidfile exist, and prove the drop stuck.
 *
 * Order (usbmuxd's): resolve the user → chown the config dir to user:group if it differs →
 * initgroups(user, gid) → setgid(gid) → setuid(uid) → verify: real and effective uid/gid are
 * the user's and setuid(0) fails.
 *
 * Unlike usbmuxd, the files in the config dir are handed over too: records are 0600, so one
 * written by root (a run without -U, or systemd's StateDirectory= chowning the tree back to root
 * at every start of a unit without User=) would otherwise be unreadable after the drop. Only
 * regular files with one link are chowned, never through a link (main.ts has refused a directory
 * another user could write to before this runs, so nobody else can plant or swap them). Any failure is a PrivilegeDropError (exit 1): a daemon that
 * meant to drop root and did not must not go on. Only as root; the root user is a notice.
 *
 * Users and groups are resolved with `getent` (so NSS sources such as LDAP work), falling back
 * to /etc/passwd and /etc/group when getent is absent.
 */
import { execFileSync } from 'node:child_process';
import { chownSync, lchownSync, lstatSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import { PrivilegeDropError, UnknownGroupError } from './errors.js';

export interface UserEntry { readonly name: string; readonly uid: number; readonly gid: number }

function getent(db: 'passwd' | 'group', key: string): string | undefined {
  try {
    return execFileSync('getent', [db, key], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).split('\n')[0];
  } catch (err) {
    if (err instanceof Error && 'status' in err && err.status === 2) return undefined; // not found
    const file = db === 'passwd' ? '/etc/passwd' : '/etc/group';
    try {
      return readFileSync(file, 'utf8').split('\n').find((line) => {
        const f = line.split(':');
        return f[0] === key || f[2] === key;
      });
    } catch {
      return undefined;
    }
  }
}

/** The passwd entry for a name or a numeric uid. */
export function lookupUser(nameOrUid: string): UserEntry | undefined {
  const line = getent('passwd', nameOrUid);
  if (line === undefined || line === '') return undefined;
  const f = line.split(':');
  const uid = Number(f[2]);
  const gid = Number(f[3]);
  if (f[0] === undefined || !Number.isInteger(uid) || !Number.isInteger(gid)) return undefined;
  return { name: f[0], uid, gid };
}

/** A group name or numeric gid → gid. Throws UnknownGroupError. */
export function lookupGroupId(nameOrGid: string): number {
  if (/^\d+$/.test(nameOrGid)) return Number(nameOrGid);
  const line = getent('group', nameOrGid);
  const gid = line === undefined ? NaN : Number(line.split(':')[2]);
  if (!Number.isInteger(gid)) throw new UnknownGroupError(`unknown group '${nameOrGid}' (--socket-group)`);
  return gid;
}

export function isRoot(): boolean {
  return process.getuid?.() === 0 || process.geteuid?.() === 0;
}

/** Resolve `-U` early, before anything is created, so an unknown user fails fast. */
export function resolveDropUser(name: string): UserEntry {
  const user = lookupUser(name);
  if (!user) throw new PrivilegeDropError(`unknown user '${name}' (-U)`);
  return user;
}

/**
 * Drop to `user`. Returns false (and logs a notice) when nothing was done: not root, or the
 * user is root. Throws PrivilegeDropError when the drop fails or does not verify.
 */
export function dropPrivileges(user: UserEntry, configDir: string, log: Logger): boolean {
  if (!isRoot()) {
    log.info({ user: user.name }, 'not running as root; -U ignored');
    return false;
  }
  if (user.uid === 0) {
    log.info('not dropping privileges to root');
    return false;
  }
  try {
    handOver(configDir, user, log);
  } catch (err) {
    throw new PrivilegeDropError(`cannot hand ${configDir} to ${user.name}`, { cause: err });
  }
  try {
    const initgroups: unknown = Reflect.get(process, 'initgroups');
    if (!isInitgroups(initgroups)) throw new Error('process.initgroups is not available on this platform');
    initgroups.call(process, user.name, user.gid);
    process.setgid?.(user.gid);
    process.setuid?.(user.uid);
  } catch (err) {
    throw new PrivilegeDropError(`failed to drop privileges to ${user.name}`, { cause: err });
  }
  verifyDropped(user);
  log.info({ user: user.name, uid: user.uid, gid: user.gid, groups: process.getgroups?.() }, 'dropped privileges');
  return true;
}

/** The config dir and the regular files in it to user:group (see the header for why and which). */
function handOver(configDir: string, user: UserEntry, log: Logger): void {
  const st = statSync(configDir);
  if (st.uid !== user.uid || st.gid !== user.gid) chownSync(configDir, user.uid, user.gid);
  let files = 0;
  for (const name of readdirSync(configDir)) {
    const path = join(configDir, name);
    const entry = lstatSync(path);
    if (!entry.isFile() || (entry.uid === user.uid && entry.gid === user.gid)) continue;
    if (entry.nlink > 1) {
      log.warn({ file: path, links: entry.nlink }, 'not handing over a file with more than one link; the daemon may not read it after the drop');
      continue;
    }
    lchownSync(path, user.uid, user.gid);
    files += 1;
  }
  if (files > 0) log.info({ dir: configDir, files, user: user.name }, 'handed the files in the config directory over');
}

/** Node has `process.initgroups` on POSIX, but @types/node does not declare it. */
function isInitgroups(f: unknown): f is (user: string, extraGroup: number) => void {
  return typeof f === 'function';
}

function verifyDropped(user: UserEntry): void {
  const ids = [process.getuid?.(), process.geteuid?.(), process.getgid?.(), process.getegid?.()];
  const want = [user.uid, user.uid, user.gid, user.gid];
  if (ids.some((v, i) => v !== want[i])) {
    throw new PrivilegeDropError(`privilege drop did not stick: uid/euid/gid/egid are ${ids.join('/')}, want ${want.join('/')}`);
  }
  let regained = false;
  try {
    process.setuid?.(0);
    regained = true;
  } catch {
    /* expected: EPERM */
  }
  if (regained) throw new PrivilegeDropError('privilege drop did not stick: setuid(0) succeeded');
}
