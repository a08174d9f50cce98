/**
 * systemd socket activation (sd_listen_fds(3) protocol): when LISTEN_PID is our pid and
 * LISTEN_FDS ≥ 1, the listening socket is already open as fd 3. We take fd 3 (the unit passes
 * exactly one), and unset the variables so child processes do not think they were activated.
 */
export const SD_LISTEN_FDS_START = 3;

export interface ActivationResult {
  /** The fd to listen on, or undefined when not socket-activated. */
  readonly fd: number | undefined;
  /** How many fds systemd passed (extra ones are ignored and reported). */
  readonly count: number;
}

export function takeListenFds(env: NodeJS.ProcessEnv, pid: number): ActivationResult {
  const pidText = env['LISTEN_PID'];
  const fdsText = env['LISTEN_FDS'];
  delete env['LISTEN_PID'];
  delete env['LISTEN_FDS'];
  delete env['LISTEN_FDNAMES'];
  if (pidText === undefined || fdsText === undefined) return { fd: undefined, count: 0 };
  if (!/^\d+$/.test(pidText) || Number(pidText) !== pid) return { fd: undefined, count: 0 };
  if (!/^\d+$/.test(fdsText)) return { fd: undefined, count: 0 };
  const count = Number(fdsText);
  return count >= 1 ? { fd: SD_LISTEN_FDS_START, count } : { fd: undefined, count: 0 };
}
