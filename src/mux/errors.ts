/**
 * Errors of the mux layer, each with a stable `code` (docs/error-codes.md, "## mux").
 *
 * A device that breaks the mux protocol raises a MuxProtocolError whose `wire` says what that
 * costs: `rst-connection` resets the one connection it happened on, `drop-device` ends the whole
 * session. The session acts on it in one place (`MuxSession.onViolation`), where it is also logged.
 * Errors of connecting (refused, timeout, gone) are the device directory's (src/devices/errors.ts).
 */
import { MuxdError } from '../errors.js';

/** All 65535 source ports of the device are in use. Result 2, as usbmuxd. */
export class NoFreePortError extends MuxdError {
  readonly code = 'MUXD_ERR_NO_FREE_PORT';
  constructor(readonly deviceId: number) {
    super(`device ${deviceId} has no free source port`);
  }
}

/** What a protocol violation costs on the wire. */
export type MuxWireConsequence = 'rst-connection' | 'drop-device';

/** The device broke the mux protocol; see `wire`. */
export abstract class MuxProtocolError extends MuxdError {
  abstract readonly wire: MuxWireConsequence;
}

/** The device sent more data than the window we advertised leaves room for. */
export class WindowOverrunError extends MuxProtocolError {
  readonly code = 'MUXD_ERR_WINDOW_OVERRUN';
  readonly wire = 'rst-connection';
  constructor(readonly unconsumed: number, readonly received: number, readonly window: number) {
    super(`device overran our window: ${unconsumed} unconsumed + ${received} received > ${window}`);
  }
}

/** Device payload did not start where the previous one ended: bytes were lost on the way. */
export class SequenceGapError extends MuxProtocolError {
  readonly code = 'MUXD_ERR_SEQUENCE_GAP';
  readonly wire = 'rst-connection';
  constructor(readonly expected: number, readonly received: number) {
    super(`device payload out of sequence: expected seq ${expected}, got ${received}`);
  }
}

/** The device did not answer our VERSION packet in time. */
export class VersionTimeoutError extends MuxProtocolError {
  readonly code = 'MUXD_ERR_VERSION_TIMEOUT';
  readonly wire = 'drop-device';
  constructor(readonly timeoutMs: number) {
    super(`no VERSION reply from device within ${timeoutMs} ms`);
  }
}

/** The device answered VERSION with a major version other than 1 or 2. */
export class UnsupportedVersionError extends MuxProtocolError {
  readonly code = 'MUXD_ERR_UNSUPPORTED_VERSION';
  readonly wire = 'drop-device';
  constructor(readonly major: number, readonly minor: number) {
    super(`device speaks unsupported mux protocol version ${major}.${minor}`);
  }
}
