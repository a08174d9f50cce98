/**
 * Preflight: what the daemon does with a device beside announcing it — check its pairing, bring
 * up the Trust prompt, pair, save the record, raise Paired. main.ts starts a {@link Preflight}
 * unless `-p` is given.
 */
export { Preflight } from './preflight.js';
export type { PreflightOptions } from './preflight.js';
export type { PreflightState } from './device-preflight.js';
export { isModernDevice } from './device-preflight.js';
export { LockdownClient, LOCKDOWN_PORT, LOCKDOWN_TIMEOUT_MS, LOCKDOWN_TYPE } from './lockdown-client.js';
export { MuxDuplex } from './mux-duplex.js';
export { generatePairRecord, sessionCredentials } from './pair-record.js';
export {
  NOTIFICATION_PROXY_SERVICE, NOTIFICATION_REQUEST_HOST_BUID, NOTIFICATION_REQUEST_PAIR, NotificationProxyClient,
} from './notification-proxy.js';
export {
  DevicePublicKeyError, LockdownClosedError, LockdownError, LockdownProtocolError, LockdownTimeoutError, LockdownTlsError,
  MuxStreamError, NotificationProxyGoneError, PreflightCancelledError, UnusablePairRecordError,
} from './errors.js';
