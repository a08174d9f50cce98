/**
 * Errors of the plist codec. One class; the `code` says which limit or rule the input broke.
 * Wire consequence: the caller decides (the server answers Result 1 to a malformed request body,
 * the pair-record store answers 22 to undecodable record data).
 */
import { MuxdError } from '../errors.js';

export type PlistErrorCode =
  /** Not XML nor binary plist, or the parser rejected it. */
  | 'MUXD_ERR_PLIST_MALFORMED'
  /** The input is longer than `maxBytes`. */
  | 'MUXD_ERR_PLIST_TOO_LARGE'
  /** Containers nest deeper than `maxDepth` (or a binary plist references itself). */
  | 'MUXD_ERR_PLIST_TOO_DEEP'
  /** More than `maxObjects` values in total. */
  | 'MUXD_ERR_PLIST_TOO_MANY_OBJECTS'
  /** A value has no plist representation (null, UID, a `__proto__` key, undefined). */
  | 'MUXD_ERR_PLIST_UNSUPPORTED';

export class PlistParseError extends MuxdError {
  readonly code: PlistErrorCode;

  constructor(code: PlistErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}
