/**
 * fast-check generators of hostile usbmux client input, for test/component/hostile-clients.test.ts:
 * plist requests (XML or binary) whose fields are absent or ANY plist value (control characters,
 * lone surrogates, Object.prototype member names as keys, `__proto__` as a raw XML key, 2^64 − 1,
 * reals, dates, data holding hostile plists, nesting), XML bodies truncated / spliced / with raw
 * fragments injected, binary (version 0) frames, frames with a bogus length or version, raw bytes,
 * and a closing Listen with a hostile identity. `hostileScript` is one client's whole stream.
 */
import fc from 'fast-check';
import { buildBinary, buildXml } from '../../src/plist/index.js';
import type { PlistDict, PlistValue } from '../../src/plist/index.js';
import { encodeFrame, MAX_FRAME_BYTES } from '../../src/server/framing.js';
import { swapPort } from '../../src/server/messages.js';
import { fakeInfo } from './fake-directory.js';

/** Object.prototype members; `__proto__` is added separately (see topKey). */
const PROTO_KEYS = ['hasOwnProperty', 'toString', 'valueOf', 'constructor', 'isPrototypeOf', 'propertyIsEnumerable', 'toLocaleString', '__defineGetter__', '__lookupSetter__'];
const MESSAGE_TYPES = ['Listen', 'Connect', 'ListDevices', 'ListListeners', 'ReadBUID', 'ReadPairRecord', 'SavePairRecord', 'DeletePairRecord'];

/** Any UTF-16 code unit, lone surrogates and control characters included. */
const codeUnit = fc.integer({ min: 0, max: 0xffff }).map((n) => String.fromCharCode(n));
const hostileString: fc.Arbitrary<string> = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 24 }),
  fc.string({ unit: codeUnit, maxLength: 24 }),
  fc.string({ unit: fc.constantFrom('\x00', '\x01', '\x1f', '\x7f', '\r', '\n', '<', '>', '&', ']', '\uD800', '\uDFFF', '\uFFFE', 'a'), maxLength: 24 }),
  fc.constantFrom(...PROTO_KEYS, ...MESSAGE_TYPES, '', ']]>', '<![CDATA[', '&amp;', '</string>', '</plist>', 'x'.repeat(600)),
);
/** Keys of nested dicts: Object.prototype member names often (`__proto__` never: see topKey). */
const hostileKey = fc.oneof(fc.constantFrom(...PROTO_KEYS), hostileString);
/** Keys of a request or record dict: `__proto__` now and then (it makes the whole document invalid). */
const topKey = fc.oneof({ weight: 29, arbitrary: hostileKey }, { weight: 1, arbitrary: fc.constant('__proto__') });
const integers = fc.oneof(
  fc.integer(),
  fc.maxSafeInteger(),
  fc.constantFrom(0, -1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER),
);
const bigints = fc.oneof(
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }),
  fc.constantFrom(2n ** 64n - 1n, 2n ** 63n, -(2n ** 63n), 2n ** 100n),
);
const reals = fc.double({ noNaN: true, noDefaultInfinity: true });
const bytes = fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b));

/** A dict from entries: `__proto__` and friends become own keys (Object.fromEntries defines, never assigns). */
function dictOf(entries: readonly (readonly [string, PlistValue])[]): PlistDict {
  return Object.fromEntries<PlistValue>(entries);
}

const { value: anyValue } = fc.letrec<{ value: PlistValue }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', maxDepth: 4 },
    hostileString,
    integers,
    bigints,
    reals,
    fc.boolean(),
    bytes,
    fc.date({ noInvalidDate: true }),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.array(fc.tuple(hostileKey, tie('value')), { maxLength: 4 }).map(dictOf),
  ),
}));
const hostileDict = fc.array(fc.tuple(topKey, anyValue), { maxLength: 6 }).map(dictOf);

/** Raw XML spliced into the root dict: what our writer would never produce. */
const fragment: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '<key>__proto__</key><string>x</string>',
    '<key>__proto__</key><dict><key>polluted</key><true/></dict>',
    '<key>hasOwnProperty</key><integer>1</integer>',
    '<key>MessageType</key><string>Listen</string>',
    '<key>ProgName</key><string>\x01\x02\x1b[31m</string>',
    '<key>r</key><real>1e999</real>',
    '<key>r</key><real>-1e309</real>',
    '<key>i</key><integer>-99999999999999999999999999999</integer>',
    '<key>i</key><integer>18446744073709551616</integer>',
    '<key>d</key><date>+275761-01-01T00:00:00Z</date>',
    '<key>d</key><date>0</date>',
    '<key>s</key><string>&#0;</string>',
    '<key>s</key><string>&#x110000;</string>',
    '<key>s</key><string>&#xD800;&#xDFFF;</string>',
    '<key>s</key><string><![CDATA[\x01]]></string>',
    '<key>s</key><string><![CDATA[</string>',
    '<key>b</key><data>!!!!</data>',
    '<key>b</key><data>====</data>',
    '<key>u</key><uid>1</uid>',
    '<key>x</key>',
    '<!DOCTYPE x [<!ENTITY a "b">]>',
    '<!-- -->',
    '<?pi?>',
    `<key>deep</key>${'<array>'.repeat(12)}${'</array>'.repeat(12)}`,
    `<key>many</key><array>${'<true/>'.repeat(1100)}</array>`,
  ),
  hostileString.map((s) => `<key>raw</key><string>${s}</string>`),
  hostileString.map((s) => `<key>${s}</key><integer>1</integer>`),
);

type Encoding =
  | { readonly as: 'xml' | 'binary' }
  | { readonly as: 'truncated'; readonly at: number }
  | { readonly as: 'spliced'; readonly at: number; readonly bytes: Uint8Array }
  | { readonly as: 'injected'; readonly fragment: string };

const encoding: fc.Arbitrary<Encoding> = fc.oneof(
  { weight: 5, arbitrary: fc.constant({ as: 'xml' as const }) },
  { weight: 2, arbitrary: fc.constant({ as: 'binary' as const }) },
  { weight: 1, arbitrary: fc.record({ as: fc.constant('truncated' as const), at: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ as: fc.constant('spliced' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }) },
  { weight: 2, arbitrary: fc.record({ as: fc.constant('injected' as const), fragment }) },
);

function encodeBody(dict: PlistDict, enc: Encoding): Buffer {
  switch (enc.as) {
    case 'xml':
      return buildXml(dict);
    case 'binary':
      try {
        return buildBinary(dict);
      } catch {
        // bplist-creator cannot write some values (an integral real beyond 2^64): send XML instead.
        return buildXml(dict);
      }
    case 'truncated': {
      const xml = buildXml(dict);
      return xml.subarray(0, enc.at % xml.length);
    }
    case 'spliced': {
      const xml = buildXml(dict);
      const at = enc.at % (xml.length + 1);
      return Buffer.concat([xml.subarray(0, at), enc.bytes, xml.subarray(at)]);
    }
    case 'injected': {
      const xml = buildXml(dict).toString('utf8');
      return Buffer.from(xml.replace(/<dict\/>|<dict>/, (m) => (m === '<dict/>' ? `<dict>${enc.fragment}</dict>` : `<dict>${enc.fragment}`)), 'utf8');
    }
  }
}

/** A field: usually something the daemon can act on, otherwise any plist value. */
function field<T extends PlistValue>(meaningful: fc.Arbitrary<T>, weight = 3, absentOneIn = 3): fc.Arbitrary<PlistValue | undefined> {
  return fc.option(fc.oneof({ weight, arbitrary: meaningful }, { weight: 2, arbitrary: anyValue }), { nil: undefined, freq: absentOneIn });
}

/** The devices' serials: valid UDID shapes, so saves reach the disk (and a matching DeviceID raises Paired). */
const SERIALS = [1, 2, 3].map((n) => fakeInfo(n).serial);

/** Mostly a record the store accepts and rewrites (its keys and strings hostile), else broken. */
const pairRecordData: fc.Arbitrary<PlistValue> = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(hostileDict, fc.constantFrom<Encoding>({ as: 'xml' }, { as: 'binary' })).map(([d, e]) => encodeBody(d, e)) },
  { weight: 3, arbitrary: fc.tuple(hostileDict, encoding).map(([d, e]) => encodeBody(d, e)) },
  { weight: 1, arbitrary: bytes },
);

const requestDict: fc.Arbitrary<PlistDict> = fc
  .record({
    extras: fc.array(fc.tuple(topKey, anyValue), { maxLength: 3 }),
    MessageType: fc.option(
      fc.oneof({ weight: 12, arbitrary: fc.constantFrom(...MESSAGE_TYPES) }, { weight: 1, arbitrary: hostileString }, { weight: 1, arbitrary: anyValue }),
      { nil: undefined, freq: 20 },
    ),
    ProgName: field(hostileString),
    ClientVersionString: field(hostileString),
    BundleID: field(hostileString),
    kLibUSBMuxVersion: field(fc.oneof(integers, bigints)),
    DeviceID: field(fc.constantFrom(1, 2, 3, 0, 99, 2 ** 32 + 1)),
    PortNumber: field(fc.constantFrom(swapPort(62078), swapPort(7), 0, 0xffff)),
    PairRecordID: field(fc.constantFrom(...SERIALS, 'f'.repeat(40), 'A'.repeat(24), '../../etc/passwd', ''), 8, 6),
    PairRecordData: field(pairRecordData, 8, 6),
  })
  .map(({ extras, ...fields }) => dictOf([...extras, ...Object.entries(fields).filter((e): e is [string, PlistValue] => e[1] !== undefined)]));

const tag = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 0xffff }), fc.constant(0xffffffff));
const u32 = fc.integer({ min: 0, max: 0xffffffff });

/** One piece of a client's byte stream. */
const op: fc.Arbitrary<Buffer> = fc.oneof(
  {
    weight: 12,
    arbitrary: fc.tuple(fc.constantFrom(1, 1, 0), tag, requestDict, encoding).map(([version, t, dict, enc]) => encodeFrame(version, 8, t, encodeBody(dict, enc))),
  },
  {
    // binary (version 0): LISTEN, CONNECT with a device id / port / reserved bytes, or anything
    weight: 3,
    arbitrary: fc
      .tuple(
        fc.oneof(fc.integer({ min: 0, max: 10 }), u32),
        tag,
        fc.oneof(
          fc.tuple(fc.constantFrom(1, 2, 3, 99, 0xffffffff), fc.integer({ min: 0, max: 0xffff }), fc.uint8Array({ minLength: 2, maxLength: 2 })).map(([id, port, rest]) => {
            const body = Buffer.alloc(8);
            body.writeUInt32LE(id, 0);
            body.writeUInt16BE(port, 4);
            body.set(rest, 6);
            return body;
          }),
          fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
        ),
      )
      .map(([message, t, body]) => encodeFrame(0, message, t, body)),
  },
  {
    // a bogus header: a length out of range or not matching the body, or an unknown version
    weight: 1,
    arbitrary: fc
      .tuple(
        fc.oneof(fc.constant(undefined), fc.integer({ min: 0, max: 15 }), fc.integer({ min: 16, max: 400 }), fc.integer({ min: MAX_FRAME_BYTES + 1, max: 0xffffffff })),
        fc.oneof(fc.integer({ min: 2, max: 9 }), u32),
        fc.oneof(fc.constantFrom(2, 3, 8), u32),
        tag,
        fc.uint8Array({ maxLength: 64 }),
      )
      .map(([length, version, message, t, body]) => {
        const frame = encodeFrame(version, message, t, Buffer.from(body));
        if (length !== undefined) frame.writeUInt32LE(length, 0);
        return frame;
      }),
  },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 64 }).map((b) => Buffer.from(b)) },
);

export interface Script {
  readonly ops: Buffer[];
  /** Write sizes, cycled. */
  readonly cuts: number[];
}

/** A Listen carrying a hostile identity (what other clients' ListListeners then has to write). */
const listenLast: fc.Arbitrary<Buffer> = fc
  .tuple(tag, requestDict, fc.constantFrom<Encoding>({ as: 'xml' }, { as: 'binary' }))
  .map(([t, dict, enc]) => encodeFrame(1, 8, t, encodeBody(dictOf([...Object.entries(dict), ['MessageType', 'Listen']]), enc)));

export const hostileScript: fc.Arbitrary<Script> = fc.record({
  ops: fc
    .tuple(fc.array(op, { minLength: 1, maxLength: 12 }), fc.option(listenLast, { nil: undefined, freq: 2 }))
    .map(([ops, listen]) => (listen === undefined ? ops : [...ops, listen])),
  cuts: fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 5 }),
});

/**
 * One hostile plist request body (a request dict with hostile fields, in any encoding: XML,
 * binary, truncated, spliced, with raw fragments): the default body generator of the client
 * protocol fuzzer (test/support/client-protocol-fuzz.ts).
 */
export const hostileBody: fc.Arbitrary<Buffer> = fc.tuple(requestDict, encoding).map(([dict, enc]) => encodeBody(dict, enc));
