/**
 * Errors of preflight: the lockdown conversation, the notification proxy, new pair records.
 *
 * None of them reaches a client socket: preflight never gates a device's visibility, so the wire
 * consequence of every one is "the device stays listed, the reason is logged once, and the flow
 * either ends or waits for the next trust notification" (see device-preflight.ts).
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
 * The TLS session on the lockdown connection failed: handshake refused, or a TLS alert mid-session.
 * With a stored record this means the record is stale: preflight deletes it and starts over (once).
 */
export class LockdownTlsError extends MuxdError {
  readonly code = 'MUXD_ERR_LOCKDOWN_TLS';
}

/** The notification proxy said ProxyDeath, relayed an empty name, or its connection ended. */
export class NotificationProxyGoneError extends MuxdError {
  readonly code = 'MUXD_ERR_NOTIFICATION_PROXY_GONE';
}

/** A stored pair record lacks what StartSession needs (HostID, host certificate or key). */
export class UnusablePairRecordError extends MuxdError {
  readonly code = 'MUXD_ERR_UNUSABLE_PAIR_RECORD';
}

/** The phone's DevicePublicKey is missing or not an RSA public key; no record can be made. */
export class DevicePublicKeyError extends MuxdError {
  readonly code = 'MUXD_ERR_DEVICE_PUBLIC_KEY';
}

/** The device was detached, or the daemon is stopping: preflight for it was cancelled. */
export class PreflightCancelledError extends MuxdError {
  readonly code = 'MUXD_ERR_PREFLIGHT_CANCELLED';
}

/** The mux connection under a stream ended abnormally (device gone, protocol error). */
export class MuxStreamError extends MuxdError {
  readonly code = 'MUXD_ERR_MUX_STREAM';
}
