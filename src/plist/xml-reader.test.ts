import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import plist from 'plist';
import { DEFAULT_PLIST_LIMITS, PlistParseError } from './index.js';
import type { PlistDict, PlistLimits, PlistValue } from './index.js';
import { MAX_NUMBER_CHARS, readXmlPlist } from './xml-reader.js';
import { xmlLongBadData, xmlLongDate, xmlLongInteger, xmlLongReal } from '../../test/support/plist-attacks.js';

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

/** The reader's step count for `xml`, whether it reads or refuses it. */
function steps(xml: string, limits: PlistLimits = DEFAULT_PLIST_LIMITS): number {
  const meter = { work: 0 };
  try {
    readXmlPlist(xml, limits, meter);
  } catch (e) {
    if (!(e instanceof PlistParseError)) throw e;
  }
  return meter.work;
}

describe('readXmlPlist: numbers', () => {
  it.each([
    ['1', 1], ['1.', 1], ['.5', 0.5], ['-1.5e10', -1.5e10], ['+2E-3', 0.002], ['1e5', 1e5], [' \n\t0.25\r\n', 0.25], ['-0', -0],
  ])('reads the real %j', (text, value) => {
    expect(read(`<plist><real>${text}</real></plist>`)).toBe(value);
  });

  it.each(['.', 'e5', '1e', '1e+', '1.2.3', '--1', '', ' ', 'inf', 'NaN', '0x10', '1_0', '1 2', '\u00a01', '١'])('refuses the real %j', (text) => {
    expect(code(`<plist><real>${text}</real></plist>`)).toBe('MUXD_ERR_PLIST_MALFORMED');
  });

  it('reads integers of at most 128 bits and refuses wider ones', () => {
    expect(read('<plist><integer>340282366920938463463374607431768211455</integer></plist>')).toBe(2n ** 128n - 1n);
    expect(read('<plist><integer>-170141183460469231731687303715884105728</integer></plist>')).toBe(-(2n ** 127n));
    expect(code('<plist><integer>340282366920938463463374607431768211456</integer></plist>')).toBe('MUXD_ERR_PLIST_MALFORMED');
    expect(code('<plist><integer>-170141183460469231731687303715884105729</integer></plist>')).toBe('MUXD_ERR_PLIST_MALFORMED');
    expect(code('<plist><integer>+</integer></plist>')).toBe('MUXD_ERR_PLIST_MALFORMED');
    expect(read('<plist><integer>+7</integer></plist>')).toBe(7);
  });

  it(`caps integer, real and date text at ${MAX_NUMBER_CHARS} characters, whitespace aside`, () => {
    const zeros = (n: number): string => `${'0'.repeat(n - 1)}1`;
    expect(read(`<plist><integer>  ${zeros(MAX_NUMBER_CHARS)}\n</integer></plist>`)).toBe(1);
    expect(code(`<plist><integer>${zeros(MAX_NUMBER_CHARS + 1)}</integer></plist>`)).toBe('MUXD_ERR_PLIST_MALFORMED');
    expect(read(`<plist><real>${zeros(MAX_NUMBER_CHARS)}</real></plist>`)).toBe(1);
    expect(code(`<plist><real>${zeros(MAX_NUMBER_CHARS + 1)}</real></plist>`)).toBe('MUXD_ERR_PLIST_MALFORMED');
    expect(code(`<plist><date>2024-01-02T03:04:05Z${' '.repeat(10)}x${'0'.repeat(MAX_NUMBER_CHARS)}</date></plist>`)).toBe('MUXD_ERR_PLIST_MALFORMED');
    expect(read(`<plist><date>${' '.repeat(1000)}2024-01-02T03:04:05Z${' '.repeat(1000)}</date></plist>`)).toEqual(new Date('2024-01-02T03:04:05Z'));
  });
});

describe('readXmlPlist: data, references and whitespace', () => {
  it('reads base64 with whitespace anywhere and refuses padding that is not at the end', () => {
    expect(read('<plist><data>\n\taGVs\r\n bG8=\n</data></plist>')).toEqual(Buffer.from('hello'));
    expect(code('<plist><data>aGVs=bG8=</data></plist>')).toBe('MUXD_ERR_PLIST_MALFORMED');
    expect(code('<plist><data>aGVsbG8===</data></plist>')).toBe('MUXD_ERR_PLIST_MALFORMED');
    expect(code('<plist><data>aGVs-bG8</data></plist>')).toBe('MUXD_ERR_PLIST_MALFORMED');
  });

  it('reads character references up to U+10FFFF and refuses longer or out-of-range ones', () => {
    expect(read('<plist><string>&#x10FFFF;&#1114111;&#0000065;&#x00041;&#x4a;</string></plist>')).toBe('\u{10FFFF}\u{10FFFF}AAJ');
  });

  it.each(['&#x110000;', '&#1114112;', '&#00000065;', '&#;', '&#x;', '&#xZZ;', '&amp', '&', '&AMP;', '&#-1;', '&#x-1;', '&#X41;'])('refuses the reference %j', (ref) => {
    expect(code(`<plist><string>${ref}</string></plist>`)).toBe('MUXD_ERR_PLIST_MALFORMED');
  });

  it('takes only XML whitespace (space, tab, CR, LF) between elements', () => {
    expect(read('<plist>\r\n\t <true/> \n</plist>')).toBe(true);
    expect(code('<plist>\u00a0<true/></plist>')).toBe('MUXD_ERR_PLIST_MALFORMED');
    expect(code('<plist>\u2028<true/></plist>')).toBe('MUXD_ERR_PLIST_MALFORMED');
  });
});

describe('readXmlPlist: linear work, counted', () => {
  // Each family grows one construct; the step count must stay within a constant per character at
  // every size, so doubling the input at most doubles the work. Nothing here is timed.
  const families: readonly (readonly [string, (n: number) => string])[] = [
    ['a <real> of n digits then a letter (backtracked in the regex reader)', (n) => xmlLongReal(n).toString()],
    ['a <real> of n digits then a dot', (n) => xmlLongReal(n, '.').toString()],
    ['an <integer> of n digits', (n) => xmlLongInteger(n).toString()],
    ['a <data> of n base64 characters then !', (n) => xmlLongBadData(n).toString()],
    ['a <date> of n digits', (n) => xmlLongDate(n).toString()],
    ['n entity references', (n) => `<plist><string>${'&amp;'.repeat(n / 5)}</string></plist>`],
    ['n ampersands without a semicolon', (n) => `<plist><string>${'&'.repeat(n)}</string></plist>`],
    ['n characters then an ampersand', (n) => `<plist><string>${'x'.repeat(n)}&</string></plist>`],
    ['n comments in a string', (n) => `<plist><string>${'<!---->'.repeat(n / 7)}</string></plist>`],
    ['n comments between elements', (n) => `<plist>${'<!---->'.repeat(n / 7)}<true/></plist>`],
    ['an unterminated comment', (n) => `<plist><!--${'-'.repeat(n)}`],
    ['a CDATA section of n brackets', (n) => `<plist><string><![CDATA[${']'.repeat(n)}]]></string></plist>`],
    ['an unterminated CDATA section', (n) => `<plist><string><![CDATA[${']]'.repeat(n / 2)}`],
    ['a tag with n characters of attributes', (n) => `<plist ${'a="1" '.repeat(n / 6)}><true/></plist>`],
    ['a tag that never closes', (n) => `<plist ${'a'.repeat(n)}`],
    ['a DOCTYPE of n characters', (n) => `<!DOCTYPE plist ${'x'.repeat(n)}><plist><true/></plist>`],
    ['n processing instructions', (n) => `${'<?x?>'.repeat(n / 5)}<plist><true/></plist>`],
    ['n empty elements in an array', (n) => `<plist><array>${'<true/>'.repeat(n / 7)}</array></plist>`],
    ['n keys in a dict', (n) => `<plist><dict>${'<key>k</key><true/>'.repeat(n / 19)}</dict></plist>`],
    ['n nested arrays', (n) => `<plist>${'<array>'.repeat(n / 7)}</plist>`],
    ['n closing tags', (n) => `<plist><true/>${'</array>'.repeat(n / 8)}`],
    ['n whitespace characters then junk', (n) => `<plist>${' '.repeat(n)}x</plist>`],
  ];
  const unbounded: PlistLimits = { maxBytes: 1 << 24, maxDepth: 1 << 20, maxObjects: 1 << 20 };

  it.each(families)('%s', (_name, make) => {
    for (const n of [1000, 4000, 16000, 64000]) {
      const xml = make(n);
      for (const limits of [DEFAULT_PLIST_LIMITS, unbounded]) {
        expect(steps(xml, limits), `n = ${n}`).toBeLessThanOrEqual(8 * xml.length + 256);
      }
    }
  });

  it('stops at depth 256 whatever maxDepth says (deeper would exhaust the stack)', () => {
    const deep = (n: number): string => `<plist>${'<array>'.repeat(n)}${'</array>'.repeat(n)}</plist>`;
    expect(readXmlPlist(deep(256), unbounded)).toBeInstanceOf(Array);
    expect(() => readXmlPlist(deep(257), unbounded)).toThrow(/deeper than 256/);
    expect(() => readXmlPlist(deep(20000), unbounded)).toThrow(PlistParseError);
  });

  it('counts at least every character of a document it reads', () => {
    expect(steps(LIBPLIST_STYLE)).toBeGreaterThanOrEqual(LIBPLIST_STYLE.length);
  });
});

