/**
 * Structure-aware fast-check generators of property lists, for the plist fuzz tests
 * (src/plist/plist-fuzz.test.ts), the plist-fuzz soak scenario and the daemon-level fuzzers:
 *
 * - `validBplist()`: bplist00 documents with a real offset table and trailer whose objects form a
 *   DAG (shared references), with dict keys in ASCII and UTF-16, integers of every width up to 16
 *   bytes, 4- and 8-byte reals, dates, data, wider-than-needed offsets and references; always
 *   within DEFAULT_PLIST_LIMITS, so a reader must accept them.
 * - `treeBplist()`: as valid, with no object referenced twice (its expansion is its own size).
 * - `hostileBplist()`: valid documents with bytes changed, cut or trailers patched; documents of
 *   any objects with containers referencing anything (cycles, out of range, keys that are not
 *   strings, counts that lie); odd markers; and the attack families of plist-attacks.ts with
 *   random sizes (reference and key bombs, wide integers, shared strings and data, deep and wide
 *   containers).
 * - `xmlPlist()` / `hostileXmlPlist()`: XML documents with long numbers (the `<real>` attack
 *   among them), entities and character references good and bad, comments, CDATA, processing
 *   instructions, DOCTYPEs, attributes, deep nesting, unknown or mismatched tags, truncations.
 *
 * `binaryWorkBound` / `xmlWorkBound` are the deterministic work bounds the readers promise (their
 * `WorkMeter` counts): linear in the limits for binary, linear in the input for XML.
 */
import fc from 'fast-check';
import type { PlistLimits } from '../../src/plist/index.js';
import {
  arrayOf, ascii, assemble, data, date, dictOf, FALSE, int, marker, raw, real, setOf, TRUE, utf16, wideIntHeader,
} from './bplist-builder.js';
import type { BpNode } from './bplist-builder.js';
import { keyBomb, oddDate, referenceBomb, sharedDataBomb, sharedStringBomb, wideIntBomb, xmlLongReal } from './plist-attacks.js';

/**
 * The most work (WorkMeter units) the binary reader may do under `limits`: every object and key
 * costs its charged bytes plus at most 9 (its offset and marker), keys number at most the
 * expanded budget, objects at most maxObjects + 1 (the one refused).
 */
export function binaryWorkBound(limits: PlistLimits): number {
  const budget = limits.maxExpandedBytes ?? limits.maxBytes;
  return 10 * budget + 9 * (limits.maxObjects + 2) + 64;
}

/**
 * The most work the XML reader may do on a document of `bytes` bytes (parsePlist's meter, which
 * includes the UTF-8 decode): a constant number of looks at each character. The constant is the
 * worst case of the reader's scans (a run of 3-character tags, each preceded by the three prefix
 * checks between elements, costs about 7 per character); fuzzing finds about 5.
 */
export function xmlWorkBound(bytes: number): number {
  return 12 * bytes + 256;
}

// ---------------------------------------------------------------------------------------------
// Binary

const INT_MIN = -(2n ** 63n);
const INT_MAX = 2n ** 64n - 1n;
/** Seconds from 2001 that Date holds comfortably on both sides. */
const DATE_RANGE = 1e11;

const asciiText = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 40 });
const anyText = fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)), maxLength: 20 });
const keyText = fc.oneof(asciiText, anyText, fc.constantFrom('toString', 'constructor', 'hasOwnProperty', 'MessageType', '')).filter((k) => k !== '__proto__');

/** Encoded leaves every reader must accept. */
const validLeaf: fc.Arbitrary<Buffer> = fc.oneof(
  fc.bigInt({ min: INT_MIN, max: INT_MAX }).map((v) => int(v)),
  fc.integer({ min: 0, max: 300 }).map((v) => int(v)),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => real(d, 8)),
  fc.float({ noNaN: true, noDefaultInfinity: true }).map((f) => real(f, 4)),
  fc.double({ min: -DATE_RANGE, max: DATE_RANGE, noNaN: true }).map((s) => date(s)),
  asciiText.map(ascii),
  anyText.map(utf16),
  fc.uint8Array({ maxLength: 40 }).map((b) => data(Buffer.from(b))),
  fc.constantFrom(TRUE, FALSE),
);
const validKey: fc.Arbitrary<Buffer> = keyText.map((k) => (/^[\x20-\x7e]*$/.test(k) ? ascii(k) : utf16(k)));

interface ContainerSpec {
  readonly dict: boolean;
  /** Child picks, mapped onto objects after this container. */
  readonly picks: readonly number[];
  /** Key picks (dicts). */
  readonly keys: readonly number[];
}

const containerSpec: fc.Arbitrary<ContainerSpec> = fc.record({
  dict: fc.boolean(),
  picks: fc.array(fc.nat(), { maxLength: 3 }),
  keys: fc.array(fc.nat(), { maxLength: 3 }),
});

const widths = fc.record({
  refSize: fc.constantFrom(undefined, 2, 4, 8),
  offsetSize: fc.constantFrom(undefined, 4, 8),
});

function optionsOf(w: { refSize: number | undefined; offsetSize: number | undefined }): { refSize?: number; offsetSize?: number } {
  return { ...(w.refSize === undefined ? {} : { refSize: w.refSize }), ...(w.offsetSize === undefined ? {} : { offsetSize: w.offsetSize }) };
}

/**
 * A DAG: containers first (each referencing only objects after it: later containers and leaves),
 * then leaves, then keys. At most 6 containers of at most 3 children: fewer than 3^6 expansions,
 * well inside the default limits.
 */
export function validBplist(): fc.Arbitrary<Buffer> {
  return fc.record({
    containers: fc.array(containerSpec, { minLength: 1, maxLength: 6 }),
    leaves: fc.array(validLeaf, { minLength: 1, maxLength: 10 }),
    keys: fc.array(validKey, { minLength: 1, maxLength: 5 }),
    widths,
  }).map(({ containers, leaves, keys, widths: w }) => {
    const c = containers.length;
    const firstKey = c + leaves.length;
    const objects: (BpNode | Buffer)[] = containers.map((spec, i) => {
      const after = firstKey - (i + 1);
      const children = spec.picks.map((p) => i + 1 + (p % after));
      if (!spec.dict) return arrayOf(children);
      const n = Math.min(children.length, spec.keys.length);
      return dictOf(spec.keys.slice(0, n).map((k) => firstKey + (k % keys.length)), children.slice(0, n));
    });
    objects.push(...leaves, ...keys);
    return assemble(objects, 0, optionsOf(w));
  });
}

type Tree = { readonly leaf: Buffer } | { readonly items: readonly Tree[] } | { readonly entries: readonly (readonly [Buffer, Tree])[] };

/** A tree of objects, each written once (no shared references), any depth up to 6. */
export function treeBplist(): fc.Arbitrary<Buffer> {
  const { tree } = fc.letrec<{ tree: Tree }>((tie) => ({
    tree: fc.oneof(
      { depthSize: 'small', maxDepth: 6 },
      validLeaf.map((leaf) => ({ leaf })),
      fc.array(tie('tree'), { maxLength: 5 }).map((items) => ({ items })),
      fc.array(fc.tuple(validKey, tie('tree')), { maxLength: 5 }).map((entries) => ({ entries })),
    ),
  }));
  return fc.tuple(tree, widths).map(([t, w]) => {
    const objects: (BpNode | Buffer)[] = [];
    const place = (node: Tree): number => {
      const index = objects.length;
      objects.push(Buffer.alloc(0)); // placeholder, replaced below
      if ('leaf' in node) objects[index] = node.leaf;
      else if ('items' in node) objects[index] = arrayOf(node.items.map(place));
      else {
        const keys = node.entries.map(([k]) => { objects.push(k); return objects.length - 1; });
        objects[index] = dictOf(keys, node.entries.map(([, v]) => place(v)));
      }
      return index;
    };
    place(t);
    return assemble(objects, 0, optionsOf(w));
  });
}

/** Leaves of any kind, odd and lying ones included. */
const anyLeaf: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 4, arbitrary: validLeaf },
  { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 0, max: 15 }), fc.integer({ min: 0, max: 64 })).map(([n, present]) => wideIntHeader(n, present)) },
  { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 0, max: 15 }), fc.uint8Array({ maxLength: 16 })).map(([n, b]) => Buffer.concat([Buffer.from([0x20 | n]), b])) },
  { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 0x30, max: 0x3f }), fc.double()).map(([m, s]) => date(s, m)) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(0x4, 0x5, 0x6), fc.oneof(fc.nat(40), fc.nat(2 ** 31))).map(([t, n]) => marker(t, n)) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(0x4f, 0x5f, 0x6f, 0xaf, 0xdf), fc.integer({ min: 0, max: 255 })).map(([m, b]) => Buffer.from([m, b, 0, 0])) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }).map((m) => Buffer.from([m])) },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 12 }).map((b) => Buffer.from(b)) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 15 }).map((n) => Buffer.concat([Buffer.from([0x80 | n]), Buffer.alloc(n + 1, 1)])) },
);

/** Any objects; containers reference any index (cycles, sharing, keys of any kind, out of range). */
const anyStructure: fc.Arbitrary<Buffer> = fc.record({
  leaves: fc.array(anyLeaf, { minLength: 1, maxLength: 12 }),
  containers: fc.array(fc.record({
    kind: fc.constantFrom('array', 'set', 'dict'),
    refs: fc.array(fc.nat(), { maxLength: 8 }),
    values: fc.array(fc.nat(), { maxLength: 8 }),
  }), { maxLength: 8 }),
  outOfRange: fc.boolean(),
  top: fc.nat(),
  widths,
}).map(({ leaves, containers, outOfRange, top, widths: w }) => {
  const total = leaves.length + containers.length;
  const mod = outOfRange ? total + 3 : total;
  const objects: (BpNode | Buffer)[] = containers.map((c) => {
    const refs = c.refs.map((r) => r % mod);
    if (c.kind === 'array') return arrayOf(refs);
    if (c.kind === 'set') return setOf(refs);
    const n = Math.min(refs.length, c.values.length);
    return dictOf(refs.slice(0, n), c.values.slice(0, n).map((r) => r % mod));
  });
  objects.push(...leaves);
  return assemble(objects, top % total, optionsOf(w));
});

/** The attack families of issue 13 with random sizes, and deep or wide containers. */
const attacks: fc.Arbitrary<Buffer> = fc.oneof(
  fc.integer({ min: 1, max: 30 }).map(keyBomb),
  fc.tuple(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 14 })).map(([l, f]) => referenceBomb(l, f)),
  fc.tuple(fc.integer({ min: 1, max: 2000 }), fc.integer({ min: 0, max: 15 }), fc.integer({ min: 0, max: 64 })).map(([c, n, p]) => wideIntBomb(c, n, p)),
  fc.tuple(fc.integer({ min: 1, max: 3000 }), fc.integer({ min: 1, max: 4000 })).map(([c, l]) => sharedStringBomb(c, l)),
  fc.tuple(fc.integer({ min: 1, max: 3000 }), fc.integer({ min: 1, max: 4000 })).map(([c, l]) => sharedDataBomb(c, l)),
  fc.integer({ min: 0x30, max: 0x3f }).map(oddDate),
  fc.integer({ min: 1, max: 200 }).map((levels) => referenceBomb(levels, 1)),
  fc.integer({ min: 0, max: 20000 }).map((n) => assemble([arrayOf(Array<number>(n).fill(1)), TRUE])),
  fc.integer({ min: 0, max: 5000 }).map((n) => assemble([raw(Buffer.concat([marker(0xd, n), Buffer.alloc(2 * n, 1)])), ascii('k')])),
);

/** Bytes changed, a cut, or a trailer field patched. */
function mutate(base: fc.Arbitrary<Buffer>): fc.Arbitrary<Buffer> {
  return fc.record({
    buf: base,
    changes: fc.array(fc.record({ at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }), { maxLength: 4 }),
    cut: fc.option(fc.nat(), { freq: 4 }),
    trailer: fc.option(fc.tuple(fc.constantFrom(8, 16, 24), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })), { freq: 4 }),
  }).map(({ buf, changes, cut, trailer }) => {
    const out = Buffer.from(buf);
    for (const { at, byte } of changes) out[8 + (at % Math.max(1, out.length - 8))] = byte;
    if (trailer !== null && out.length >= 40) out.writeBigUInt64BE(trailer[1], out.length - 32 + trailer[0]);
    return cut === null ? out : out.subarray(0, 8 + (cut % Math.max(1, out.length - 7)));
  });
}

/** Any binary document a hostile peer could send, weighted towards ones that get far. */
export function hostileBplist(): fc.Arbitrary<Buffer> {
  return fc.oneof(
    { weight: 2, arbitrary: validBplist() },
    { weight: 3, arbitrary: mutate(validBplist()) },
    { weight: 3, arbitrary: anyStructure },
    { weight: 1, arbitrary: mutate(anyStructure) },
    { weight: 2, arbitrary: attacks },
    { weight: 1, arbitrary: mutate(attacks) },
  );
}

// ---------------------------------------------------------------------------------------------
// XML

const digits = (min: number, max: number): fc.Arbitrary<string> => fc.integer({ min, max }).map((n) => '1234567890'.repeat(Math.ceil(n / 10)).slice(0, n));
const space = fc.constantFrom('', ' ', '\n', '\t', '\r\n', '  \n\t');

/** Text of a number-like element: valid numbers, long ones, the backtracking attack, junk. */
const numberText: fc.Arbitrary<string> = fc.oneof(
  fc.integer().map(String),
  fc.bigInt({ min: -(2n ** 130n), max: 2n ** 130n }).map(String),
  fc.double().map(String),
  fc.tuple(fc.constantFrom('', '+', '-'), digits(0, 30), fc.constantFrom('', '.'), digits(0, 30), fc.constantFrom('', 'e', 'E+', 'e-'), digits(0, 4))
    .map((parts) => parts.join('')),
  fc.tuple(digits(1, 6000), fc.constantFrom('', 'x', '.', 'e', '.x', 'e+', ' ')).map(([d, tail]) => d + tail),
  fc.constantFrom('', 'inf', 'NaN', '1e999', '-1e999', '0x10', '1_000', '٣', '2024-01-02T03:04:05Z', 'yesterday'),
);

/** Character data: text, references good and bad, CDATA, comments (terminated or not). */
const charData: fc.Arbitrary<string> = fc.array(fc.oneof(
  fc.string({ maxLength: 20 }).map((t) => t.replace(/[<&]/g, '')),
  fc.constantFrom('&lt;', '&gt;', '&amp;', '&quot;', '&apos;', '&#65;', '&#x1F600;', '&#0;', '&#x110000;', '&#99999999999;', '&nbsp;', '&', '&amp', '&#;', '&#x;', '&#xZZ;'),
  fc.string({ maxLength: 20 }).map((t) => `<![CDATA[${t.replace(/]]>/g, '')}]]>`),
  fc.constantFrom('<![CDATA[', ']]>', '<!-- c -->', '<!-- a -- b -->', '<!--', '<!-->'),
  fc.integer({ min: 1, max: 3000 }).map((n) => '&amp;'.repeat(n)),
  fc.integer({ min: 1, max: 3000 }).map((n) => '<!--x-->'.repeat(n)),
), { maxLength: 6 }).map((parts) => parts.join(''));

const elementName = fc.constantFrom('dict', 'array', 'key', 'string', 'integer', 'real', 'true', 'false', 'data', 'date', 'plist', 'foo', 'a-b.c', '1x', '');

function element(name: string, body: string): string {
  return `<${name}>${body}</${name}>`;
}

const { xmlValue } = fc.letrec<{ xmlValue: string }>((tie) => ({
  xmlValue: fc.oneof(
    { depthSize: 'small', maxDepth: 5 },
    charData.map((t) => element('string', t)),
    fc.tuple(space, numberText, space).map(([a, n, b]) => element('integer', a + n + b)),
    fc.tuple(space, numberText, space).map(([a, n, b]) => element('real', a + n + b)),
    fc.tuple(space, numberText).map(([a, n]) => element('date', a + n)),
    fc.tuple(fc.base64String({ maxLength: 80 }), space, fc.constantFrom('', '=', '==', '===', '!', '=A')).map(([b, s, tail]) => element('data', s + b + s + tail)),
    fc.integer({ min: 0, max: 20000 }).map((n) => element('data', 'A'.repeat(n) + '!')),
    fc.constantFrom('<true/>', '<false/>', '<true></true>', '<true>x</true>', '<dict/>', '<array/>', '<string/>', '<foo/>', '<dict a="1"/>', '</dict>', '<array/x>', '<string>'),
    fc.array(tie('xmlValue'), { maxLength: 4 }).map((items) => element('array', items.join(''))),
    fc.array(fc.tuple(fc.oneof({ weight: 9, arbitrary: charData }, { weight: 1, arbitrary: fc.constant('__proto__') }), tie('xmlValue'), space), { maxLength: 4 })
      .map((entries) => element('dict', entries.map(([k, v, s]) => `${s}<key>${k}</key>${s}${v}`).join(''))),
    fc.integer({ min: 0, max: 3000 }).map((n) => element('array', '<true/>'.repeat(n))),
    fc.tuple(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 0, max: 300 })).map(([open, close]) => '<array>'.repeat(open) + '</array>'.repeat(close)),
    fc.tuple(elementName, tie('xmlValue'), elementName).map(([a, v, b]) => `<${a}>${v}</${b}>`),
  ),
}));

const prolog = fc.tuple(
  fc.constantFrom('', '\uFEFF'),
  fc.constantFrom('', '<?xml version="1.0" encoding="UTF-8"?>\n', '<?xml', '<?pi ?>'),
  fc.constantFrom('', '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n', '<!DOCTYPE plist [<!ENTITY x "y">]>', '<!DOCTYPE'),
  fc.constantFrom('', '<!-- hi -->', ' \n'),
).map((parts) => parts.join(''));

/** Documents a reader should mostly accept (some inner values are invalid on purpose). */
export function xmlPlist(): fc.Arbitrary<Buffer> {
  return fc.tuple(prolog, fc.constantFrom('<plist>', '<plist version="1.0">'), xmlValue, space).map(([p, open, v, s]) => Buffer.from(`${p}${open}${s}${v}${s}</plist>${s}`));
}

/** Any XML-ish document: xmlPlist() cut, spliced with junk, or the long-number attacks. */
export function hostileXmlPlist(): fc.Arbitrary<Buffer> {
  return fc.oneof(
    { weight: 3, arbitrary: xmlPlist() },
    { weight: 2, arbitrary: fc.tuple(xmlPlist(), fc.nat()).map(([b, cut]) => b.subarray(0, cut % (b.length + 1))) },
    { weight: 2, arbitrary: fc.tuple(xmlPlist(), fc.nat(), fc.constantFrom('<', '>', '&', ']]>', '<!--', '<?', '<![CDATA[', '\u0000', '\uFFFF', '</plist>')).map(([b, at, junk]) => {
      const s = b.toString();
      const i = at % (s.length + 1);
      return Buffer.from(s.slice(0, i) + junk + s.slice(i));
    }) },
    { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 1, max: 60000 }), fc.constantFrom('x', '.', 'e', '')).map(([n, tail]) => xmlLongReal(n, tail)) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)) },
  );
}
