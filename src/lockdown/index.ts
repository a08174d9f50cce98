/**
 * Talking to a device's services over any byte stream: the plist framing, lockdownd's requests and
 * its in-place switch to TLS, and the credentials a stored pair record gives a session. Used by
 * preflight (over mux connections) and by network devices (over TCP).
 */
export { LockdownClient, LOCKDOWN_LABEL, LOCKDOWN_PORT, LOCKDOWN_TIMEOUT_MS, LOCKDOWN_TYPE } from './lockdown-client.js';
export type { LockdownClientOptions, StartedService, StartSessionRequest } from './lockdown-client.js';
export { DeviceDuplex } from './device-duplex.js';
export { PlistConnection } from './plist-connection.js';
export type { PlistConnectionHandler, TlsCredentials } from './plist-connection.js';
export { encodePlistFrame, parsePlistMessage, PlistFrameDecoder, FRAME_HEADER_BYTES, MAX_MESSAGE_BYTES } from './plist-framing.js';
export { sessionCredentials } from './credentials.js';
export type { SessionCredentials } from './credentials.js';
export {
  DeviceStreamError, LockdownClosedError, LockdownError, LockdownProtocolError, LockdownTimeoutError, LockdownTlsError,
  UnusablePairRecordError,
} from './errors.js';
