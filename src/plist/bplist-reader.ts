/**
 * A bounded reader for binary property lists (`bplist00`), written to face hostile input: a
 * client's SavePairRecord data, a file in the config directory, a message from a phone, a host's
 * request to the emulated lockdownd.
 *
 * Bounded by construction. Every value the reader produces, and every dict key it reads, is
 * charged BEFORE it is decoded:
 *   - one object against `maxObjects` (dict keys excepted),
 *   - its encoded size (marker, length field, payload or references) against `maxExpandedBytes`,
 * and every container against `maxDepth`. A shared reference is charged each time it is expanded,
 * so a 150-byte document whose arrays reference each other twice costs what its expansion would
 * cost and is refused when that passes the budget, after work proportional to the budget, never
 * to the expansion. Decoding an object touches only its own encoded bytes (integers are at most
 * 16 bytes, a string or data object is one copy of its payload), so the total work is linear in
 * what was charged: `work()` below counts it, and the tests hold it to that bound.
 *
 * A document that shares nothing has an expanded size below its own length (its objects are
 * disjoint slices of it), so the default budget (`maxBytes`) refuses no such document.
 *
 * Format facts (Apple's CFBinaryPList layout): "bplist00", the objects, the offset table, then a
 * 32-byte trailer: 6 unused bytes, offset size (1..8), reference size (1..8), object count, top
 * object and offset table position (u64 big-endian each). An object starts with a marker byte,
 * type in the high nibble, count in the low one; count 0xF means an int object (0x10..0x13)
 * follows holding the real count. Objects lie between the header and the offset table; here every
 * object, with what it declares, must lie there too.
 *
 * What is refused (PlistParseError): anything out of range or lying about its length, a dict key
 * that is not an ASCII or UTF-16 string object, an integer wider than 16 bytes, a real that is
 * not 4 or 8 bytes or not finite, a date whose marker is not 0x33 or whose value is not a valid
 * Date, a cycle; as UNSUPPORTED: null, fill, UID and set objects, and a `__proto__` key. Nothing is
 * ever printed.
 *
 * Integers: 1, 2 and 4 bytes are unsigned, 8 and 16 bytes two's complement (as CoreFoundation and
 * Python's plistlib read them; writers use 16 bytes only for values from 2^63 to 2^64 − 1). A safe
 * integer is a `number`, any other a `bigint`. ASCII string objects are decoded as UTF-8 (some
 * writers put UTF-8 there; pure ASCII reads the same).
 */
import { PlistParseError } from './errors.js';
import { depthLimit, expandedBudget } from './limits.js';
import type { PlistDict, PlistLimits, PlistValue, WorkMeter } from './types.js';

const HEADER = 8;
const TRAILER = 32;
/** 2001-01-01T00:00:00Z, the epoch of binary plist dates, in ms since 1970. */
const DATE_EPOCH_MS = 978307200000;

const TYPE_SIMPLE = 0x0;
const TYPE_INT = 0x1;
const TYPE_REAL = 0x2;
const TYPE_DATE = 0x3;
const TYPE_DATA = 0x4;
const TYPE_ASCII = 0x5;
const TYPE_UTF16 = 0x6;
const TYPE_UID = 0x8;
const TYPE_ARRAY = 0xa;
const TYPE_SET = 0xc;
const TYPE_DICT = 0xd;

/**
 * Read a binary plist (the caller has checked the `bplist00` magic and `maxBytes`); throws
 * PlistParseError. `meter`, when given, receives the work done, also when the read throws.
 */
export function readBinaryPlist(buf: Buffer, limits: PlistLimits, meter?: WorkMeter): PlistValue {
  const reader = new BinaryPlistReader(buf, limits);
  try {
    return reader.document();
  } finally {
    if (meter !== undefined) meter.work += reader.work;
  }
}

/** Where an object's payload starts and how many items or bytes its count field declares. */
interface Counted {
  readonly start: number;
  readonly count: number;
}

class BinaryPlistReader {
  work = 0;
  private readonly buf: Buffer;
  private readonly limits: PlistLimits;
  private readonly budget: number;
  private readonly maxDepth: number;
  private offsetSize = 0;
  private refSize = 0;
  private objectCount = 0;
  /** Position of the offset table: every object and all it declares lies in [HEADER, objectsEnd). */
  private objectsEnd = 0;
  private objects = 0;
  private expanded = 0;
  /** Objects on the current path from the root (a cycle comes back to one of them). */
  private onPath = new Uint8Array(0);

  constructor(buf: Buffer, limits: PlistLimits) {
    this.buf = buf;
    this.limits = limits;
    this.budget = expandedBudget(limits);
    this.maxDepth = depthLimit(limits);
  }

  document(): PlistValue {
    const { buf } = this;
    if (buf.length < HEADER + TRAILER + 2) throw malformed('binary plist shorter than header, one object, offset and trailer');
    const trailer = buf.length - TRAILER;
    this.offsetSize = this.byte(trailer + 6);
    this.refSize = this.byte(trailer + 7);
    if (this.offsetSize < 1 || this.offsetSize > 8 || this.refSize < 1 || this.refSize > 8) {
      throw malformed('binary plist trailer: offset or reference size outside 1..8');
    }
    const count = this.trailerField(trailer + 8);
    const top = this.trailerField(trailer + 16);
    const offsetTable = this.trailerField(trailer + 24);
    if (count < 1 || top >= count) throw malformed('binary plist trailer: no objects, or top object out of range');
    if (offsetTable <= HEADER || offsetTable + count * this.offsetSize > trailer) {
      throw malformed('binary plist trailer: offset table outside the document');
    }
    this.objectCount = count;
    this.objectsEnd = offsetTable;
    this.onPath = new Uint8Array(count);
    return this.value(top, 0);
  }

  private value(index: number, depth: number): PlistValue {
    this.objects += 1;
    if (this.objects > this.limits.maxObjects) {
      throw new PlistParseError('MUXD_ERR_PLIST_TOO_MANY_OBJECTS', `plist holds more than ${this.limits.maxObjects} objects`);
    }
    const at = this.offsetOf(index);
    const marker = this.byte(at);
    const type = marker >> 4;
    const info = marker & 0xf;
    switch (type) {
      case TYPE_SIMPLE:
        this.charge(1);
        if (info === 0x8) return false;
        if (info === 0x9) return true;
        if (info === 0x0 || info === 0xf) throw new PlistParseError('MUXD_ERR_PLIST_UNSUPPORTED', 'null and fill objects have no plist value');
        throw malformed(`unknown binary plist marker 0x${hex(marker)}`);
      case TYPE_INT:
        return this.integer(at, info);
      case TYPE_REAL:
        return this.real(at, info);
      case TYPE_DATE:
        return this.date(at, info);
      case TYPE_DATA: {
        const { start, count } = this.counted(at, info);
        this.payload(at, start, count);
        this.work += count;
        return Buffer.from(this.buf.subarray(start, start + count)); // a copy: never a view pinning the input
      }
      case TYPE_ASCII:
      case TYPE_UTF16:
        return this.string(at, type, info);
      case TYPE_ARRAY:
        return this.array(index, at, info, depth + 1);
      case TYPE_DICT:
        return this.dict(index, at, info, depth + 1);
      case TYPE_UID:
      case TYPE_SET:
        throw new PlistParseError('MUXD_ERR_PLIST_UNSUPPORTED', `binary plist ${type === TYPE_UID ? 'UID' : 'set'} objects are not supported`);
      default:
        throw malformed(`unknown binary plist marker 0x${hex(marker)}`);
    }
  }

  private integer(at: number, info: number): number | bigint {
    if (info > 4) throw malformed(`binary plist integer of 2^${info} bytes (at most 16)`);
    const width = 1 << info;
    this.payload(at, at + 1, width);
    this.work += width;
    const { buf } = this;
    let value: bigint;
    switch (width) {
      case 1:
        return buf.readUInt8(at + 1);
      case 2:
        return buf.readUInt16BE(at + 1);
      case 4:
        return buf.readUInt32BE(at + 1);
      case 8:
        value = buf.readBigInt64BE(at + 1);
        break;
      default:
        value = (buf.readBigInt64BE(at + 1) << 64n) | buf.readBigUInt64BE(at + 9);
    }
    return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  }

  private real(at: number, info: number): number {
    if (info !== 2 && info !== 3) throw malformed(`binary plist real of 2^${info} bytes (4 or 8)`);
    const width = 1 << info;
    this.payload(at, at + 1, width);
    this.work += width;
    const value = width === 4 ? this.buf.readFloatBE(at + 1) : this.buf.readDoubleBE(at + 1);
    if (!Number.isFinite(value)) throw malformed('binary plist real is not finite');
    return value;
  }

  private date(at: number, info: number): Date {
    if (info !== 3) throw malformed(`binary plist date marker 0x3${hex(info)} (only 0x33)`);
    this.payload(at, at + 1, 8);
    this.work += 8;
    const date = new Date(DATE_EPOCH_MS + 1000 * this.buf.readDoubleBE(at + 1));
    if (Number.isNaN(date.getTime())) throw malformed('binary plist date out of range');
    return date;
  }

  private string(at: number, type: number, info: number): string {
    const { start, count } = this.counted(at, info);
    const bytes = type === TYPE_UTF16 ? count * 2 : count;
    this.payload(at, start, bytes);
    this.work += bytes;
    if (type === TYPE_ASCII) return this.buf.toString('utf8', start, start + bytes);
    return Buffer.from(this.buf.subarray(start, start + bytes)).swap16().toString('utf16le');
  }

  private array(index: number, at: number, info: number, depth: number): PlistValue[] {
    this.checkDepth(depth);
    const { start, count } = this.counted(at, info);
    this.payload(at, start, count * this.refSize);
    const out: PlistValue[] = [];
    this.onPath[index] = 1;
    for (let i = 0; i < count; i++) out.push(this.value(this.ref(start + i * this.refSize), depth));
    this.onPath[index] = 0;
    return out;
  }

  private dict(index: number, at: number, info: number, depth: number): PlistDict {
    this.checkDepth(depth);
    const { start, count } = this.counted(at, info);
    this.payload(at, start, 2 * count * this.refSize);
    const values = start + count * this.refSize;
    const out: PlistDict = {};
    this.onPath[index] = 1;
    for (let i = 0; i < count; i++) {
      const key = this.key(this.ref(start + i * this.refSize));
      out[key] = this.value(this.ref(values + i * this.refSize), depth);
    }
    this.onPath[index] = 0;
    return out;
  }

  /** A dict key: an ASCII or UTF-16 string object, charged like a value but not counted as one. */
  private key(index: number): string {
    const at = this.offsetOf(index);
    const marker = this.byte(at);
    const type = marker >> 4;
    if (type !== TYPE_ASCII && type !== TYPE_UTF16) throw malformed(`binary plist dict key is not a string (marker 0x${hex(marker)})`);
    const key = this.string(at, type, marker & 0xf);
    // Assigning `__proto__` would replace the object's prototype instead of adding a key.
    if (key === '__proto__') throw new PlistParseError('MUXD_ERR_PLIST_UNSUPPORTED', 'a __proto__ key is not supported');
    return key;
  }

  private checkDepth(depth: number): void {
    if (depth > this.maxDepth) {
      throw new PlistParseError('MUXD_ERR_PLIST_TOO_DEEP', `plist nests deeper than ${this.maxDepth}`);
    }
  }

  /**
   * The count of a data, string or container object: the marker's low nibble, or for 0xF an int
   * object of 1, 2, 4 or 8 bytes right after the marker.
   */
  private counted(at: number, info: number): Counted {
    if (info !== 0xf) return { start: at + 1, count: info };
    const intMarker = this.byte(at + 1);
    if (intMarker >> 4 !== TYPE_INT || (intMarker & 0xf) > 3) {
      throw malformed(`binary plist count field is not an int of at most 8 bytes (marker 0x${hex(intMarker)})`);
    }
    const width = 1 << (intMarker & 0xf);
    if (at + 2 + width > this.objectsEnd) throw malformed('binary plist count field runs past the objects');
    const count = this.uint(at + 2, width);
    if (count > this.objectsEnd) throw malformed('binary plist count larger than the document');
    return { start: at + 2 + width, count };
  }

  /**
   * Checks that an object's payload (`bytes` from `start`) lies inside the object area, then
   * charges the whole object (marker to end of payload) against the expanded-size budget.
   */
  private payload(at: number, start: number, bytes: number): void {
    if (start + bytes > this.objectsEnd) throw malformed('binary plist object runs past the objects');
    this.charge(start + bytes - at);
  }

  private charge(bytes: number): void {
    this.expanded += bytes;
    if (this.expanded > this.budget) {
      throw new PlistParseError('MUXD_ERR_PLIST_TOO_LARGE', `binary plist expands to more than ${this.budget} bytes`);
    }
  }

  /** Follows a reference: an object index in range that is not on the current path. */
  private ref(at: number): number {
    const index = this.uint(at, this.refSize);
    if (index >= this.objectCount) throw malformed('binary plist reference out of range');
    if (this.onPath[index] === 1) throw new PlistParseError('MUXD_ERR_PLIST_TOO_DEEP', 'binary plist references itself (cycle)');
    return index;
  }

  private offsetOf(index: number): number {
    const offset = this.uint(this.objectsEnd + index * this.offsetSize, this.offsetSize);
    if (offset < HEADER || offset >= this.objectsEnd) throw malformed('binary plist object offset out of range');
    return offset;
  }

  private byte(at: number): number {
    if (at >= this.buf.length) throw malformed('binary plist truncated');
    this.work += 1;
    return this.buf.readUInt8(at);
  }

  /** Unsigned big-endian of 1..8 bytes; callers compare it with sizes below 2^32, so larger is saturated. */
  private uint(at: number, width: number): number {
    if (at + width > this.buf.length) throw malformed('binary plist truncated');
    this.work += width;
    if (width <= 6) return this.buf.readUIntBE(at, width);
    const value = this.buf.readBigUInt64BE(at + width - 8) & ((1n << BigInt(width * 8)) - 1n);
    return value > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(value);
  }

  /** A trailer u64: anything beyond the document's length is out of range for every use. */
  private trailerField(at: number): number {
    this.work += 8;
    const value = this.buf.readBigUInt64BE(at);
    if (value > BigInt(this.buf.length)) throw malformed('binary plist trailer field beyond the document');
    return Number(value);
  }
}

function hex(n: number): string {
  return n.toString(16).padStart(2, '0');
}

function malformed(message: string): PlistParseError {
  return new PlistParseError('MUXD_ERR_PLIST_MALFORMED', message);
}
