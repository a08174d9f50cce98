import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import { parseBuffer } from 'bplist-parser';
import { buildBinary, DEFAULT_PLIST_LIMITS, parsePlist, PlistParseError } from './index.js';
import type { PlistLimits, PlistValue } from './index.js';
import { readBinaryPlist } from './bplist-reader.js';
import { expandedBudget } from './limits.js';
import { arrayOf, ascii, assemble, data, date, dictOf, FALSE, int, marker, raw, real, setOf, TRUE, utf16, wideIntHeader } from '../../test/support/bplist-builder.js';
import { keyBomb, oddDate, referenceBomb, sharedDataBomb, sharedStringBomb, wideIntBomb } from '../../test/support/plist-attacks.js';
import { binaryWorkBound, treeBplist, validBplist } from '../../test/support/plist-arbitraries.js';

/**
 * Written by Python 3.11's plistlib (an independent writer): a dict of every scalar kind, keys in
 * ASCII and UTF-16, integers of 1, 2, 4, 8 (negative) and 16 bytes (2^64 − 1), and 'ABC' shared
 * by three references (plistlib writes equal scalars once).
 */
const PLISTLIB = Buffer.from(
  '62706c6973743030de0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c56486f737449446700dc006e00ef0063006f00640065' +
    '55536d616c6c5354776f54466f7572554569676874584e65676174697665554d61783634545265616c545768656e544461746153596573524e6f54' +
    '4c69737453414243660073006e006f007700202603100711012c120001117013000001000000000013fffffffffffffffb1400000000000000' +
    '00ffffffffffffffff233fe00000000000003341c5a1da528000004500016b65790908a40f0f1d20a21e1f10011002d008252c3b41454a50595f' +
    '64696e72757a7e8b8d90959ea7b8c1cad0d1d2d7dadcde00000000000001010000000000000021000000000000000000000000000000df',
  'hex',
);

const PLISTLIB_VALUE = {
  HostID: 'ABC',
  'Ünïcode': 'snow ☃',
  Small: 7,
  Two: 300,
  Four: 70000,
  Eight: 2 ** 40,
  Negative: -5,
  Max64: 2n ** 64n - 1n,
  Real: 0.5,
  When: new Date('2024-01-02T03:04:05Z'),
  Data: Buffer.from('\x00\x01key', 'latin1'),
  Yes: true,
  No: false,
  List: ['ABC', 'ABC', [1, 2], {}],
};

function outcome(buf: Buffer, limits: PlistLimits = DEFAULT_PLIST_LIMITS): string {
  try {
    readBinaryPlist(buf, limits);
  } catch (err) {
    return err instanceof PlistParseError ? err.code : `not a PlistParseError: ${String(err)}`;
  }
  return 'value';
}

function work(buf: Buffer, limits: PlistLimits = DEFAULT_PLIST_LIMITS): number {
  const meter = { work: 0 };
  try {
    readBinaryPlist(buf, limits, meter);
  } catch {
    // only the work matters here
  }
  return meter.work;
}

/** bplist-parser's reading, the oracle (only ever fed documents our reader accepted). */
function oracle(buf: Buffer): unknown {
  return parseBuffer(buf)[0];
}

let printed: unknown[];
beforeEach(() => {
  printed = [];
  for (const method of ['error', 'warn', 'log'] as const) vi.spyOn(console, method).mockImplementation((...args: unknown[]) => { printed.push(args); });
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: unknown) => { printed.push(chunk); return true; });
});
afterEach(() => {
  vi.restoreAllMocks();
  expect(printed, 'nothing may print around the logger').toEqual([]);
});

describe('readBinaryPlist: documents real writers produce', () => {
  it('reads plistlib output exactly, shared references and 16-byte integers included', () => {
    expect(readBinaryPlist(PLISTLIB, DEFAULT_PLIST_LIMITS)).toEqual(PLISTLIB_VALUE);
  });

  it('agrees with bplist-parser on plistlib output', () => {
    expect(readBinaryPlist(PLISTLIB, DEFAULT_PLIST_LIMITS)).toEqual(oracle(PLISTLIB));
  });

  it('returns data as copies, not views of the input', () => {
    const buf = assemble([data(Buffer.from('abc'))]);
    const value = readBinaryPlist(buf, DEFAULT_PLIST_LIMITS) as Buffer;
    buf.fill(0);
    expect(value.toString()).toBe('abc');
  });

  it('reads 1-, 2- and 4-byte integers unsigned, 8 and 16 bytes as two\'s complement', () => {
    const read = (b: Buffer): PlistValue => readBinaryPlist(assemble([arrayOf([1]), b]), DEFAULT_PLIST_LIMITS);
    expect(read(int(0xff, 1))).toEqual([255]);
    expect(read(int(0xffff, 2))).toEqual([65535]);
    expect(read(int(0xffffffff, 4))).toEqual([4294967295]);
    expect(read(int(-1, 8))).toEqual([-1]);
    expect(read(int(2n ** 63n - 1n, 8))).toEqual([2n ** 63n - 1n]);
    expect(read(int(-(2n ** 63n), 8))).toEqual([-(2n ** 63n)]);
    expect(read(int(2n ** 64n - 1n, 16))).toEqual([2n ** 64n - 1n]);
    expect(read(int(-(2n ** 127n), 16))).toEqual([-(2n ** 127n)]);
    expect(read(int(-2, 16))).toEqual([-2]);
  });

  it('reads 4- and 8-byte reals, UTF-16 strings with surrogates, long counts, dates', () => {
    const long = 'y'.repeat(300);
    const buf = assemble([arrayOf([1, 2, 3, 4, 5]), real(0.5, 4), utf16('a\u{1F600}\uD800'), ascii(long), date(-1), data(Buffer.alloc(20, 7))]);
    expect(readBinaryPlist(buf, DEFAULT_PLIST_LIMITS)).toEqual([0.5, 'a\u{1F600}\uD800', long, new Date(Date.UTC(2000, 11, 31, 23, 59, 59)), Buffer.alloc(20, 7)]);
  });

  it('agrees with bplist-parser on every valid document the structure-aware generator builds', () => {
    fc.assert(fc.property(validBplist(), (buf) => {
      let ours: PlistValue;
      try {
        ours = readBinaryPlist(buf, DEFAULT_PLIST_LIMITS);
      } catch (err) {
        // The generator stays within the default limits, so a refusal here is a reader bug.
        throw new Error(`refused a valid document: ${String(err)}\n${buf.toString('hex')}`);
      }
      expect(ours).toEqual(oracle(buf));
    }), { numRuns: 300 });
  });

  it('accepts any document without shared references within a budget of its own length', () => {
    fc.assert(fc.property(treeBplist(), (buf) => {
      const limits = { maxBytes: buf.length, maxExpandedBytes: buf.length, maxDepth: 64, maxObjects: 1 << 20 };
      expect(outcome(buf, limits)).toBe('value');
    }), { numRuns: 300 });
  });

  it('reads what buildBinary (bplist-creator) writes as bplist-parser does', () => {
    const value = { HostID: 'H', Nested: { List: [1, 2, 3, 'H', 'H'], Data: Buffer.from('key'), Big: 2n ** 64n - 1n, Neg: -7 } };
    const buf = buildBinary(value);
    expect(readBinaryPlist(buf, DEFAULT_PLIST_LIMITS)).toEqual(value);
    expect(readBinaryPlist(buf, DEFAULT_PLIST_LIMITS)).toEqual(oracle(buf));
  });
});

describe('readBinaryPlist: the attacks of issue 13', () => {
  it('refuses a dict whose key is a nested shared reference, at once (bplist-parser built a 2^25-character key)', () => {
    expect(outcome(keyBomb(24))).toBe('MUXD_ERR_PLIST_MALFORMED');
    expect(work(keyBomb(24))).toBeLessThan(100);
  });

  it('refuses an integer wider than 16 bytes, whatever references it', () => {
    for (const nibble of [5, 8, 15]) expect(outcome(wideIntBomb(1000, nibble, 64))).toBe('MUXD_ERR_PLIST_MALFORMED');
    expect(work(wideIntBomb(1000, 15, 32768))).toBeLessThan(100);
    // 16 bytes is the widest integer: 1000 of them are fine.
    expect(outcome(assemble([arrayOf(Array<number>(1000).fill(1)), int(2n ** 100n, 16)]))).toBe('value');
  });

  it('charges a shared string each time it is expanded: 30 KB × 16000 stops at the budget', () => {
    const bomb = sharedStringBomb(16000, 30_000);
    expect(outcome(bomb)).toBe('MUXD_ERR_PLIST_TOO_LARGE');
    const spent = work(bomb);
    expect(spent).toBeLessThanOrEqual(binaryWorkBound(DEFAULT_PLIST_LIMITS));
    // 34 copies of 30 004 bytes fit in the 1 MiB default; the 35th is refused before it is copied.
    expect(spent).toBeGreaterThan(34 * 30_000);
    expect(spent).toBeLessThan(35 * 30_000);
    expect(outcome(sharedStringBomb(34, 30_000))).toBe('value');
    expect(outcome(sharedStringBomb(35, 30_000))).toBe('MUXD_ERR_PLIST_TOO_LARGE');
    expect(outcome(sharedDataBomb(16000, 1000))).toBe('MUXD_ERR_PLIST_TOO_LARGE');
  });

  it('refuses reference bombs by value count or expanded size, after work within the bound', () => {
    for (const [levels, fan] of [[20, 2], [30, 2], [8, 14], [6, 14]] as const) {
      const bomb = referenceBomb(levels, fan);
      expect(outcome(bomb)).toMatch(/^MUXD_ERR_PLIST_TOO_(MANY_OBJECTS|LARGE|DEEP)$/);
      expect(work(bomb)).toBeLessThanOrEqual(binaryWorkBound(DEFAULT_PLIST_LIMITS));
    }
    // 2^0 + ... + 2^10 = 2047 values: within the limits.
    expect(Array.isArray(readBinaryPlist(referenceBomb(10, 2), DEFAULT_PLIST_LIMITS))).toBe(true);
  });

  it('refuses a date whose marker is not 0x33 without printing anything', () => {
    for (let m = 0x30; m <= 0x3f; m++) {
      expect(outcome(oddDate(m))).toBe(m === 0x33 ? 'value' : 'MUXD_ERR_PLIST_MALFORMED');
    }
  });
});

describe('readBinaryPlist: limits', () => {
  const limits = (over: Partial<PlistLimits>): PlistLimits => ({ ...DEFAULT_PLIST_LIMITS, ...over });

  it('counts shared references as often as they expand, not once', () => {
    // 3 levels of fan 2 → 1 + 2 + 4 + 8 = 15 values.
    const bomb = referenceBomb(3, 2);
    expect(outcome(bomb, limits({ maxObjects: 15 }))).toBe('value');
    expect(outcome(bomb, limits({ maxObjects: 14 }))).toBe('MUXD_ERR_PLIST_TOO_MANY_OBJECTS');
  });

  it('charges the encoded size of every expansion and of every key against maxExpandedBytes', () => {
    // {"ab": [ "xyz", "xyz" ]}: dict 3 + key 3 + array 3 + 2 × string 4 = 17 bytes.
    const buf = assemble([dictOf([1], [2]), ascii('ab'), arrayOf([3, 3]), ascii('xyz')]);
    expect(outcome(buf, limits({ maxExpandedBytes: 17 }))).toBe('value');
    expect(outcome(buf, limits({ maxExpandedBytes: 16 }))).toBe('MUXD_ERR_PLIST_TOO_LARGE');
    expect(expandedBudget({ maxBytes: 5, maxDepth: 1, maxObjects: 1 })).toBe(5);
  });

  it('refuses nesting beyond maxDepth and any cycle', () => {
    const chain = referenceBomb(5, 1); // five nested arrays
    expect(outcome(chain, limits({ maxDepth: 5 }))).toBe('value');
    expect(outcome(chain, limits({ maxDepth: 4 }))).toBe('MUXD_ERR_PLIST_TOO_DEEP');
    expect(outcome(assemble([arrayOf([1]), arrayOf([0])]))).toBe('MUXD_ERR_PLIST_TOO_DEEP');
    expect(outcome(assemble([dictOf([1], [0]), ascii('k')]))).toBe('MUXD_ERR_PLIST_TOO_DEEP');
    expect(outcome(assemble([arrayOf([0])]))).toBe('MUXD_ERR_PLIST_TOO_DEEP');
  });

  it('stops at depth 256 whatever maxDepth says (deeper would exhaust the stack)', () => {
    const unbounded = { maxBytes: 1 << 24, maxDepth: 1 << 20, maxObjects: 1 << 20 };
    expect(outcome(referenceBomb(255, 1), unbounded)).toBe('value'); // 255 arrays and a string
    expect(outcome(referenceBomb(256, 1), unbounded)).toBe('value');
    expect(outcome(referenceBomb(257, 1), unbounded)).toBe('MUXD_ERR_PLIST_TOO_DEEP');
    expect(outcome(referenceBomb(20000, 1), unbounded)).toBe('MUXD_ERR_PLIST_TOO_DEEP');
  });

  it('goes through parsePlist, which checks maxBytes first', () => {
    expect(() => parsePlist(PLISTLIB, limits({ maxBytes: PLISTLIB.length - 1 }))).toThrow(/exceeds/);
    expect(parsePlist(PLISTLIB)).toEqual(PLISTLIB_VALUE);
  });
});

describe('readBinaryPlist: refusals', () => {
  const k = raw(ascii('k'));
  it.each<[string, Buffer, string]>([
    ['a key that is an integer', assemble([dictOf([1], [1]), int(1)]), 'MUXD_ERR_PLIST_MALFORMED'],
    ['a key that is data', assemble([dictOf([1], [1]), data(Buffer.from('k'))]), 'MUXD_ERR_PLIST_MALFORMED'],
    ['a key that is a dict', assemble([dictOf([1], [2]), dictOf([], []), TRUE]), 'MUXD_ERR_PLIST_MALFORMED'],
    ['a __proto__ key', assemble([dictOf([1], [2]), ascii('__proto__'), TRUE]), 'MUXD_ERR_PLIST_UNSUPPORTED'],
    ['a UTF-16 __proto__ key', assemble([dictOf([1], [2]), utf16('__proto__'), TRUE]), 'MUXD_ERR_PLIST_UNSUPPORTED'],
    ['null', assemble([Buffer.from([0x00])]), 'MUXD_ERR_PLIST_UNSUPPORTED'],
    ['fill', assemble([Buffer.from([0x0f])]), 'MUXD_ERR_PLIST_UNSUPPORTED'],
    ['an unknown simple marker', assemble([Buffer.from([0x01])]), 'MUXD_ERR_PLIST_MALFORMED'],
    ['a UID', assemble([Buffer.from([0x80, 0x01])]), 'MUXD_ERR_PLIST_UNSUPPORTED'],
    ['a set', assemble([setOf([1]), TRUE]), 'MUXD_ERR_PLIST_UNSUPPORTED'],
    ['an unknown object type', assemble([Buffer.from([0x70])]), 'MUXD_ERR_PLIST_MALFORMED'],
    ['a 32-byte integer', assemble([wideIntHeader(5, 32)]), 'MUXD_ERR_PLIST_MALFORMED'],
    ['a 2-byte real', assemble([Buffer.from([0x21, 0, 0])]), 'MUXD_ERR_PLIST_MALFORMED'],
    ['a NaN real', assemble([real(Number.NaN)]), 'MUXD_ERR_PLIST_MALFORMED'],
    ['an infinite real', assemble([real(Number.POSITIVE_INFINITY, 4)]), 'MUXD_ERR_PLIST_MALFORMED'],
    ['a date beyond what Date holds', assemble([date(1e300)]), 'MUXD_ERR_PLIST_MALFORMED'],
    ['a string longer than the objects', assemble([Buffer.concat([marker(0x5, 100), Buffer.from('short')])]), 'MUXD_ERR_PLIST_MALFORMED'],
    ['a UTF-16 string whose units run into the offset table', assemble([Buffer.from([0x63, 0, 0x61, 0, 0x62])]), 'MUXD_ERR_PLIST_MALFORMED'],
    ['an array longer than the objects', assemble([Buffer.from([0xaf, 0x12, 0x7f, 0xff, 0xff, 0xff])]), 'MUXD_ERR_PLIST_MALFORMED'],
    ['a count field that is not an int', assemble([Buffer.from([0x5f, 0x33, 0x00]), k]), 'MUXD_ERR_PLIST_MALFORMED'],
    ['a 16-byte count field', assemble([Buffer.concat([Buffer.from([0x5f]), int(3, 16), Buffer.from('abc')])]), 'MUXD_ERR_PLIST_MALFORMED'],
    ['an integer cut by the offset table', assemble([Buffer.from([0x13, 1, 2])]), 'MUXD_ERR_PLIST_MALFORMED'],
    ['a reference out of range', assemble([arrayOf([7]), TRUE]), 'MUXD_ERR_PLIST_MALFORMED'],
  ])('%s', (_name, buf, code) => {
    expect(outcome(buf)).toBe(code);
  });

  it('refuses trailers that lie', () => {
    const good = assemble([arrayOf([1]), TRUE]);
    const patched = (at: number, value: bigint | number, width: 1 | 8): Buffer => {
      const b = Buffer.from(good);
      if (width === 1) b[b.length - 32 + at] = Number(value);
      else b.writeBigUInt64BE(BigInt(value), b.length - 32 + at);
      return b;
    };
    expect(outcome(good)).toBe('value');
    for (const bad of [
      patched(6, 0, 1), patched(6, 9, 1), patched(7, 0, 1), patched(7, 9, 1), // offset / ref size
      patched(8, 0, 8), patched(8, 3, 8), patched(8, 2n ** 64n - 1n, 8), // object count
      patched(16, 2, 8), patched(16, 2n ** 63n, 8), // top object
      patched(24, 0, 8), patched(24, 8, 8), patched(24, good.length, 8), patched(24, 2n ** 64n - 1n, 8), // offset table
      Buffer.concat([Buffer.from('bplist00'), Buffer.alloc(20)]),
    ]) {
      expect(outcome(bad)).toBe('MUXD_ERR_PLIST_MALFORMED');
    }
    // An offset that points into the header or the offset table.
    const intoHeader = Buffer.from(good);
    intoHeader[intoHeader.length - 32 - 2] = 3;
    expect(outcome(intoHeader)).toBe('MUXD_ERR_PLIST_MALFORMED');
    const intoTable = Buffer.from(good);
    intoTable[intoTable.length - 32 - 1] = intoTable.length - 33;
    expect(outcome(intoTable)).toBe('MUXD_ERR_PLIST_MALFORMED');
  });

  it('refuses every truncation of a real document, and throws nothing but PlistParseError for any one-byte change', () => {
    for (let n = 0; n < PLISTLIB.length; n++) {
      const cut = PLISTLIB.subarray(0, n);
      expect(n < 8 ? 'skip' : outcome(cut), `cut at ${n}`).toMatch(/^(skip|MUXD_ERR_PLIST_MALFORMED)$/);
    }
    for (let at = 8; at < PLISTLIB.length; at++) {
      for (const byte of [0x00, 0x01, 0x0f, 0x10, 0x14, 0x1f, 0x33, 0x5f, 0x6f, 0x80, 0xaf, 0xdf, 0xff]) {
        const b = Buffer.from(PLISTLIB);
        b[at] = byte;
        expect(outcome(b)).toMatch(/^(value|MUXD_ERR_PLIST_[A-Z_]+)$/);
        expect(work(b)).toBeLessThanOrEqual(binaryWorkBound(DEFAULT_PLIST_LIMITS));
      }
    }
  });

  it('keeps FALSE distinct from TRUE', () => {
    expect(readBinaryPlist(assemble([arrayOf([1, 2]), TRUE, FALSE]), DEFAULT_PLIST_LIMITS)).toEqual([true, false]);
  });
});
