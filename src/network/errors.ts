/**
 * Errors of network devices (src/network). None reaches a client directly: a device that fails
 * them is not announced (or is detached), the reason is logged once, and the daemon keeps trying
 * to reach it (src/network/reachability.ts).
 */
import { MuxdError } from '../errors.js';

/**
 * The peer at an advertised address is not the phone its pair record names: the record has no
 * DeviceCertificate to check it against, or the device reports another UniqueDeviceID.
 */
export class NetworkIdentityError extends MuxdError {
  readonly code = 'MUXD_ERR_NETWORK_IDENTITY';
}

/**
 * The phone accepted a session and handed out its heartbeat service, but sent no Marco (within
 * the proving bound) or closed it first: a heartbeat we cannot hold is no proof of a live device.
 */
export class HeartbeatSilentError extends MuxdError {
  readonly code = 'MUXD_ERR_HEARTBEAT_SILENT';
}
