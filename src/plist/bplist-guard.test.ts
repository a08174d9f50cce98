import { describe, expect, it, vi } from 'vitest';
import { buildBinary, DEFAULT_PLIST_LIMITS, parsePlist, PlistParseError } from './index.js';
import { checkBinaryPlistExpansion } from './bplist-guard.js';

/**
 * bplist00 with `levels` arrays where array i holds `fan` references to array i+1, and a final
 * one-character string: tiny on the wire, fan^levels values once expanded.
 */
function referenceBomb(levels: number, fan: number): Buffer {
  const objects: Buffer[] = [];
  for (let i = 0; i < levels; i++) objects.push(Buffer.from([0xa0 | fan, ...Array<number>(fan).fill(i + 1)]));
  objects.push(Buffer.from([0x51, 0x78])); // "x"
  return assemble(objects, 0);
}

/** Objects → bplist00 with 2-byte offsets and 1-byte references. */
function assemble(objects: readonly Buffer[], top: number): Buffer {
  const parts: Buffer[] = [Buffer.from('bplist00', 'latin1')];
  const offsets: number[] = [];
  let at = 8;
  for (const object of objects) {
    offsets.push(at);
    parts.push(object);
    at += object.length;
  }
  const table = Buffer.alloc(objects.length * 2);
  offsets.forEach((offset, i) => table.writeUInt16BE(offset, i * 2));
  parts.push(table);
  const trailer = Buffer.alloc(32);
  trailer[6] = 2;
  trailer[7] = 1;
  trailer.writeBigUInt64BE(BigInt(objects.length), 8);
  trailer.writeBigUInt64BE(BigInt(top), 16);
  trailer.writeBigUInt64BE(BigInt(at), 24);
  parts.push(trailer);
  return Buffer.concat(parts);
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof PlistParseError ? err.code : `not a PlistParseError: ${String(err)}`;
  }
  return undefined;
}

describe('binary plist expansion guard', () => {
  it('rejects a 130-byte reference bomb (2^20 values) at once, before bplist-parser expands it', () => {
    const bomb = referenceBomb(20, 2);
    expect(bomb.length).toBeLessThan(150);
    const started = Date.now();
    expect(codeOf(() => parsePlist(bomb))).toBe('MUXD_ERR_PLIST_TOO_MANY_OBJECTS');
    // Without the guard this took 4 s (bplist-parser builds every copy first); 2^30 took hours.
    expect(Date.now() - started).toBeLessThan(500);
  });

  it('rejects deeper and wider bombs (2^30, 14^8 values) within the depth limit', () => {
    expect(codeOf(() => parsePlist(referenceBomb(30, 2)))).toBe('MUXD_ERR_PLIST_TOO_MANY_OBJECTS');
    expect(codeOf(() => parsePlist(referenceBomb(8, 14)))).toBe('MUXD_ERR_PLIST_TOO_MANY_OBJECTS');
    // 2^0 + ... + 2^10 = 2047 values: within 16384, and bplist-parser agrees on the shape.
    const small = parsePlist(referenceBomb(10, 2));
    expect(Array.isArray(small)).toBe(true);
  });

  it('counts shared references as often as they expand, not once', () => {
    // 3 levels of fan 2 → 1 + 2 + 4 + 8 = 15 values.
    const bomb = referenceBomb(3, 2);
    expect(codeOf(() => { checkBinaryPlistExpansion(bomb, { ...DEFAULT_PLIST_LIMITS, maxObjects: 15 }); })).toBeUndefined();
    expect(codeOf(() => { checkBinaryPlistExpansion(bomb, { ...DEFAULT_PLIST_LIMITS, maxObjects: 14 }); })).toBe('MUXD_ERR_PLIST_TOO_MANY_OBJECTS');
  });

  it('rejects a cycle as TOO_DEEP and deep nesting beyond maxDepth', () => {
    const cycle = assemble([Buffer.from([0xa1, 1]), Buffer.from([0xa1, 0])], 0);
    expect(codeOf(() => parsePlist(cycle))).toBe('MUXD_ERR_PLIST_TOO_DEEP');
    expect(codeOf(() => parsePlist(referenceBomb(40, 1)))).toBe('MUXD_ERR_PLIST_TOO_DEEP');
  });

  it('rejects references and offsets outside the document as MALFORMED', () => {
    const badRef = assemble([Buffer.from([0xa1, 7]), Buffer.from([0x51, 0x78])], 0);
    expect(codeOf(() => parsePlist(badRef))).toBe('MUXD_ERR_PLIST_MALFORMED');
    const badTrailer = Buffer.from(referenceBomb(2, 2));
    badTrailer.writeBigUInt64BE(0xffffffffffffn, badTrailer.length - 8);
    expect(codeOf(() => parsePlist(badTrailer))).toBe('MUXD_ERR_PLIST_MALFORMED');
  });

  it('refuses a string or dict key whose long-length marker is not an int, without bplist-parser printing to stderr', () => {
    const printed: unknown[] = [];
    const spy = vi.spyOn(console, 'error').mockImplementation((...args: unknown[]) => { printed.push(args); });
    try {
      // 0x5F: ASCII string with its length in a following int object; 0x33 is not one.
      const badString = assemble([Buffer.from([0xa1, 1]), Buffer.from([0x5f, 0x33, 0x00])], 0);
      expect(codeOf(() => parsePlist(badString))).toBe('MUXD_ERR_PLIST_MALFORMED');
      const badKey = assemble([Buffer.from([0xd1, 1, 2]), Buffer.from([0x5f, 0x44, 0x00]), Buffer.from([0x51, 0x78])], 0);
      expect(codeOf(() => parsePlist(badKey))).toBe('MUXD_ERR_PLIST_MALFORMED');
      const longOk = assemble([Buffer.from([0x5f, 0x10, 20]), Buffer.alloc(20, 0x61)], 0);
      expect(parsePlist(longOk)).toBe('a'.repeat(20));
    } finally {
      spy.mockRestore();
    }
    expect(printed).toEqual([]);
  });

  it('lets ordinary binary plists through unchanged', () => {
    const record = { HostID: 'ABC', Nested: { List: [1, 2, 3], Data: Buffer.from('key') } };
    expect(parsePlist(buildBinary(record))).toEqual(record);
  });
});
