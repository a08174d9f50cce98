import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { buildBinary, buildXml, isPlistDict, isPlistInteger, parsePlist, PlistParseError } from './index.js';
import type { PlistDict, PlistValue } from './index.js';

/** A Connect request exactly as libusbmuxd writes it (XML, tabs, no trailing NUL). */
const CONNECT_XML = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>ClientVersionString</key>
	<string>libusbmuxd 2.0.2</string>
	<key>DeviceID</key>
	<integer>1</integer>
	<key>MessageType</key>
	<string>Connect</string>
	<key>PortNumber</key>
	<integer>32498</integer>
	<key>ProgName</key>
	<string>ideviceinfo</string>
	<key>kLibUSBMuxVersion</key>
	<integer>3</integer>
</dict>
</plist>
`;

/** bplist00 for {"a": 1} built by hand: objects dict, "a", 1; offset table; trailer. */
const BPLIST_A1 = Buffer.from(
  '62706c6973743030' + // bplist00
    'd10102' + // dict of 1: key ref 1, value ref 2        @8
    '5161' + // ascii string "a"                           @11
    '1001' + // int 1                                      @13
    '080b0d' + // offset table                              @15
    '000000000000' + '01' + '01' + // pad, offset size, ref size
    '0000000000000003' + '0000000000000000' + '000000000000000f',
  'hex',
);

function err(fn: () => unknown): PlistParseError {
  try {
    fn();
  } catch (e) {
    if (e instanceof PlistParseError) return e;
    throw e;
  }
  throw new Error('did not throw');
}

describe('parsePlist', () => {
  it('reads an XML request as libusbmuxd sends it', () => {
    expect(parsePlist(Buffer.from(CONNECT_XML))).toEqual({
      ClientVersionString: 'libusbmuxd 2.0.2',
      DeviceID: 1,
      MessageType: 'Connect',
      PortNumber: 32498,
      ProgName: 'ideviceinfo',
      kLibUSBMuxVersion: 3,
    });
  });

  it('reads a hand-built binary plist', () => {
    expect(parsePlist(BPLIST_A1)).toEqual({ a: 1 });
  });

  it('refuses garbage, truncated binary and empty input as malformed', () => {
    expect(err(() => parsePlist(Buffer.from('hello'))).code).toBe('MUXD_ERR_PLIST_MALFORMED');
    expect(err(() => parsePlist(BPLIST_A1.subarray(0, 20))).code).toBe('MUXD_ERR_PLIST_MALFORMED');
    expect(err(() => parsePlist(Buffer.alloc(0))).code).toBe('MUXD_ERR_PLIST_MALFORMED');
  });

  it('refuses input above maxBytes before parsing', () => {
    const e = err(() => parsePlist(Buffer.from(CONNECT_XML), { maxBytes: 100, maxDepth: 8, maxObjects: 100 }));
    expect(e.code).toBe('MUXD_ERR_PLIST_TOO_LARGE');
  });

  it('refuses nesting deeper than maxDepth', () => {
    const deep = '<array>'.repeat(10) + '</array>'.repeat(10);
    const xml = Buffer.from(`<plist>${deep}</plist>`);
    expect(err(() => parsePlist(xml, { maxBytes: 4096, maxDepth: 9, maxObjects: 100 })).code).toBe('MUXD_ERR_PLIST_TOO_DEEP');
    expect(parsePlist(xml, { maxBytes: 4096, maxDepth: 10, maxObjects: 100 })).toBeInstanceOf(Array);
  });

  it('refuses a binary plist whose dict contains itself', () => {
    // dict {"a": <object 0>}: the value ref points back at the dict.
    const cyclic = Buffer.from(BPLIST_A1);
    cyclic[10] = 0; // value ref 2 → 0
    expect(err(() => parsePlist(cyclic)).code).toBe('MUXD_ERR_PLIST_TOO_DEEP');
  });

  it('refuses more than maxObjects values', () => {
    const xml = Buffer.from(`<plist><array>${'<true/>'.repeat(50)}</array></plist>`);
    expect(err(() => parsePlist(xml, { maxBytes: 4096, maxDepth: 4, maxObjects: 50 })).code).toBe('MUXD_ERR_PLIST_TOO_MANY_OBJECTS');
  });

  it('refuses a binary __proto__ key instead of polluting', () => {
    const buf = Buffer.from(buildBinary({ ['x'.repeat(9)]: { polluted: true } }));
    const at = buf.indexOf('xxxxxxxxx');
    buf.write('__proto__', at, 'latin1');
    expect(err(() => parsePlist(buf)).code).toBe('MUXD_ERR_PLIST_UNSUPPORTED');
  });

  // A `__proto__` key whose value is a date or data made the dict pass `instanceof Date` /
  // `Buffer.isBuffer` (its prototype is then that value): a TypeError escaped from getTime(), and
  // an object posing as a Buffer could reach the store (found by the hostile-clients fuzz).
  it.each([
    ['date', new Date(0)],
    ['data', Buffer.from('abc')],
  ])('refuses a binary __proto__ key whose value is %s', (_what, value) => {
    const buf = Buffer.from(buildBinary({ outer: { ['x'.repeat(9)]: value } }));
    buf.write('__proto__', buf.indexOf('xxxxxxxxx'), 'latin1');
    expect(err(() => parsePlist(buf)).code).toBe('MUXD_ERR_PLIST_UNSUPPORTED');
  });
});

describe('buildXml', () => {
  it('writes integers (0 and large u32) as <integer>, data as <data>, reals as <real>', () => {
    const xml = buildXml({ zero: 0, big: 0xffffffff, huge: 2n ** 63n - 1n, data: Buffer.from('hi'), r: 1.5 }).toString();
    expect(xml).toContain('<integer>0</integer>');
    expect(xml).toContain('<integer>4294967295</integer>');
    expect(xml).toContain('<integer>9223372036854775807</integer>');
    expect(xml).toContain('<data>\n\taGk=\n\t</data>');
    expect(xml).toContain('<real>1.5</real>');
  });
});

const key = fc.string({ minLength: 1, maxLength: 12 }).filter((k) => k !== '__proto__');
const leaf: fc.Arbitrary<PlistValue> = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.integer({ min: 0, max: 0xffffffff }),
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
  fc.boolean(),
  fc.uint8Array({ maxLength: 32 }).map((a) => Buffer.from(a)),
);
const { tree } = fc.letrec<{ tree: PlistValue; dict: PlistDict }>((tie) => ({
  tree: fc.oneof({ depthSize: 'small' }, leaf, fc.array(tie('tree'), { maxLength: 4 }), tie('dict')),
  dict: fc.dictionary(key, tie('tree'), { maxKeys: 4, noNullPrototype: true }),
}));
const rootDict = fc.dictionary(key, tree, { maxKeys: 5, noNullPrototype: true });

describe('round trips', () => {
  it('XML: parse(buildXml(v)) equals v', () => {
    fc.assert(fc.property(rootDict, (v) => {
      expect(parsePlist(buildXml(v))).toEqual(v);
    }), { numRuns: 200 });
  });

  it('binary: parse(buildBinary(v)) equals v', () => {
    fc.assert(fc.property(rootDict, (v) => {
      expect(parsePlist(buildBinary(v))).toEqual(v);
    }), { numRuns: 200 });
  });

  it('type helpers', () => {
    expect(isPlistDict({})).toBe(true);
    expect(isPlistDict([])).toBe(false);
    expect(isPlistDict(Buffer.alloc(1))).toBe(false);
    expect(isPlistInteger(3)).toBe(true);
    expect(isPlistInteger(3.5)).toBe(false);
    expect(isPlistInteger(3n)).toBe(true);
  });
});
