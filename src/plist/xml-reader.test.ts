import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import plist from 'plist';
import { DEFAULT_PLIST_LIMITS, PlistParseError } from './index.js';
import type { PlistDict, PlistValue } from './index.js';
import { readXmlPlist } from './xml-reader.js';

const read = (xml: string): PlistValue => readXmlPlist(xml, DEFAULT_PLIST_LIMITS);

/** A pair record the way libplist writes it: tabs, base64 wrapped at 68 columns, entities. */
const LIBPLIST_STYLE = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>DeviceCertificate</key>
	<data>
	LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUM4ekNDQWR1Z0F3SUJBZ0lCQURB
	TkJna3Foa2lHOXcwQkFRc0ZBREFBTUI0WERUSXpNREV3TVRBd01EQXdNRm9YRFRNek1E
	</data>
	<key>HostID</key>
	<string>4A7B2C1D-0000-4000-8000-0123456789AB</string>
	<key>Escaped</key>
	<string>a &lt;b&gt; &amp; &quot;c&quot; &apos;d&apos; &#65;&#x42;</string>
	<key>Empty</key>
	<string/>
	<key>EmptyPair</key>
	<string></string>
	<!-- a comment -->
	<key>Cdata</key>
	<string><![CDATA[<raw> & stuff]]></string>
	<key>Big</key>
	<integer>9223372036854775807</integer>
	<key>Negative</key>
	<integer>-42</integer>
	<key>Real</key>
	<real>0.5</real>
	<key>When</key>
	<date>2024-01-02T03:04:05Z</date>
	<key>Flags</key>
	<array>
		<true/>
		<false/>
	</array>
	<key>EmptyDict</key>
	<dict/>
</dict>
</plist>
`;

function code(xml: string): string {
  try {
    read(xml);
  } catch (e) {
    if (e instanceof PlistParseError) return e.code;
    throw e;
  }
  return 'parsed';
}

describe('readXmlPlist', () => {
  it('reads a libplist-style document exactly', () => {
    const v = read(LIBPLIST_STYLE) as PlistDict;
    expect((v['DeviceCertificate'] as Buffer).toString().startsWith('-----BEGIN CERTIFICATE-----\nMIIC8zCC')).toBe(true);
    expect(v).toMatchObject({
      HostID: '4A7B2C1D-0000-4000-8000-0123456789AB',
      Escaped: 'a <b> & "c" \'d\' AB',
      Empty: '',
      EmptyPair: '',
      Cdata: '<raw> & stuff',
      Big: 9223372036854775807n,
      Negative: -42,
      Real: 0.5,
      When: new Date('2024-01-02T03:04:05Z'),
      Flags: [true, false],
      EmptyDict: {},
    });
  });

  it.each([
    ['empty input', ''],
    ['no plist root', '<dict></dict>'],
    ['unknown element', '<plist><foo/></plist>'],
    ['mismatched close', '<plist><array></dict></plist>'],
    ['missing </plist>', '<plist><true/>'],
    ['text after the root', '<plist><true/></plist>junk'],
    ['key outside a dict', '<plist><key>a</key></plist>'],
    ['dict value without key', '<plist><dict><string>x</string></dict></plist>'],
    ['dict key without value', '<plist><dict><key>a</key></dict></plist>'],
    ['unknown entity', '<plist><string>&nbsp;</string></plist>'],
    ['NUL character reference', '<plist><string>&#0;</string></plist>'],
    ['DOCTYPE with an internal subset', '<!DOCTYPE plist [<!ENTITY x "y">]><plist><true/></plist>'],
    ['bad integer', '<plist><integer>12a</integer></plist>'],
    ['empty integer', '<plist><integer/></plist>'],
    ['non-finite real', '<plist><real>inf</real></plist>'],
    ['bad base64', '<plist><data>!!!</data></plist>'],
    ['bad date', '<plist><date>yesterday</date></plist>'],
    ['a real that overflows to Infinity', '<plist><real>1e999</real></plist>'],
    ['a real that overflows to -Infinity', '<plist><real>-1e999</real></plist>'],
    ['unterminated comment', '<plist><!-- <true/></plist>'],
    ['element inside a string', '<plist><string>a<b/></string></plist>'],
    ['true with content', '<plist><true>x</true></plist>'],
    ['garbage inside a tag', '<plist><array/x></array></plist>'],
  ])('refuses %s', (_name, xml) => {
    expect(code(xml)).toBe('MUXD_ERR_PLIST_MALFORMED');
  });

  it('refuses a __proto__ key', () => {
    expect(code('<plist><dict><key>__proto__</key><dict><key>x</key><true/></dict></dict></plist>')).toBe('MUXD_ERR_PLIST_UNSUPPORTED');
  });

  it('enforces depth and object limits while reading', () => {
    const deep = `<plist>${'<array>'.repeat(5)}${'</array>'.repeat(5)}</plist>`;
    expect(() => readXmlPlist(deep, { maxBytes: 1000, maxDepth: 4, maxObjects: 100 })).toThrow(/deeper than 4/);
    const wide = `<plist><array>${'<true/>'.repeat(10)}</array></plist>`;
    expect(() => readXmlPlist(wide, { maxBytes: 1000, maxDepth: 4, maxObjects: 10 })).toThrow(/more than 10 objects/);
  });

  it('reads keys named like Object.prototype members as plain own keys', () => {
    const xml = '<plist><dict><key>toString</key><dict><key>valueOf</key><array/></dict><key>constructor</key><true/></dict></plist>';
    const v = read(xml) as Record<string, unknown>;
    expect(Object.keys(v)).toEqual(['toString', 'constructor']);
    expect(Object.getOwnPropertyDescriptor(v, 'toString')?.value).toEqual({ valueOf: [] });
    expect(v['constructor']).toBe(true);
  });

  it('agrees with the plist package on anything the plist package writes', () => {
    // The oracle itself throws on a dict value holding a `toString` or `valueOf` key (it builds an
    // error message from every value eagerly), so such names are kept out of this comparison and
    // tested on their own above.
    const oracleSafe = (k: string): boolean => !(k in Object.prototype); // also keeps out __proto__
    const key = fc.string({ maxLength: 8 }).filter(oracleSafe);
    const leaf = fc.oneof(
      fc.string({ maxLength: 16 }),
      fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
      fc.double({ noNaN: true, noDefaultInfinity: true, min: -1e6, max: 1e6 }).filter((d) => !Number.isInteger(d)),
      fc.boolean(),
      fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)),
    );
    const { tree } = fc.letrec<{ tree: PlistValue }>((tie) => ({
      tree: fc.oneof({ depthSize: 'small' }, leaf, fc.array(tie('tree'), { maxLength: 4 }), fc.dictionary(key, tie('tree'), { maxKeys: 4, noNullPrototype: true })),
    }));
    fc.assert(fc.property(fc.dictionary(key, tree, { maxKeys: 5, noNullPrototype: true }), (v) => {
      const xml = plist.build(v as plist.PlistValue);
      expect(read(xml)).toEqual(plist.parse(xml));
    }), { numRuns: 300 });
  });
});
