/**
 * Builds binary property lists (`bplist00`) object by object, including ones no writer would
 * produce: shared references, cycles, keys that are not strings, integers of any declared width,
 * odd markers, lengths and offsets that lie. For tests, fuzzers and benches of the plist reader;
 * it knows the format, not the reader (src/plist).
 *
 * Layout (Apple's CFBinaryPList): "bplist00", the objects, the offset table (one big-endian
 * offset of `offsetSize` bytes per object), a 32-byte trailer: 6 unused bytes, offset size, ref
 * size, object count (u64), top object (u64), offset table position (u64). A container holds
 * big-endian refs of `refSize` bytes (indexes into the offset table).
 */

/** One object of the document: raw bytes, or a container whose refs are sized at assembly. */
export type BpNode =
  | { readonly kind: 'raw'; readonly bytes: Buffer }
  | { readonly kind: 'array' | 'set'; readonly refs: readonly number[] }
  | { readonly kind: 'dict'; readonly keys: readonly number[]; readonly values: readonly number[] };

export interface AssembleOptions {
  /** Bytes per reference (default: the smallest that holds every index). */
  readonly refSize?: number;
  /** Bytes per offset (default: the smallest that holds the offset table's position). */
  readonly offsetSize?: number;
  /** Trailer object count (default: the number of objects); a lie is allowed. */
  readonly count?: bigint;
}

/** A marker byte and, for counts of 15 or more, the int object that carries the count. */
export function marker(type: number, count: number): Buffer {
  if (count < 15) return Buffer.from([(type << 4) | count]);
  return Buffer.concat([Buffer.from([(type << 4) | 0xf]), int(count)]);
}

/** Width in bytes (1, 2, 4, 8 or 16) of the smallest int object that holds `value` unsigned. */
function widthOf(value: bigint): number {
  for (const width of [1, 2, 4, 8]) if (value < 1n << BigInt(width * 8)) return width;
  return 16;
}

/**
 * An int object (0x1n, 2^n bytes big-endian). `width` may be any power of two up to 2^15 (a
 * hostile declared width); negative values are written in two's complement of that width.
 */
export function int(value: number | bigint, width?: number): Buffer {
  const v = BigInt(value);
  const w = width ?? (v < 0n ? 8 : widthOf(v));
  const nibble = Math.log2(w);
  if (!Number.isInteger(nibble) || nibble > 15) throw new Error(`bad int width ${w}`);
  const out = Buffer.alloc(1 + w);
  out[0] = 0x10 | nibble;
  let rest = v < 0n ? (1n << BigInt(w * 8)) + v : v;
  for (let i = w; i >= 1 && rest > 0n; i--) {
    out[i] = Number(rest & 0xffn);
    rest >>= 8n;
  }
  return out;
}

/** An int object that declares `2^nibble` bytes but carries only `present` of them (a lie). */
export function wideIntHeader(nibble: number, present: number, fill = 0x7f): Buffer {
  return Buffer.concat([Buffer.from([0x10 | nibble]), Buffer.alloc(present, fill)]);
}

export function real(value: number, width: 4 | 8 = 8): Buffer {
  const out = Buffer.alloc(1 + width);
  out[0] = width === 4 ? 0x22 : 0x23;
  if (width === 4) out.writeFloatBE(value, 1);
  else out.writeDoubleBE(value, 1);
  return out;
}

/** A date: seconds since 2001-01-01 as a big-endian double, after marker `dateMarker` (0x33 is the only valid one). */
export function date(seconds: number, dateMarker = 0x33): Buffer {
  const out = Buffer.alloc(9);
  out[0] = dateMarker;
  out.writeDoubleBE(seconds, 1);
  return out;
}

export function ascii(s: string): Buffer {
  const bytes = Buffer.from(s, 'latin1');
  return Buffer.concat([marker(0x5, bytes.length), bytes]);
}

export function utf16(s: string): Buffer {
  const bytes = Buffer.from(s, 'utf16le').swap16();
  return Buffer.concat([marker(0x6, s.length), bytes]);
}

export function data(bytes: Buffer): Buffer {
  return Buffer.concat([marker(0x4, bytes.length), bytes]);
}

export const TRUE = Buffer.from([0x09]);
export const FALSE = Buffer.from([0x08]);

export function raw(bytes: Buffer): BpNode {
  return { kind: 'raw', bytes };
}
export function arrayOf(refs: readonly number[]): BpNode {
  return { kind: 'array', refs };
}
export function setOf(refs: readonly number[]): BpNode {
  return { kind: 'set', refs };
}
export function dictOf(keys: readonly number[], values: readonly number[]): BpNode {
  return { kind: 'dict', keys, values };
}

function uintBE(value: number, width: number): Buffer {
  const out = Buffer.alloc(width);
  let rest = BigInt(value);
  for (let i = width - 1; i >= 0 && rest > 0n; i--) {
    out[i] = Number(rest & 0xffn);
    rest >>= 8n;
  }
  return out;
}

function encodeNode(node: BpNode | Buffer, refSize: number): Buffer {
  if (Buffer.isBuffer(node)) return node;
  switch (node.kind) {
    case 'raw':
      return node.bytes;
    case 'array':
    case 'set':
      return Buffer.concat([marker(node.kind === 'array' ? 0xa : 0xc, node.refs.length), ...node.refs.map((r) => uintBE(r, refSize))]);
    case 'dict':
      return Buffer.concat([marker(0xd, node.keys.length), ...node.keys.map((r) => uintBE(r, refSize)), ...node.values.map((r) => uintBE(r, refSize))]);
  }
}

/** Objects (raw bytes or containers) → a complete bplist00 document with `top` as its root. */
export function assemble(objects: readonly (BpNode | Buffer)[], top = 0, options: AssembleOptions = {}): Buffer {
  const refSize = options.refSize ?? widthOf(BigInt(Math.max(0, objects.length - 1)));
  const encoded = objects.map((o) => encodeNode(o, refSize));
  const offsets: number[] = [];
  let at = 8;
  for (const e of encoded) {
    offsets.push(at);
    at += e.length;
  }
  const offsetSize = options.offsetSize ?? widthOf(BigInt(at));
  const trailer = Buffer.alloc(32);
  trailer[6] = offsetSize;
  trailer[7] = refSize;
  trailer.writeBigUInt64BE(options.count ?? BigInt(objects.length), 8);
  trailer.writeBigUInt64BE(BigInt(top), 16);
  trailer.writeBigUInt64BE(BigInt(at), 24);
  return Buffer.concat([Buffer.from('bplist00', 'latin1'), ...encoded, ...offsets.map((o) => uintBE(o, offsetSize)), trailer]);
}
