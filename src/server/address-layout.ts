/**
 * Which NetworkAddress layout (network-address.ts) a client gets. No single blob serves every
 * client on Linux (../shared/docs/wifi-devices.md §3.3):
 *
 *   libusbmuxd's iproxy / inetcat, every release     read byte 1 as the family         → bsd
 *   libimobiledevice 1.3.0 and older                  read byte 1 as the family         → bsd
 *   libimobiledevice ≥ 1.4.0, and git snapshots       read a native sockaddr (family    → linux
 *     after 2023-06-27 (commit a172604)               u16 at 0); skip anything else
 *   pymobiledevice3, go-ios, appium, idevice crate    never dial it (Connect), or       → either
 *                                                     accept both
 *
 * The hello does not carry the libimobiledevice version, so we infer it, in this order:
 *   1. ProgName `iproxy` or `inetcat`                          → bsd
 *   2. the peer process maps libimobiledevice-1.0.so.6.N with N ≥ 1 (libtool 7:0:1, the 1.4.0
 *      release and later; 1.3.0 and every snapshot before the 1.4.0 soversion bump of
 *      2025-10-06 are .so.6.0.0, so that file name alone decides nothing)  → linux
 *   3. ClientVersionString `libusbmuxd X.Y` with X.Y ≥ 2.1 (released 2024-03-27, after
 *      a172604: distributions that ship it pair it with a post-2023 libimobiledevice)   → linux
 *   4. otherwise → bsd: what Debian 12 and Ubuntu 24.04 ship (libimobiledevice 1.3.0), and what
 *      older clients (no ClientVersionString, binary protocol) read.
 * An operator whose clients are mixed otherwise can force one layout (`override`).
 */
import { readFile as fsReadFile } from 'node:fs/promises';
import type { AddressLayout } from './network-address.js';

export type AddressLayoutSetting = 'auto' | AddressLayout;

/** The version in the file name of a mapped shared object: `libimobiledevice-1.0.so.6.1.0` → 6.1.0. */
export interface SharedObjectVersion {
  readonly major: number;
  readonly minor: number;
  readonly patch: number;
}

export interface ClientIdentity {
  /** The hello's `ProgName`. */
  readonly progName?: string | undefined;
  /** The hello's `ClientVersionString` (libusbmuxd sends `libusbmuxd <version>`). */
  readonly clientVersionString?: string | undefined;
  /** The libimobiledevice the client process has mapped, when the daemon could read its maps. */
  readonly libimobiledevice?: SharedObjectVersion | undefined;
}

export interface LayoutChoice {
  readonly layout: AddressLayout;
  /** Why, for the log line. */
  readonly reason: string;
}

const BSD_TOOLS = new Set(['iproxy', 'inetcat']);

export function chooseAddressLayout(client: ClientIdentity, setting: AddressLayoutSetting = 'auto'): LayoutChoice {
  if (setting !== 'auto') return { layout: setting, reason: 'configured' };
  const prog = baseName(client.progName);
  if (prog !== undefined && BSD_TOOLS.has(prog)) return { layout: 'bsd', reason: `${prog} reads the BSD layout` };
  const lib = client.libimobiledevice;
  if (lib !== undefined && (lib.major > 6 || (lib.major === 6 && lib.minor >= 1))) {
    return { layout: 'linux', reason: `libimobiledevice .so.${lib.major}.${lib.minor} (1.4 or later)` };
  }
  const muxd = libusbmuxdVersion(client.clientVersionString);
  if (muxd !== undefined && (muxd.major > 2 || (muxd.major === 2 && muxd.minor >= 1))) {
    return { layout: 'linux', reason: `libusbmuxd ${muxd.major}.${muxd.minor} goes with libimobiledevice 1.4 or a later snapshot` };
  }
  return { layout: 'bsd', reason: lib !== undefined ? 'libimobiledevice .so.6.0 (1.3)' : 'default (libimobiledevice 1.3)' };
}

/** `libusbmuxd 2.0.2` / `libusbmuxd 2.1.0-12-gabcdef` → { major, minor }. */
export function libusbmuxdVersion(clientVersionString: string | undefined): { major: number; minor: number } | undefined {
  const m = /^libusbmuxd\s+(\d{1,4})\.(\d{1,4})/.exec(clientVersionString ?? '');
  return m === null ? undefined : { major: Number(m[1]), minor: Number(m[2]) };
}

/** From /proc/PID/maps text: the version of the mapped `libimobiledevice-1.0.so.M.m.p`, if any. */
export function libimobiledeviceFromMaps(maps: string): SharedObjectVersion | undefined {
  const m = /\/libimobiledevice(?:-1\.0)?\.so\.(\d+)\.(\d+)\.(\d+)$/m.exec(maps);
  return m === null ? undefined : { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3]) };
}

/**
 * The libimobiledevice a process has mapped, or undefined: not mapped, the process is gone, or we
 * may not read its maps (another user's process once the daemon has dropped root: maps needs
 * ptrace-read access, so this step only helps a daemon running as root).
 */
export async function readPeerLibimobiledevice(pid: number, readFile: (path: string) => Promise<string> = (p) => fsReadFile(p, 'utf8')): Promise<SharedObjectVersion | undefined> {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    return libimobiledeviceFromMaps(await readFile(`/proc/${pid}/maps`));
  } catch {
    // ENOENT (gone) or EACCES (not ours to read): the hello decides, as documented above
    return undefined;
  }
}

function baseName(progName: string | undefined): string | undefined {
  if (progName === undefined) return undefined;
  const slash = progName.lastIndexOf('/');
  return slash < 0 ? progName : progName.slice(slash + 1);
}
