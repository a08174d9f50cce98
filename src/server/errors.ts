/**
 * Errors of the client-facing server, and `errorToResult()`: the ONE place where an error
 * becomes a usbmuxd Result number.
 */
import { isMuxdError, MuxdError } from '../errors.js';
import type { ErrorCode } from '../errors.js';
import { PairRecordIoError } from '../pairrecords/index.js';

/** usbmuxd's Result numbers (pair-record commands also use Linux errno values). */
export const Result = {
  OK: 0,
  BADCOMMAND: 1,
  BADDEV: 2,
  CONNREFUSED: 3,
  BADVERSION: 6,
  /** errno ENOENT: no record, or it could not be written. */
  ENOENT: 2,
  /** errno EINVAL: missing or invalid fields, or a record too large to store. */
  EINVAL: 22,
  /** errno EDQUOT: the pair-record store holds its maximum number of records. */
  EDQUOT: 122,
} as const;

/** Unknown message type or MessageType, a missing field, or a command in the wrong state. Result 1. */
export class BadCommandError extends MuxdError {
  readonly code = 'MUXD_ERR_BAD_COMMAND';
}

/** Header version other than 0 or 1. Result 6; the client stays in command state. */
export class BadVersionError extends MuxdError {
  readonly code = 'MUXD_ERR_BAD_VERSION';
}

/** Connect without a DeviceID, or to a DeviceID nobody has. Result 2. */
export class UnknownDeviceError extends MuxdError {
  readonly code = 'MUXD_ERR_UNKNOWN_DEVICE';
}

/** A plist request body that does not parse or lacks a string MessageType. Result 1 (usbmuxd: no reply). */
export class MalformedPlistRequestError extends MuxdError {
  readonly code = 'MUXD_ERR_MALFORMED_PLIST_REQUEST';
}

/** A frame header announcing more than the limit (65536). The client is closed. */
export class FrameTooLargeError extends MuxdError {
  readonly code = 'MUXD_ERR_FRAME_TOO_LARGE';
}

/** A frame header announcing fewer than 16 bytes. The client is closed. */
export class FrameTooShortError extends MuxdError {
  readonly code = 'MUXD_ERR_FRAME_TOO_SHORT';
}

/** A listening client sent something (usbmuxd closes it). */
export class InputWhileListeningError extends MuxdError {
  readonly code = 'MUXD_ERR_INPUT_WHILE_LISTENING';
}

/** A listener stopped reading and its queued notifications passed the limit. The client is closed. */
export class ListenerOverflowError extends MuxdError {
  readonly code = 'MUXD_ERR_LISTENER_OVERFLOW';
}

/** A client sent no complete request within the request timeout (of connecting, or of a frame's first byte). The client is closed. */
export class RequestTimeoutError extends MuxdError {
  readonly code = 'MUXD_ERR_REQUEST_TIMEOUT';
}

/** A client in command state sent nothing for the idle timeout after its last reply. The client is closed. */
export class ClientIdleError extends MuxdError {
  readonly code = 'MUXD_ERR_CLIENT_IDLE';
}

/**
 * A client left replies unread: past its own limit, past the request timeout while reading was
 * paused for it, or it held the most unread bytes when all clients' together reached the budget.
 * The client is closed.
 */
export class SlowReaderError extends MuxdError {
  readonly code = 'MUXD_ERR_SLOW_READER';
}

/** A new client found the client table full, for everyone or for its user. It is closed at accept. */
export class ClientLimitError extends MuxdError {
  readonly code = 'MUXD_ERR_CLIENT_LIMIT';
}

/** Something other than a socket exists at the Unix socket path. The daemon refuses to start. */
export class SocketPathOccupiedError extends MuxdError {
  readonly code = 'MUXD_ERR_SOCKET_PATH_OCCUPIED';
}

/** The Result for each code a failed command can carry; any other code is a BADCOMMAND. */
const RESULT_OF: Partial<Record<ErrorCode, number>> = {
  MUXD_ERR_BAD_COMMAND: Result.BADCOMMAND,
  MUXD_ERR_MALFORMED_PLIST_REQUEST: Result.BADCOMMAND,
  MUXD_ERR_INPUT_WHILE_LISTENING: Result.BADCOMMAND,
  MUXD_ERR_BAD_VERSION: Result.BADVERSION,
  MUXD_ERR_UNKNOWN_DEVICE: Result.BADDEV,
  MUXD_ERR_DEVICE_GONE: Result.BADDEV,
  MUXD_ERR_DEVICE_UNREACHABLE: Result.BADDEV,
  MUXD_ERR_NO_FREE_PORT: Result.BADDEV,
  MUXD_ERR_CONNECTION_REFUSED: Result.CONNREFUSED,
  MUXD_ERR_CONNECT_TIMEOUT: Result.CONNREFUSED,
  MUXD_ERR_INVALID_PAIR_RECORD_ID: Result.EINVAL,
  MUXD_ERR_INVALID_PAIR_RECORD_DATA: Result.EINVAL,
  MUXD_ERR_PAIR_RECORD_NOT_FOUND: Result.ENOENT,
  MUXD_ERR_NETWORK_IDENTITY: Result.EINVAL,
  MUXD_ERR_NETWORK_ADDRESS: Result.EINVAL,
  MUXD_ERR_PAIR_RECORD_FILE_REFUSED: Result.ENOENT,
  MUXD_ERR_PAIR_RECORD_TOO_LARGE: Result.EINVAL,
  MUXD_ERR_PAIR_RECORD_LIMIT: Result.EDQUOT,
  MUXD_ERR_UNSAFE_CONFIG_DIR: Result.ENOENT,
};

/**
 * The Result number for a failed command: the one place an error becomes one. Looks up the typed
 * `code` (so a misspelt code does not compile), never the message. Anything that is not one of
 * ours is a BADCOMMAND, and the caller logs it.
 */
export function errorToResult(err: unknown): number {
  if (!isMuxdError(err)) return Result.BADCOMMAND;
  // usbmuxd answers 2 to any failed write, and the errno of remove() to a failed delete.
  if (err instanceof PairRecordIoError) return err.operation === 'delete' ? err.errno : Result.ENOENT;
  return RESULT_OF[err.code] ?? Result.BADCOMMAND;
}
