/**
 * The plist codec: a leaf module with no I/O.
 *
 * `parsePlist` accepts XML and binary (`bplist00`) property lists and returns a typed
 * `PlistValue`, enforcing limits meant for hostile input (a client socket, a file someone else
 * wrote, a phone). `buildXml` / `buildBinary` go the other way.
 *
 * Both readers are our own: xml-reader.ts (linear scans, length-capped numbers) and
 * bplist-reader.ts (every expansion charged against the limits before it is decoded). XML is
 * written by xml-writer.ts (libplist's layout, any key or string), binary by bplist-creator.
 *
 * Numbers: an integer is a JS `number` when it is a safe integer, else a `bigint`; a real is a
 * `number`. A real with an integral value (`<real>2</real>`) therefore reads like the integer 2;
 * nothing the usbmux protocol carries is affected.
 */
import bplistCreator from 'bplist-creator';
import { readBinaryPlist } from './bplist-reader.js';
import { PlistParseError } from './errors.js';
import { readXmlPlist } from './xml-reader.js';
import { writeXmlPlist } from './xml-writer.js';
import type { WritablePlistValue } from './xml-writer.js';
import type { PlistDict, PlistLimits, PlistValue, WorkMeter } from './types.js';

export { PlistParseError } from './errors.js';
export type { PlistErrorCode } from './errors.js';

export type { PlistDict, PlistLimits, PlistValue, WorkMeter } from './types.js';
export type { WritablePlistDict, WritablePlistValue } from './xml-writer.js';

/** Defaults sized for usbmux messages and pair records (a few KiB in practice). */
export const DEFAULT_PLIST_LIMITS: PlistLimits = { maxBytes: 1024 * 1024, maxDepth: 32, maxObjects: 16384 };

/** The encodings `parsePlist` may be told to accept. */
export type PlistFormat = 'xml' | 'binary';

const BPLIST_MAGIC = Buffer.from('bplist00', 'latin1');
const ANY_FORMAT: readonly PlistFormat[] = ['xml', 'binary'];

export function isBinaryPlist(buf: Buffer): boolean {
  return buf.length >= BPLIST_MAGIC.length && buf.subarray(0, BPLIST_MAGIC.length).equals(BPLIST_MAGIC);
}

/** True for a dict (a plain object), as opposed to any other plist value. */
export function isPlistDict(value: PlistValue | undefined): value is PlistDict {
  return typeof value === 'object' && !Array.isArray(value) && !Buffer.isBuffer(value) && !(value instanceof Date);
}

/** True for a value that is an integer (safe `number` or `bigint`). */
export function isPlistInteger(value: PlistValue | undefined): value is number | bigint {
  return typeof value === 'bigint' || (typeof value === 'number' && Number.isInteger(value));
}

export interface ParsePlistOptions {
  /** The encodings accepted (default both); another one is UNSUPPORTED. */
  readonly formats?: readonly PlistFormat[];
  /** Receives the reader's work (tests and fuzzers hold it to a bound). */
  readonly meter?: WorkMeter;
}

/** Parse an XML or binary plist; throws PlistParseError and nothing else. */
export function parsePlist(buf: Buffer, limits: PlistLimits = DEFAULT_PLIST_LIMITS, options: ParsePlistOptions = {}): PlistValue {
  const formats = options.formats ?? ANY_FORMAT;
  if (buf.length > limits.maxBytes) {
    throw new PlistParseError('MUXD_ERR_PLIST_TOO_LARGE', `plist of ${buf.length} bytes exceeds ${limits.maxBytes}`);
  }
  if (!isBinaryPlist(buf)) {
    if (!formats.includes('xml')) throw new PlistParseError('MUXD_ERR_PLIST_UNSUPPORTED', 'only binary plists are accepted here');
    if (options.meter !== undefined) options.meter.work += buf.length; // the UTF-8 decode
    return readXmlPlist(buf.toString('utf8'), limits, options.meter);
  }
  if (!formats.includes('binary')) throw new PlistParseError('MUXD_ERR_PLIST_UNSUPPORTED', 'binary plists are not accepted here');
  return readBinaryPlist(buf, limits, options.meter);
}

/** An XML plist document, as usbmuxd sends replies and stores pair records. */
export function buildXml(value: WritablePlistValue): Buffer {
  return Buffer.from(writeXmlPlist(value), 'utf8');
}

/** A binary plist (`bplist00`). */
export function buildBinary(value: PlistValue): Buffer {
  return bplistCreator(toBplistCreator(value));
}

/** bplist-creator writes a non-integral number as real and an integer (or bigint) as integer. */
function toBplistCreator(value: PlistValue): Parameters<typeof bplistCreator>[0] {
  if (isPlistDict(value) || Array.isArray(value)) return value;
  // bplist-creator wants a container at the root; usbmux never needs a scalar root.
  throw new PlistParseError('MUXD_ERR_PLIST_UNSUPPORTED', 'binary plist root must be a dict or array');
}
