/**
 * Preflight: what the daemon does with a device beside announcing it — check its pairing, bring
 * up the Trust prompt, pair, save the record, raise Paired. main.ts starts a {@link Preflight}
 * unless `-p` is given.
 */
export { Preflight } from './preflight.js';
export type { PreflightOptions } from './preflight.js';
export type { PreflightState } from './device-preflight.js';
export { isModernDevice } from './device-preflight.js';
export { generatePairRecord } from './pair-record.js';
export {
  NOTIFICATION_PROXY_SERVICE, NOTIFICATION_REQUEST_HOST_BUID, NOTIFICATION_REQUEST_PAIR, NotificationProxyClient,
} from './notification-proxy.js';
export { DevicePublicKeyError, NotificationProxyGoneError, PreflightCancelledError } from './errors.js';
