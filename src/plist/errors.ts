/**
 * Errors of the plist codec. One class; the `code` says which limit or rule the input broke.
 * Wire consequence: the caller decides (the server answers Result 1 to a malformed request body,
 * the pair-record store answers 22 to undecodable record data).
 */
import { MuxdError } from '../errors.js';
import type { ErrorCode } from '../errors.js';

/**
 * MUXD_ERR_PLIST_MALFORMED: not XML nor binary plist, or the parser rejected it;
 * MUXD_ERR_PLIST_TOO_LARGE: the input is longer than `maxBytes`;
 * MUXD_ERR_PLIST_TOO_DEEP: containers nest deeper than `maxDepth` (or a binary plist references itself);
 * MUXD_ERR_PLIST_TOO_MANY_OBJECTS: more than `maxObjects` values in total;
 * MUXD_ERR_PLIST_UNSUPPORTED: a value has no plist representation (null, UID, a `__proto__` key, undefined).
 */
export type PlistErrorCode = Extract<ErrorCode, `MUXD_ERR_PLIST_${string}`>;

export class PlistParseError extends MuxdError {
  readonly code: PlistErrorCode;

  constructor(code: PlistErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}
