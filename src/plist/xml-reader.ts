/**
 * A strict reader for XML property lists, the subset Apple's and libplist's writers produce:
 * an optional XML declaration, DOCTYPE and comments, then `<plist>` holding one value of
 * dict / array / key / string / integer / real / true / false / data / date. No DTD processing,
 * no external entities, only the five predefined entities and numeric character references.
 *
 * Why our own and not the `plist` package's parser: its DOM parser prints every problem of
 * hostile input to stderr (bypassing our logger), reads integers through parseInt (2^63 − 1
 * loses precision) and builds the whole DOM before our limits can apply. This reader enforces
 * depth and object-count limits while it reads and reports every problem as a PlistParseError.
 *
 * Linear by construction: there is no regular expression here (a backtracking number pattern
 * took seconds on a `<real>` of 60 000 digits followed by a letter). The document is read left to
 * right by index loops and `indexOf` (`find` and `findChar` say why each character is passed a
 * bounded number of times), and the text of an `<integer>`, `<real>` or `<date>` is refused beyond
 * MAX_NUMBER_CHARS before it reaches Number, BigInt or Date. `steps` counts every character
 * examined (see `WorkMeter`), so the tests prove the bound by counting, not by timing.
 *
 * Whitespace is XML's (space, tab, CR, LF), between elements and around numbers and dates.
 */
import { PlistParseError } from './errors.js';
import { depthLimit } from './limits.js';
import type { PlistDict, PlistLimits, PlistValue, WorkMeter } from './types.js';

interface Tag {
  readonly name: string;
  /** `<x>` open, `</x>` close, `<x/>` empty. */
  readonly kind: 'open' | 'close' | 'empty';
}

/**
 * Longest text of an `<integer>`, `<real>` or `<date>`, whitespace trimmed: a 128-bit integer
 * has 40 characters with its sign, a double written in full (`%.17g`) about 24, an ISO 8601 date 20.
 */
export const MAX_NUMBER_CHARS = 64;
/** Integers are at most 128 bits (as in binary plists): [−2^127, 2^128 − 1]. */
const INTEGER_MIN = -(2n ** 127n);
const INTEGER_MAX = 2n ** 128n - 1n;
/** Longest entity reference body between `&` and `;` (`#x10FFFF`, `#1114111`). */
const MAX_ENTITY_CHARS = 8;
const NAMED_ENTITIES: Readonly<Record<string, string>> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

export function readXmlPlist(text: string, limits: PlistLimits, meter?: WorkMeter): PlistValue {
  const reader = new XmlPlistReader(text, limits);
  try {
    return reader.document();
  } finally {
    if (meter !== undefined) meter.work += reader.steps;
  }
}

function isXmlSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function isNameStart(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f;
}

function isNameChar(c: number): boolean {
  return isNameStart(c) || isDigit(c) || c === 0x2e || c === 0x2d;
}

function isBase64Char(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || isDigit(c) || c === 0x2b || c === 0x2f;
}

class XmlPlistReader {
  /** Characters examined so far (every loop iteration, every character an indexOf passes). */
  steps = 0;
  private readonly s: string;
  private readonly limits: PlistLimits;
  private readonly maxDepth: number;
  private pos = 0;
  private objects = 0;
  /** The next occurrence of each one-character needle of a bounded search (see `find`). */
  private readonly nextAt = new Map<string, number>();

  constructor(s: string, limits: PlistLimits) {
    this.s = s;
    this.limits = limits;
    this.maxDepth = depthLimit(limits);
  }

  document(): PlistValue {
    if (this.s.startsWith('\uFEFF')) this.pos = 1;
    const root = this.tag();
    if (root.name !== 'plist' || root.kind !== 'open') this.fail(`expected <plist>, found <${root.name}>`);
    const value = this.value(this.tag(), 0);
    this.expectClose('plist');
    this.skipMisc();
    if (this.pos !== this.s.length) this.fail('content after </plist>');
    return value;
  }

  private value(tag: Tag, depth: number): PlistValue {
    if (tag.kind === 'close') this.fail(`unexpected </${tag.name}>`);
    this.objects += 1;
    if (this.objects > this.limits.maxObjects) {
      throw new PlistParseError('MUXD_ERR_PLIST_TOO_MANY_OBJECTS', `plist holds more than ${this.limits.maxObjects} objects`);
    }
    switch (tag.name) {
      case 'dict':
        return tag.kind === 'empty' ? {} : this.dict(depth + 1);
      case 'array':
        return tag.kind === 'empty' ? [] : this.array(depth + 1);
      case 'string':
        return this.text(tag);
      case 'integer':
        return this.integer(this.numberText(tag));
      case 'real':
        return this.real(this.numberText(tag));
      case 'true':
      case 'false':
        if (tag.kind === 'open') this.expectClose(tag.name);
        return tag.name === 'true';
      case 'data':
        return this.data(this.text(tag));
      case 'date':
        return this.date(this.numberText(tag));
      default:
        return this.fail(`unsupported element <${tag.name}>`);
    }
  }

  private dict(depth: number): PlistDict {
    this.checkDepth(depth);
    const out: PlistDict = {};
    for (;;) {
      const tag = this.tag();
      if (tag.kind === 'close') {
        if (tag.name !== 'dict') this.fail(`expected </dict>, found </${tag.name}>`);
        return out;
      }
      if (tag.name !== 'key') this.fail(`expected <key> in <dict>, found <${tag.name}>`);
      const key = this.text(tag);
      // Assigning `__proto__` would replace the object's prototype instead of adding a key.
      if (key === '__proto__') throw new PlistParseError('MUXD_ERR_PLIST_UNSUPPORTED', 'a __proto__ key is not supported');
      out[key] = this.value(this.tag(), depth);
    }
  }

  private array(depth: number): PlistValue[] {
    this.checkDepth(depth);
    const out: PlistValue[] = [];
    for (;;) {
      const tag = this.tag();
      if (tag.kind === 'close') {
        if (tag.name !== 'array') this.fail(`expected </array>, found </${tag.name}>`);
        return out;
      }
      out.push(this.value(tag, depth));
    }
  }

  private checkDepth(depth: number): void {
    if (depth > this.maxDepth) {
      throw new PlistParseError('MUXD_ERR_PLIST_TOO_DEEP', `plist nests deeper than ${this.maxDepth}`);
    }
  }

  /** The element's text without surrounding XML whitespace, at most MAX_NUMBER_CHARS long. */
  private numberText(tag: Tag): string {
    const raw = this.text(tag);
    let from = 0;
    let to = raw.length;
    while (from < to && isXmlSpace(raw.charCodeAt(from))) from += 1;
    while (to > from && isXmlSpace(raw.charCodeAt(to - 1))) to -= 1;
    this.steps += raw.length;
    if (to - from > MAX_NUMBER_CHARS) this.fail(`<${tag.name}> text longer than ${MAX_NUMBER_CHARS} characters`);
    return raw.slice(from, to);
  }

  /** `[+-]?digits`, at most 128 bits. */
  private integer(text: string): number | bigint {
    const first = text.charCodeAt(0);
    let i = first === 0x2b || first === 0x2d ? 1 : 0;
    if (i === text.length) this.fail(`invalid integer ${JSON.stringify(text)}`);
    for (; i < text.length; i++) if (!isDigit(text.charCodeAt(i))) this.fail(`invalid integer ${JSON.stringify(text)}`);
    this.steps += text.length;
    const value = BigInt(text);
    if (value < INTEGER_MIN || value > INTEGER_MAX) this.fail(`integer ${text} beyond 128 bits`);
    return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  }

  /**
   * `[+-]? (digits [. digits?] | . digits) ([eE] [+-]? digits)?`, finite. One pass: the grammar
   * is checked by position, so no input can make it try alternatives.
   */
  private real(text: string): number {
    const n = text.length;
    const first = text.charCodeAt(0);
    let i = first === 0x2b || first === 0x2d ? 1 : 0;
    let mantissaDigits = 0;
    while (i < n && isDigit(text.charCodeAt(i))) { i += 1; mantissaDigits += 1; }
    if (i < n && text.charCodeAt(i) === 0x2e) {
      i += 1;
      while (i < n && isDigit(text.charCodeAt(i))) { i += 1; mantissaDigits += 1; }
    }
    let valid = mantissaDigits > 0;
    if (valid && i < n && (text.charCodeAt(i) | 0x20) === 0x65) {
      i += 1;
      if (i < n && (text.charCodeAt(i) === 0x2b || text.charCodeAt(i) === 0x2d)) i += 1;
      const exponentStart = i;
      while (i < n && isDigit(text.charCodeAt(i))) i += 1;
      valid = i > exponentStart;
    }
    this.steps += n;
    const value = valid && i === n ? Number(text) : Number.NaN;
    // 1e999 matches the grammar but is Infinity: refused like the binary reader refuses it.
    if (!Number.isFinite(value)) this.fail(`invalid or non-finite real ${JSON.stringify(text)}`);
    return value;
  }

  /** Base64 with XML whitespace anywhere and at most two `=` at the end (Buffer.from skips the whitespace). */
  private data(text: string): Buffer {
    let padding = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (isXmlSpace(c)) continue;
      if (c === 0x3d) padding += 1;
      else if (padding > 0 || !isBase64Char(c)) this.fail('invalid base64 in <data>');
      if (padding > 2) this.fail('invalid base64 in <data>');
    }
    this.steps += 2 * text.length;
    return Buffer.from(text, 'base64');
  }

  private date(text: string): Date {
    const date = new Date(text);
    if (text === '' || Number.isNaN(date.getTime())) this.fail(`invalid date ${JSON.stringify(text)}`);
    return date;
  }

  /** Character data up to `</name>` (entities and CDATA decoded); empty for `<name/>`. */
  private text(tag: Tag): string {
    if (tag.kind === 'empty') return '';
    const s = this.s;
    let out = '';
    for (;;) {
      const lt = this.find('<', this.pos);
      if (lt === -1) this.fail(`unterminated <${tag.name}>`);
      out += this.decodeEntities(this.pos, lt);
      this.pos = lt;
      if (this.at('<![CDATA[')) {
        const end = this.find(']]>', lt + 9);
        if (end === -1) this.fail('unterminated CDATA section');
        this.steps += end - lt - 9;
        out += s.slice(lt + 9, end);
        this.pos = end + 3;
        continue;
      }
      if (this.at('<!--')) {
        this.skipComment();
        continue;
      }
      this.expectClose(tag.name);
      return out;
    }
  }

  /** s[from, to) with entity and character references replaced. */
  private decodeEntities(from: number, to: number): string {
    const s = this.s;
    let out = '';
    let copied = from;
    let amp = this.findChar('&', from, to);
    while (amp !== -1) {
      out += s.slice(copied, amp);
      this.steps += amp - copied;
      const semi = this.findChar(';', amp + 1, Math.min(to, amp + 2 + MAX_ENTITY_CHARS));
      if (semi === -1) this.fail('invalid entity reference');
      out += this.entity(s.slice(amp + 1, semi));
      copied = semi + 1;
      amp = this.findChar('&', copied, to);
    }
    this.steps += to - copied;
    return out + s.slice(copied, to);
  }

  /** The text of one reference, given what lies between `&` and `;` (at most MAX_ENTITY_CHARS). */
  private entity(name: string): string {
    this.steps += name.length;
    if (name.charCodeAt(0) !== 0x23) {
      const named = Object.hasOwn(NAMED_ENTITIES, name) ? NAMED_ENTITIES[name] : undefined;
      if (named === undefined) this.fail('invalid entity reference');
      return named;
    }
    const hex = name.charCodeAt(1) === 0x78;
    const digits = name.slice(hex ? 2 : 1);
    let code = 0;
    for (let i = 0; i < digits.length; i++) {
      const c = digits.charCodeAt(i) | (hex ? 0x20 : 0); // lower-case hex letters; digits unchanged
      const d = isDigit(c) ? c - 0x30 : hex && c >= 0x61 && c <= 0x66 ? c - 0x61 + 10 : -1;
      if (d === -1) this.fail('invalid character reference');
      code = code * (hex ? 16 : 10) + d;
    }
    if (digits === '' || code === 0 || code > 0x10ffff) this.fail('invalid character reference');
    return String.fromCodePoint(code);
  }

  /** The next tag, skipping whitespace, comments, processing instructions and DOCTYPE. */
  private tag(): Tag {
    this.skipMisc();
    const s = this.s;
    if (s.charCodeAt(this.pos) !== 0x3c) this.fail(this.pos >= s.length ? 'unexpected end of document' : 'text where an element was expected');
    let i = this.pos + 1;
    const close = s.charCodeAt(i) === 0x2f;
    if (close) i += 1;
    const nameStart = i;
    if (!isNameStart(s.charCodeAt(i))) this.fail('invalid element name');
    while (i < s.length && isNameChar(s.charCodeAt(i))) i += 1;
    this.steps += i - this.pos;
    const name = s.slice(nameStart, i);
    const end = this.find('>', i);
    if (end === -1) this.fail(`unterminated <${name}`);
    // Attributes (e.g. <plist version="1.0">) are skipped; a '<' inside a tag is malformed.
    if (this.findChar('<', i, end) !== -1) this.fail(`malformed tag <${name}`);
    const empty = end > i && s.charCodeAt(end - 1) === 0x2f;
    if (end > i && !isXmlSpace(s.charCodeAt(i)) && !(empty && end - 1 === i)) this.fail(`malformed tag <${name}`);
    if (close && empty) this.fail(`malformed tag </${name}/>`);
    this.pos = end + 1;
    return { name, kind: close ? 'close' : empty ? 'empty' : 'open' };
  }

  private expectClose(name: string): void {
    const tag = this.tag();
    if (tag.kind !== 'close' || tag.name !== name) this.fail(`expected </${name}>, found <${tag.kind === 'close' ? '/' : ''}${tag.name}>`);
  }

  private skipMisc(): void {
    const s = this.s;
    for (;;) {
      const from = this.pos;
      while (this.pos < s.length && isXmlSpace(s.charCodeAt(this.pos))) this.pos += 1;
      this.steps += this.pos - from;
      if (this.at('<?')) {
        const end = this.find('?>', this.pos + 2);
        if (end === -1) this.fail('unterminated processing instruction');
        this.pos = end + 2;
      } else if (this.at('<!--')) {
        this.skipComment();
      } else if (this.at('<!DOCTYPE')) {
        // An internal subset ([...]) could declare entities; plists never carry one.
        const end = this.find('>', this.pos);
        if (end === -1 || this.findChar('[', this.pos, end) !== -1) this.fail('unsupported DOCTYPE');
        this.pos = end + 1;
      } else {
        return;
      }
    }
  }

  private skipComment(): void {
    const end = this.find('-->', this.pos + 4);
    if (end === -1) this.fail('unterminated comment');
    this.pos = end + 3;
  }

  /** Whether the document continues with `prefix` at the current position. */
  private at(prefix: string): boolean {
    this.steps += prefix.length;
    return this.s.startsWith(prefix, this.pos);
  }

  /**
   * Where `needle` next starts at or after `from`, or -1. Every caller consumes what the search
   * passed (moves `pos` beyond it) or fails, so no character is passed twice by these searches.
   */
  private find(needle: string, from: number): number {
    const found = this.s.indexOf(needle, from);
    this.steps += (found === -1 ? this.s.length : found + needle.length) - from;
    return found;
  }

  /**
   * Where the character `c` next is in [from, to), or -1: `&` and `;` in text, `<` in a tag, `[`
   * in a DOCTYPE. These ranges are not consumed by the search, so indexOf alone would run on to the
   * end of the document once per call; instead the next occurrence found is remembered and searched
   * for again only once the reader is past it: the searches for one character pass each character
   * of the document at most once in all.
   */
  private findChar(c: string, from: number, to: number): number {
    let next = this.nextAt.get(c);
    if (next === undefined || (next !== -1 && next < from)) {
      next = this.s.indexOf(c, from);
      this.steps += (next === -1 ? this.s.length : next + 1) - from;
      this.nextAt.set(c, next);
    }
    return next !== -1 && next >= from && next < to ? next : -1;
  }

  private fail(message: string): never {
    throw new PlistParseError('MUXD_ERR_PLIST_MALFORMED', `${message} (at offset ${this.pos})`);
  }
}
