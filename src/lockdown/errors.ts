/**
 * Errors of talking to a device service (lockdownd, and any plist service started through it),
 * whatever carries the bytes: a mux connection (preflight) or a TCP socket (network devices).
 *
 * Their wire consequence is decided by the caller: preflight logs and ends or retries its flow
 * (src/preflight/device-preflight.ts); a network device's proof of identity or heartbeat fails and
 * the device is not announced, or is detached (src/network).
 */
import { MuxdError } from '../errors.js';

/** lockdownd answered a request with `Error` (e.g. InvalidHostID, PairingDialogResponsePending). */
export class LockdownError extends MuxdError {
  readonly code = 'MUXD_ERR_LOCKDOWN_ERROR';
  /** The request that failed (`Request`). */
  readonly request: string;
  /** lockdownd's error string, verbatim. */
  readonly lockdownError: string;

  constructor(request: string, lockdownError: string) {
    super(`lockdown ${request} failed: ${lockdownError}`);
    this.request = request;
    this.lockdownError = lockdownError;
  }
}

/** A reply that is not a lockdown reply: too large, not a plist dict, wrong `Request`, unsolicited. */
export class LockdownProtocolError extends MuxdError {
  readonly code = 'MUXD_ERR_LOCKDOWN_PROTOCOL';
}

/** No reply within the round-trip timeout (the connection is reset). */
export class LockdownTimeoutError extends MuxdError {
  readonly code = 'MUXD_ERR_LOCKDOWN_TIMEOUT';
}

/** The lockdown (or service) connection ended while a reply was awaited, or was used after close. */
export class LockdownClosedError extends MuxdError {
  readonly code = 'MUXD_ERR_LOCKDOWN_CLOSED';
}

/**
 * The TLS session on the lockdown connection failed: handshake refused, the device presented a
 * certificate other than the pair record's, or a TLS alert mid-session.
 */
export class LockdownTlsError extends MuxdError {
  readonly code = 'MUXD_ERR_LOCKDOWN_TLS';
}

/** A stored pair record lacks what StartSession needs (HostID, host certificate or key). */
export class UnusablePairRecordError extends MuxdError {
  readonly code = 'MUXD_ERR_UNUSABLE_PAIR_RECORD';
}

/** The device connection under a stream ended abnormally (device gone, protocol error). */
export class DeviceStreamError extends MuxdError {
  readonly code = 'MUXD_ERR_DEVICE_STREAM';
}
