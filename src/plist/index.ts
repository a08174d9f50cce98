/**
 * The plist codec: a leaf module with no I/O.
 *
 * `parsePlist` accepts XML and binary (`bplist00`) property lists and returns a typed
 * `PlistValue`, enforcing limits meant for hostile input (a client socket, a file someone else
 * wrote). `buildXml` / `buildBinary` go the other way.
 *
 * XML is read and written by our own code (xml-reader.ts, xml-writer.ts: libplist's layout, any
 * key or string), binary is read by bplist-parser (its limits set below, its output checked
 * again) and written by bplist-creator.
 *
 * Numbers: an integer is a JS `number` when it is a safe integer, else a `bigint`; a real is a
 * `number`. A real with an integral value (`<real>2</real>`) therefore reads like the integer 2;
 * nothing the usbmux protocol carries is affected.
 */
import { isDate, isUint8Array } from 'node:util/types';
import bplistCreator from 'bplist-creator';
import { parseBuffer, setMaxObjectCount, setMaxObjectSize } from 'bplist-parser';
import { checkBinaryPlistExpansion } from './bplist-guard.js';
import { PlistParseError } from './errors.js';
import { readXmlPlist } from './xml-reader.js';
import { writeXmlPlist } from './xml-writer.js';
import type { WritablePlistValue } from './xml-writer.js';
import type { PlistDict, PlistLimits, PlistValue } from './types.js';

export { PlistParseError } from './errors.js';
export type { PlistErrorCode } from './errors.js';

export type { PlistDict, PlistLimits, PlistValue } from './types.js';
export type { WritablePlistDict, WritablePlistValue } from './xml-writer.js';

/** Defaults sized for usbmux messages and pair records (a few KiB in practice). */
export const DEFAULT_PLIST_LIMITS: PlistLimits = { maxBytes: 1024 * 1024, maxDepth: 32, maxObjects: 16384 };

const BPLIST_MAGIC = Buffer.from('bplist00', 'latin1');

// bplist-parser keeps its limits in module state; set them once, at least as tight as ours.
// A single object (string or data) can never be larger than the input we accept.
setMaxObjectSize(DEFAULT_PLIST_LIMITS.maxBytes);
setMaxObjectCount(DEFAULT_PLIST_LIMITS.maxObjects);

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

/** Parse an XML or binary plist; throws PlistParseError. */
export function parsePlist(buf: Buffer, limits: PlistLimits = DEFAULT_PLIST_LIMITS): PlistValue {
  if (buf.length > limits.maxBytes) {
    throw new PlistParseError('MUXD_ERR_PLIST_TOO_LARGE', `plist of ${buf.length} bytes exceeds ${limits.maxBytes}`);
  }
  if (!isBinaryPlist(buf)) return readXmlPlist(buf.toString('utf8'), limits);
  // Before bplist-parser expands shared references (a tiny document can expand exponentially).
  checkBinaryPlistExpansion(buf, limits);
  let raw: unknown;
  try {
    raw = parseBuffer(buf)[0];
  } catch (err) {
    // A binary plist whose objects reference each other in a cycle recurses until the stack ends.
    if (err instanceof RangeError) {
      throw new PlistParseError('MUXD_ERR_PLIST_TOO_DEEP', 'plist nests too deeply (or is cyclic)', { cause: err });
    }
    throw new PlistParseError('MUXD_ERR_PLIST_MALFORMED', 'not a valid binary plist', { cause: err });
  }
  return checkValue(raw, limits, 0, { count: 0 });
}

/** Checks bplist-parser's output against our type and limits, and returns it typed. */
function checkValue(raw: unknown, limits: PlistLimits, depth: number, seen: { count: number }): PlistValue {
  seen.count += 1;
  if (seen.count > limits.maxObjects) {
    throw new PlistParseError('MUXD_ERR_PLIST_TOO_MANY_OBJECTS', `plist holds more than ${limits.maxObjects} objects`);
  }
  switch (typeof raw) {
    case 'string':
    case 'boolean':
    case 'bigint':
      return raw;
    case 'number':
      if (!Number.isFinite(raw)) {
        throw new PlistParseError('MUXD_ERR_PLIST_MALFORMED', 'plist number is not finite');
      }
      return raw;
    case 'object':
      break;
    case 'undefined':
    case 'function':
    case 'symbol':
      throw new PlistParseError('MUXD_ERR_PLIST_UNSUPPORTED', `unsupported plist value of type ${typeof raw}`);
  }
  if (raw === null) throw new PlistParseError('MUXD_ERR_PLIST_UNSUPPORTED', 'null is not a plist value');
  // By internal slot, not by prototype: a dict whose `__proto__` key was assigned a date or data
  // value inherits from it and would pass `instanceof` (it is refused below, as any such dict).
  if (isUint8Array(raw) && Buffer.isBuffer(raw)) return raw;
  if (isDate(raw)) {
    if (Number.isNaN(raw.getTime())) throw new PlistParseError('MUXD_ERR_PLIST_MALFORMED', 'invalid plist date');
    return raw;
  }
  if (depth + 1 > limits.maxDepth) {
    throw new PlistParseError('MUXD_ERR_PLIST_TOO_DEEP', `plist nests deeper than ${limits.maxDepth}`);
  }
  if (Array.isArray(raw)) {
    const out: PlistValue[] = [];
    for (const item of raw as unknown[]) out.push(checkValue(item, limits, depth + 1, seen));
    return out;
  }
  // A `__proto__` key assigned by a parser replaces the prototype instead of adding a key.
  if (Object.getPrototypeOf(raw) !== Object.prototype) {
    throw new PlistParseError('MUXD_ERR_PLIST_UNSUPPORTED', 'unsupported plist object (UID or __proto__ key)');
  }
  const out: PlistDict = {};
  for (const [key, value] of Object.entries(raw)) {
    out[key] = checkValue(value, limits, depth + 1, seen);
  }
  return out;
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
