/**
 * Running without root: usbmuxd's default places (/var/run/usbmuxd, /var/run/usbmuxd.pid) are
 * root's. Say so up front, with the flags that fix it, instead of failing on EACCES later.
 */
import { accessSync, constants } from 'node:fs';
import { dirname } from 'node:path';
import type { DaemonConfig } from '../config.js';
import { DEFAULT_PIDFILE } from '../config.js';

function writableDir(dir: string): boolean {
  try {
    accessSync(dir, constants.W_OK | constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * A message naming what cannot be created and the flags to use instead, or undefined when the
 * default paths in use are writable (always as root). `socketActivated`: systemd owns the socket.
 */
export function defaultPathProblem(config: DaemonConfig, root: boolean, socketActivated: boolean): string | undefined {
  if (root) return undefined;
  const problems: string[] = [];
  const fixes: string[] = [];
  const s = config.socket;
  if (!socketActivated && s.kind === 'unix' && !config.socketExplicit && !writableDir(dirname(s.path))) {
    problems.push(`the socket ${s.path}`);
    fixes.push('-S PATH (or -S 127.0.0.1:PORT) to listen elsewhere');
  }
  if (config.pidfile === DEFAULT_PIDFILE && !writableDir(dirname(config.pidfile))) {
    problems.push(`the pidfile ${config.pidfile}`);
    fixes.push('-P PATH (or -P NONE) for the pidfile');
  }
  if (problems.length === 0) return undefined;
  return `not running as root, so ${problems.join(' and ')} cannot be created; use ${fixes.join(', and ')}`;
}
