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

/**
 * The file at a record's path (or SystemConfiguration.plist) is not one the store reads: a
 * symbolic link, a FIFO, a socket, a device, a directory, or a regular file over the size cap.
 * It is left as it is. Result 2, as any failed read (usbmuxd); logged at warn with `path`.
 */
export class PairRecordFileRefusedError extends MuxdError {
  readonly code = 'MUXD_ERR_PAIR_RECORD_FILE_REFUSED';
  readonly path: string;
  constructor(path: string, what: string, options?: ErrorOptions) {
    super(`${path} is ${what}; refusing to read it (only regular files are read, never through a link)`, options);
    this.path = path;
  }
}

/** SavePairRecord: the record, encoded as XML for the disk, would exceed the cap. Result 22. */
export class PairRecordTooLargeError extends MuxdError {
  readonly code = 'MUXD_ERR_PAIR_RECORD_TOO_LARGE';
  readonly limit: number;
  constructor(limit: number, message: string) {
    super(message);
    this.limit = limit;
  }
}

/** SavePairRecord of a new id while the store holds its maximum number of records. Result 122 (EDQUOT). */
export class PairRecordLimitError extends MuxdError {
  readonly code = 'MUXD_ERR_PAIR_RECORD_LIMIT';
  readonly limit: number;
  constructor(limit: number) {
    super(`the store holds ${limit} pair records, its limit; delete stale ones (DeletePairRecord, or remove files) to pair new devices`);
    this.limit = limit;
  }
}

/**
 * The config directory (or a directory above it) can be written by someone other than the daemon's
 * user or root, or is owned by someone else: such a user could plant links or FIFOs as records.
 * The daemon refuses to start (exit 1); the message names the path and the command that fixes it.
 */
export class UnsafeConfigDirError extends MuxdError {
  readonly code = 'MUXD_ERR_UNSAFE_CONFIG_DIR';
  readonly exitCode = 1;
}

/**
 * True for the store's failures that are the operator's business (the disk, the directory, a file
 * planted in it, the store full), which the server logs at warn; a client's bad input is not.
 */
export function isStorageFault(err: unknown): boolean {
  return err instanceof PairRecordIoError
    || err instanceof PairRecordFileRefusedError
    || err instanceof PairRecordLimitError
    || err instanceof UnsafeConfigDirError;
}
