/**
 * Whether the pair-record directory can be trusted, checked once at startup.
 *
 * Whoever can create entries in the directory can put a symbolic link (to /etc/shadow, say) or a
 * FIFO under a record's name; whoever can rename entries in a directory above it can swap the
 * whole directory for one of their own. So, as OpenSSH's StrictModes does for ~/.ssh: after
 * resolving links, the directory and every directory above it must be owned by root or by the
 * daemon's user and must not be writable by group or others. The one exception is an ancestor that
 * is sticky (/tmp, 1777): others can add entries there but cannot rename or remove ours. The
 * directory itself gets no such exception, since a sticky directory still lets others create files.
 *
 * usbmuxd forces its directory to 02775 with the `usbmux` user's group (on Debian: plugdev, the
 * group of desktop users), which is exactly what this refuses; the error names the fix.
 */
import { realpathSync, statSync } from 'node:fs';
import type { Stats } from 'node:fs';
import { dirname } from 'node:path';
import { UnsafeConfigDirError } from './errors.js';

const GROUP_WRITE = 0o020;
const OTHER_WRITE = 0o002;
const STICKY = 0o1000;

/**
 * Throws UnsafeConfigDirError unless `dir` and its ancestors pass the rule above.
 * `trustedUids`: root and the user the daemon runs as (or will run as, after `-U`);
 * `ownerName`: that user's name, for the `chown` in the message.
 */
export function assertSafeConfigDir(dir: string, trustedUids: readonly number[], ownerName: string): void {
  let real: string;
  let st: Stats;
  try {
    real = realpathSync(dir);
    st = statSync(real);
  } catch (err) {
    throw new UnsafeConfigDirError(`cannot examine the config directory ${dir}`, { cause: err });
  }
  if (!st.isDirectory()) throw new UnsafeConfigDirError(`the config directory ${dir} is not a directory`);
  const trusted = new Set([0, ...trustedUids]);
  const hint = 'another user could plant a link or a FIFO there as a pair record';
  if (!trusted.has(st.uid)) {
    const owners = ownerName === 'root' ? 'root' : `root or ${ownerName}`;
    throw new UnsafeConfigDirError(`the config directory ${dir} is owned by uid ${st.uid}, not by ${owners}: ${hint}; fix: chown ${ownerName} ${dir} (and check its contents)`);
  }
  const writers = writableBy(st);
  if (writers !== undefined) {
    throw new UnsafeConfigDirError(`the config directory ${dir} is writable by ${writers} (mode ${modeOf(st)}): ${hint}; fix: chmod go-w ${dir}`);
  }
  for (let p = dirname(real), child = real; p !== child; child = p, p = dirname(p)) {
    let up: Stats;
    try {
      up = statSync(p);
    } catch (err) {
      throw new UnsafeConfigDirError(`cannot examine ${p}, above the config directory ${dir}`, { cause: err });
    }
    const swap = `that user could swap the config directory ${dir} for one of their own`;
    if (!trusted.has(up.uid)) {
      throw new UnsafeConfigDirError(`${p}, above the config directory ${dir}, is owned by uid ${up.uid}: ${swap}; fix: use a config directory (-C) outside it`);
    }
    const upWriters = writableBy(up);
    if (upWriters !== undefined && (up.mode & STICKY) === 0) {
      throw new UnsafeConfigDirError(`${p}, above the config directory ${dir}, is writable by ${upWriters} (mode ${modeOf(up)}) and not sticky: ${swap}; fix: chmod go-w ${p}, or use a config directory (-C) elsewhere`);
    }
  }
}

function writableBy(st: Stats): string | undefined {
  const group = (st.mode & GROUP_WRITE) !== 0;
  const other = (st.mode & OTHER_WRITE) !== 0;
  if (group && other) return 'its group and others';
  if (group) return 'its group';
  if (other) return 'others';
  return undefined;
}

function modeOf(st: Stats): string {
  return `0${(st.mode & 0o7777).toString(8)}`;
}
