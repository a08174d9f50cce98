/**
 * Errors of preflight's own steps: the notification proxy, new pair records, cancellation (the
 * lockdown conversation's errors are src/lockdown's).
 *
 * None of them reaches a client socket: preflight never gates a device's visibility, so the wire
 * consequence of every one is "the device stays listed, the reason is logged once, and the flow
 * either ends or waits for the next trust notification" (see device-preflight.ts).
 */
import { MuxdError } from '../errors.js';

/** The notification proxy said ProxyDeath, relayed an empty name, or its connection ended. */
export class NotificationProxyGoneError extends MuxdError {
  readonly code = 'MUXD_ERR_NOTIFICATION_PROXY_GONE';
}

/** The phone's DevicePublicKey is missing or not an RSA public key; no record can be made. */
export class DevicePublicKeyError extends MuxdError {
  readonly code = 'MUXD_ERR_DEVICE_PUBLIC_KEY';
}

/** The device was detached, or the daemon is stopping: preflight for it was cancelled. */
export class PreflightCancelledError extends MuxdError {
  readonly code = 'MUXD_ERR_PREFLIGHT_CANCELLED';
}

