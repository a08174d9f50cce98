/**
 * A pre-flight walk of a binary plist's object graph, BEFORE bplist-parser expands it.
 *
 * bplist-parser materialises every reference as a fresh JS value, so a document of a few dozen
 * objects where each array references the next one twice expands to 2^n values: a 150-byte
 * "reference bomb" keeps the event loop busy for minutes before any limit on the parsed value can
 * be checked. This walk counts what the expansion WOULD produce, with one memo entry per object
 * (linear in the number of references), and rejects documents whose expanded size, depth or
 * cycles break the limits.
 *
 * Only what the expansion needs is decoded: the trailer, the offset table and the reference
 * lists of arrays, sets and dicts. Anything it cannot make sense of is MALFORMED.
 *
 * Format facts (Apple's CFBinaryPList layout): the last 32 bytes are the trailer (offset int
 * size at 6, reference size at 7, object count at 8..16, top object at 16..24, offset table
 * position at 24..32, all big-endian). An object starts with a marker byte: high nibble type,
 * low nibble count; count 0xF means an int object (0x1n, 2^n bytes) follows with the real count.
 * Arrays (0xA) and sets (0xC) hold `count` references; dicts (0xD) hold `count` key references
 * then `count` value references.
 */
import { PlistParseError } from './errors.js';
import type { PlistLimits } from './types.js';

const TRAILER = 32;
const HEADER = 8;

interface Layout {
  readonly buf: Buffer;
  readonly offsetSize: number;
  readonly refSize: number;
  readonly count: number;
  readonly offsetTable: number;
}

/** Throws PlistParseError if expanding `buf` would exceed `limits` (or is cyclic or malformed). */
export function checkBinaryPlistExpansion(buf: Buffer, limits: PlistLimits): void {
  if (buf.length < HEADER + TRAILER) throw malformed('binary plist shorter than its trailer');
  const trailer = buf.length - TRAILER;
  const offsetSize = buf.readUInt8(trailer + 6);
  const refSize = buf.readUInt8(trailer + 7);
  const count = readSize(buf, trailer + 8);
  const top = readSize(buf, trailer + 16);
  const offsetTable = readSize(buf, trailer + 24);
  if (offsetSize < 1 || offsetSize > 8 || refSize < 1 || refSize > 8) throw malformed('bad binary plist trailer sizes');
  if (count < 1 || top >= count || offsetTable + count * offsetSize > trailer) throw malformed('bad binary plist trailer');
  const layout: Layout = { buf, offsetSize, refSize, count, offsetTable };
  // expanded[i]: values object i expands to; 0 = not yet known; -1 = on the current path.
  const expanded = new Float64Array(count);
  expand(layout, top, 1, expanded, limits);
}

function expand(layout: Layout, index: number, depth: number, expanded: Float64Array, limits: PlistLimits): number {
  const known = expanded[index] ?? 0;
  if (known === -1) throw new PlistParseError('MUXD_ERR_PLIST_TOO_DEEP', 'binary plist references itself (cycle)');
  if (known > 0) return known;
  const { buf } = layout;
  const at = readUInt(buf, layout.offsetTable + index * layout.offsetSize, layout.offsetSize);
  if (at < HEADER || at >= buf.length - TRAILER) throw malformed('binary plist object offset out of range');
  const marker = buf.readUInt8(at);
  const type = marker >> 4;
  if (type !== 0xa && type !== 0xc && type !== 0xd) {
    checkLeafLength(buf, at, marker);
    expanded[index] = 1;
    return 1;
  }
  if (depth > limits.maxDepth) throw new PlistParseError('MUXD_ERR_PLIST_TOO_DEEP', `plist nests deeper than ${limits.maxDepth}`);
  let items = marker & 0xf;
  let refs = at + 1;
  if (items === 0xf) {
    const intMarker = buf.readUInt8(at + 1);
    const width = 1 << (intMarker & 0xf);
    if (intMarker >> 4 !== 1 || width > 8 || at + 2 + width > buf.length) throw malformed('bad binary plist container count');
    items = readUInt(buf, at + 2, width);
    refs = at + 2 + width;
  }
  const refCount = type === 0xd ? items * 2 : items;
  if (refs + refCount * layout.refSize > buf.length - TRAILER) throw malformed('binary plist container runs past the object table');
  expanded[index] = -1;
  let total = 1;
  // Dict keys are not counted as values (see PlistLimits.maxObjects), only their values.
  const first = type === 0xd ? items : 0;
  for (let k = 0; k < first; k++) checkKey(layout, readUInt(buf, refs + k * layout.refSize, layout.refSize));
  for (let k = first; k < refCount; k++) {
    const child = readUInt(buf, refs + k * layout.refSize, layout.refSize);
    if (child >= layout.count) throw malformed('binary plist reference out of range');
    total += expand(layout, child, depth + 1, expanded, limits);
    if (total > limits.maxObjects) {
      throw new PlistParseError('MUXD_ERR_PLIST_TOO_MANY_OBJECTS', `plist expands to more than ${limits.maxObjects} objects`);
    }
  }
  expanded[index] = total;
  return total;
}

/**
 * data (0x4), ASCII (0x5) and UTF-16 (0x6) objects with count nibble 0xF carry their length as an
 * int object (0x1n); bplist-parser prints to stderr (around our logger) instead of failing when it is not one, so
 * such documents are refused here first.
 */
function checkLeafLength(buf: Buffer, at: number, marker: number): void {
  const type = marker >> 4;
  if ((type !== 0x4 && type !== 0x5 && type !== 0x6) || (marker & 0xf) !== 0xf) return;
  if (at + 1 >= buf.length) throw malformed('binary plist length runs past the end');
  const intMarker = buf.readUInt8(at + 1);
  const width = 1 << (intMarker & 0xf);
  if (intMarker >> 4 !== 1 || width > 8 || at + 2 + width > buf.length) throw malformed('bad binary plist length');
}

/** A dict key: an object in range whose length field is sound (keys are not counted as values). */
function checkKey(layout: Layout, index: number): void {
  if (index >= layout.count) throw malformed('binary plist reference out of range');
  const at = readUInt(layout.buf, layout.offsetTable + index * layout.offsetSize, layout.offsetSize);
  if (at < HEADER || at >= layout.buf.length - TRAILER) throw malformed('binary plist object offset out of range');
  checkLeafLength(layout.buf, at, layout.buf.readUInt8(at));
}

/** A trailer u64 that must fit comfortably in a number (anything larger is malformed here). */
function readSize(buf: Buffer, at: number): number {
  const value = buf.readBigUInt64BE(at);
  if (value > BigInt(buf.length)) throw malformed('binary plist trailer field beyond the document');
  return Number(value);
}

function readUInt(buf: Buffer, at: number, width: number): number {
  if (at + width > buf.length) throw malformed('binary plist integer runs past the end');
  if (width > 6) {
    const value = buf.readBigUInt64BE(at + width - 8) & ((1n << BigInt(width * 8)) - 1n);
    if (value > BigInt(buf.length)) throw malformed('binary plist count or offset beyond the document');
    return Number(value);
  }
  return buf.readUIntBE(at, width);
}

function malformed(message: string): PlistParseError {
  return new PlistParseError('MUXD_ERR_PLIST_MALFORMED', message);
}
