/**
 * Errors of the pair-record store. Each names its usbmuxd Result number in its doc comment;
 * the server's `errorToResult()` does the mapping.
 */
import { MuxdError } from '../errors.js';

/** The id is not a UDID shape; refused before any filesystem call (CVE-2025-66004). Result 22. */
export class InvalidPairRecordIdError extends MuxdError {
  readonly code = 'MUXD_ERR_INVALID_PAIR_RECORD_ID';
}

/** The record data is shorter than 8 bytes or not a plist dict. Result 22. */
export class InvalidPairRecordDataError extends MuxdError {
  readonly code = 'MUXD_ERR_INVALID_PAIR_RECORD_DATA';
}

/** No record for this id. Result 2 (ENOENT). */
export class PairRecordNotFoundError extends MuxdError {
  readonly code = 'MUXD_ERR_PAIR_RECORD_NOT_FOUND';
}

/** Reading, writing or removing the file failed; `errno` is the Linux errno number (e.g. 28). */
export class PairRecordIoError extends MuxdError {
  readonly code = 'MUXD_ERR_PAIR_RECORD_IO';
  readonly operation: 'read' | 'write' | 'delete';
  readonly errno: number;

  constructor(operation: 'read' | 'write' | 'delete', errno: number, message: string, options?: ErrorOptions) {
    super(message, options);
    this.operation = operation;
    this.errno = errno;
  }
}
