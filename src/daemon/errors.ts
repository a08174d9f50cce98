/**
 * Process-level failures. None of them has a wire consequence: each ends startup with a clear
 * message and a non-zero exit code (`exitCode`), logged once by main.
 */
import { MuxdError } from '../errors.js';

/** Another instance holds the instance lock. */
export class InstanceRunningError extends MuxdError {
  readonly code = 'MUXD_ERR_INSTANCE_RUNNING';
  readonly exitCode = 1;
  constructor(readonly pid: number | undefined, readonly lockName: string) {
    super(`Another instance is already running${pid === undefined ? '' : ` (pid ${pid})`}; refusing to start`);
  }
}

/** The pidfile could not be written or the lock could not be taken for a reason other than a running instance. */
export class PidfileError extends MuxdError {
  readonly code = 'MUXD_ERR_PIDFILE';
  readonly exitCode = 1;
}

/** `-U USER` names no user, or the drop did not stick. */
export class PrivilegeDropError extends MuxdError {
  readonly code = 'MUXD_ERR_PRIVILEGE_DROP';
  readonly exitCode = 1;
}

/** `--socket-group` names no group. */
export class UnknownGroupError extends MuxdError {
  readonly code = 'MUXD_ERR_UNKNOWN_GROUP';
  readonly exitCode = 1;
}

/** The listening socket could not be created (permissions, address in use, bad fd). */
export class ListenError extends MuxdError {
  readonly code = 'MUXD_ERR_LISTEN';
  readonly exitCode = 1;
}

/** `-x`/`-X`: the running instance was found but could not be signalled. */
export class SignalInstanceError extends MuxdError {
  readonly code = 'MUXD_ERR_SIGNAL_INSTANCE';
  readonly exitCode = 1;
}
