import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import plist from 'plist';
import { buildXml, parsePlist } from './index.js';
import type { PlistDict, PlistValue } from './index.js';
import { writeXmlPlist } from './xml-writer.js';

/**
 * What usbmuxd 1.1.1 (libplist 2.2) stored for a SavePairRecord of this dict — the file read back
 * from the reference daemon's config dir — except that it writes the real 0.1 as
 * 0.10000000000000001 (%.17g) where we write the shortest form that reads back the same.
 */
const REFERENCE_LAYOUT = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>HostID</key>
	<string>x</string>
	<key>D</key>
	<data>
	BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcH
	BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBw==
	</data>
	<key>S</key>
	<data>
	AQEBAQE=
	</data>
	<key>E</key>
	<data>
	</data>
	<key>ED</key>
	<dict/>
	<key>EA</key>
	<array/>
	<key>ES</key>
	<string></string>
	<key>N</key>
	<integer>-5</integer>
	<key>R</key>
	<real>1.5</real>
	<key>R2</key>
	<real>0.1</real>
	<key>Big</key>
	<integer>1099511627776</integer>
	<key>T</key>
	<true/>
	<key>F</key>
	<false/>
	<key>DT</key>
	<date>1970-01-01T00:00:00Z</date>
	<key>A</key>
	<array>
		<dict>
			<key>x</key>
			<integer>1</integer>
		</dict>
		<array>
			<integer>2</integer>
		</array>
	</array>
	<key>Esc</key>
	<string>a&amp;b&lt;c&gt;d"e'f\r
g\th</string>
</dict>
</plist>
`;

const REFERENCE_VALUE: PlistDict = {
  HostID: 'x',
  D: Buffer.alloc(100, 7),
  S: Buffer.alloc(5, 1),
  E: Buffer.alloc(0),
  ED: {},
  EA: [],
  ES: '',
  N: -5,
  R: 1.5,
  R2: 0.1,
  Big: 2 ** 40,
  T: true,
  F: false,
  DT: new Date(0),
  A: [{ x: 1 }, [2]],
  Esc: 'a&b<c>d"e\'f\r\ng\th',
};

describe('writeXmlPlist', () => {
  it("writes libplist's layout, byte for byte", () => {
    expect(writeXmlPlist(REFERENCE_VALUE)).toBe(REFERENCE_LAYOUT);
    expect(parsePlist(Buffer.from(REFERENCE_LAYOUT))).toEqual(REFERENCE_VALUE);
  });

  it('writes keys named like Object.prototype members (the plist package throws on hasOwnProperty)', () => {
    const v: PlistDict = { hasOwnProperty: true, toString: { valueOf: [] }, constructor: 'c', __defineGetter__: 1 };
    expect(() => plist.build(v as plist.PlistValue)).toThrow();
    const back = parsePlist(buildXml(v));
    expect(Object.entries(back as PlistDict)).toEqual(Object.entries(v));
  });

  it('writes control characters as they are, like libplist (the plist package throws on them)', () => {
    const v: PlistDict = { ProgName: 'b\u0001d', 'k\u0000': '\u001f\u007f\ufffe' };
    expect(() => plist.build(v as plist.PlistValue)).toThrow(/Invalid character/);
    const xml = writeXmlPlist(v);
    expect(xml).toContain('<string>b\u0001d</string>');
    expect(parsePlist(Buffer.from(xml, 'utf8'))).toEqual(v);
  });

  it('writes integers in digits, however large', () => {
    expect(writeXmlPlist({ a: 1e21, b: -(2n ** 63n), c: 2n ** 64n - 1n, d: -0 })).toContain(
      '<integer>1000000000000000000000</integer>\n\t<key>b</key>\n\t<integer>-9223372036854775808</integer>\n' +
        '\t<key>c</key>\n\t<integer>18446744073709551615</integer>\n\t<key>d</key>\n\t<integer>0</integer>',
    );
  });

  it('writes dates to the second, in UTC', () => {
    expect(writeXmlPlist(new Date(Date.UTC(2026, 10, 26, 3, 4, 5, 678)))).toContain('<date>2026-11-26T03:04:05Z</date>');
  });

  it.each([
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['an invalid date', new Date(Number.NaN)],
  ])('refuses %s with a PlistParseError', (_name, value) => {
    expect(() => writeXmlPlist({ v: value })).toThrow(expect.objectContaining({ code: 'MUXD_ERR_PLIST_UNSUPPORTED' }));
  });

  it('a root that is not a dict is written at column 0', () => {
    expect(writeXmlPlist(['a'])).toContain('<plist version="1.0">\n<array>\n\t<string>a</string>\n</array>\n</plist>\n');
    expect(writeXmlPlist('s')).toContain('<plist version="1.0">\n<string>s</string>\n</plist>\n');
  });
});

// Any string: every UTF-16 code unit, lone surrogates included (written as U+FFFD by UTF-8).
const anyString = fc.string({ unit: 'binary', maxLength: 12 });
const wellFormed = (s: string): string => Buffer.from(s, 'utf8').toString('utf8');

function normalise(v: PlistValue): PlistValue {
  if (typeof v === 'string') return wellFormed(v);
  if (Array.isArray(v)) return v.map(normalise);
  if (typeof v === 'object' && !Buffer.isBuffer(v) && !(v instanceof Date)) {
    const out: PlistDict = {};
    for (const [k, item] of Object.entries(v)) out[wellFormed(k)] = normalise(item);
    return out;
  }
  return v;
}

describe('writeXmlPlist properties', () => {
  const leaf = (str: fc.Arbitrary<string>): fc.Arbitrary<PlistValue> =>
    fc.oneof(
      str,
      fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
      // Beyond the safe integers (the reader gives a number for those).
      fc.bigInt({ min: 2n ** 53n, max: 2n ** 64n - 1n }),
      fc.bigInt({ min: -(2n ** 63n), max: -(2n ** 53n) }),
      fc.double({ noNaN: true, noDefaultInfinity: true }).filter((d) => !Number.isInteger(d)),
      fc.boolean(),
      fc.uint8Array({ maxLength: 80 }).map((a) => Buffer.from(a)),
      fc.integer({ min: 0, max: 253402300799 }).map((s) => new Date(s * 1000)), // years 1970…9999
    );
  const trees = (key: fc.Arbitrary<string>, str: fc.Arbitrary<string>): fc.Arbitrary<PlistDict> => {
    const { tree } = fc.letrec<{ tree: PlistValue }>((tie) => ({
      tree: fc.oneof({ depthSize: 'small' }, leaf(str), fc.array(tie('tree'), { maxLength: 4 }), fc.dictionary(key, tie('tree'), { maxKeys: 4, noNullPrototype: true })),
    }));
    return fc.dictionary(key, tree, { maxKeys: 5, noNullPrototype: true });
  };

  it('our reader reads back whatever it wrote: any key (but __proto__), any string', () => {
    const key = anyString.filter((k) => wellFormed(k) !== '__proto__');
    fc.assert(fc.property(trees(key, anyString), (v) => {
      expect(parsePlist(buildXml(v))).toEqual(normalise(v));
    }), { numRuns: 300 });
  });

  it('an independent reader (the plist package) reads the same values from it', () => {
    // That reader needs well-formed XML 1.0 text and trips on keys named like Object.prototype members.
    const xmlText = fc.string({ unit: 'grapheme', maxLength: 12 }).filter((s) => !/[\u0000-\u0008\u000b\u000c\u000d\u000e-\u001f\ufffe\uffff]/.test(s));
    const key = xmlText.filter((k) => !(k in Object.prototype));
    fc.assert(fc.property(trees(key, xmlText), (v) => {
      const xml = buildXml(v);
      expect(plist.parse(xml.toString('utf8'))).toEqual(plist.parse(plist.build(parsePlist(xml) as plist.PlistValue)));
    }), { numRuns: 200 });
  });
});
