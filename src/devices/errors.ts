/**
 * Errors of connecting to a device, whatever carries it. `errorToResult()` (src/server/errors.ts)
 * turns them into the Result a client gets.
 */
import { MuxdError } from '../errors.js';

/** The device refused the connection: nothing listens on the port (mux: the SYN was answered with RST). Result 3. */
export class ConnectionRefusedError extends MuxdError {
  readonly code = 'MUXD_ERR_CONNECTION_REFUSED';
  constructor(readonly port: number) {
    super(`device refused connection to port ${port}`);
  }
}

/** No answer within the connect timeout (CONNECT_TIMEOUT_MS; usbmuxd would wait forever). Result 3. */
export class ConnectTimeoutError extends MuxdError {
  readonly code = 'MUXD_ERR_CONNECT_TIMEOUT';
  constructor(readonly port: number, readonly timeoutMs: number) {
    super(`no answer from device port ${port} within ${timeoutMs} ms`);
  }
}

/** The device went away (unplug, transport failure, dropped) before or during the operation. Result 2. */
export class DeviceGoneError extends MuxdError {
  readonly code = 'MUXD_ERR_DEVICE_GONE';
  constructor(readonly deviceId: number, options?: ErrorOptions) {
    super(`device ${deviceId} is gone`, options);
  }
}

/**
 * The path to a network device failed (no route, host unreachable, or the connection to it timed
 * out at the TCP level), as opposed to the device refusing the port. Result 2: to the client the
 * device is not there, and the device's heartbeat will soon say the same.
 */
export class DeviceUnreachableError extends MuxdError {
  readonly code = 'MUXD_ERR_DEVICE_UNREACHABLE';
  constructor(readonly port: number, readonly errno: string, options?: ErrorOptions) {
    super(`device unreachable (${errno}) on port ${port}`, options);
  }
}
