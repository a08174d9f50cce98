/**
 * Errors of the mux layer. Each carries a stable `code` (docs/error-codes.md, "## mux") and its
 * consequence on the wire, so the boundary that catches it knows what already happened:
 *
 * - `rst-connection`: an RST went (or goes) to the device for that one connection;
 * - `drop-device`: the whole mux device is removed and its transport closed;
 * - `none`: nothing is sent; the caller only learns the outcome.
 */
import { MuxdError } from '../errors.js';

export type MuxWireConsequence = 'rst-connection' | 'drop-device' | 'none';

/** The device answered our SYN with anything but SYN|ACK (closed port: RST). */
export class ConnectionRefusedError extends MuxdError {
  readonly code = 'MUXD_ERR_CONNECTION_REFUSED';
  /** RST is sent back unless the device's answer was itself an RST. */
  readonly wire: MuxWireConsequence = 'rst-connection';
  constructor(readonly port: number) {
    super(`device refused connection to port ${port}`);
  }
}

/** No answer to our SYN within the connect timeout (usbmuxd would wait forever). */
export class ConnectTimeoutError extends MuxdError {
  readonly code = 'MUXD_ERR_CONNECT_TIMEOUT';
  readonly wire: MuxWireConsequence = 'rst-connection';
  constructor(readonly port: number, readonly timeoutMs: number) {
    super(`no answer from device port ${port} within ${timeoutMs} ms`);
  }
}

/** The device went away (unplug, transport failure, dropped) before or during the operation. */
export class DeviceGoneError extends MuxdError {
  readonly code = 'MUXD_ERR_DEVICE_GONE';
  readonly wire: MuxWireConsequence = 'none';
  constructor(readonly deviceId: number, options?: ErrorOptions) {
    super(`device ${deviceId} is gone`, options);
  }
}

/** All 65535 source ports of the device are in use. */
export class NoFreePortError extends MuxdError {
  readonly code = 'MUXD_ERR_NO_FREE_PORT';
  readonly wire: MuxWireConsequence = 'none';
  constructor(readonly deviceId: number) {
    super(`device ${deviceId} has no free source port`);
  }
}

/** The device sent more data than the window we advertised leaves room for. */
export class WindowOverrunError extends MuxdError {
  readonly code = 'MUXD_ERR_WINDOW_OVERRUN';
  readonly wire: MuxWireConsequence = 'rst-connection';
  constructor(readonly unconsumed: number, readonly received: number, readonly window: number) {
    super(`device overran our window: ${unconsumed} unconsumed + ${received} received > ${window}`);
  }
}

/** Device payload did not start where the previous one ended: bytes were lost on the way. */
export class SequenceGapError extends MuxdError {
  readonly code = 'MUXD_ERR_SEQUENCE_GAP';
  readonly wire: MuxWireConsequence = 'rst-connection';
  constructor(readonly expected: number, readonly received: number) {
    super(`device payload out of sequence: expected seq ${expected}, got ${received}`);
  }
}

/** The device did not answer our VERSION packet in time. */
export class VersionTimeoutError extends MuxdError {
  readonly code = 'MUXD_ERR_VERSION_TIMEOUT';
  readonly wire: MuxWireConsequence = 'drop-device';
  constructor(readonly timeoutMs: number) {
    super(`no VERSION reply from device within ${timeoutMs} ms`);
  }
}

/** The device answered VERSION with a major version other than 1 or 2. */
export class UnsupportedVersionError extends MuxdError {
  readonly code = 'MUXD_ERR_UNSUPPORTED_VERSION';
  readonly wire: MuxWireConsequence = 'drop-device';
  constructor(readonly major: number, readonly minor: number) {
    super(`device speaks unsupported mux protocol version ${major}.${minor}`);
  }
}
