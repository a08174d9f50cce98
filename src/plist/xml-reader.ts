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
 */
import { PlistParseError } from './errors.js';
import type { PlistDict, PlistLimits, PlistValue } from './types.js';

interface Tag {
  readonly name: string;
  /** `<x>` open, `</x>` close, `<x/>` empty. */
  readonly kind: 'open' | 'close' | 'empty';
}

const INTEGER = /^[+-]?\d+$/;
const REAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const NAME = /[A-Za-z_][\w.-]*/y;
const ENTITY = /&(?:#(\d{1,7})|#x([0-9A-Fa-f]{1,6})|(lt|gt|amp|quot|apos));/y;
const NAMED_ENTITIES: Readonly<Record<string, string>> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

export function readXmlPlist(text: string, limits: PlistLimits): PlistValue {
  return new XmlPlistReader(text, limits).document();
}

class XmlPlistReader {
  private readonly s: string;
  private readonly limits: PlistLimits;
  private pos = 0;
  private objects = 0;

  constructor(s: string, limits: PlistLimits) {
    this.s = s;
    this.limits = limits;
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
        return this.integer(this.text(tag).trim());
      case 'real':
        return this.real(this.text(tag).trim());
      case 'true':
      case 'false':
        if (tag.kind === 'open') this.expectClose(tag.name);
        return tag.name === 'true';
      case 'data':
        return this.data(this.text(tag));
      case 'date':
        return this.date(this.text(tag).trim());
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
    if (depth > this.limits.maxDepth) {
      throw new PlistParseError('MUXD_ERR_PLIST_TOO_DEEP', `plist nests deeper than ${this.limits.maxDepth}`);
    }
  }

  private integer(text: string): number | bigint {
    if (!INTEGER.test(text)) this.fail(`invalid integer ${JSON.stringify(text.slice(0, 40))}`);
    const value = BigInt(text);
    return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  }

  private real(text: string): number {
    const value = REAL.test(text) ? Number(text) : Number.NaN;
    // 1e999 matches the grammar but is Infinity: refused like the binary reader refuses it.
    if (!Number.isFinite(value)) this.fail(`invalid or non-finite real ${JSON.stringify(text.slice(0, 40))}`);
    return value;
  }

  private data(text: string): Buffer {
    const compact = text.replace(/\s+/g, '');
    if (!BASE64.test(compact)) this.fail('invalid base64 in <data>');
    return Buffer.from(compact, 'base64');
  }

  private date(text: string): Date {
    const date = new Date(text);
    if (text === '' || Number.isNaN(date.getTime())) this.fail(`invalid date ${JSON.stringify(text.slice(0, 40))}`);
    return date;
  }

  /** Character data up to `</name>` (entities and CDATA decoded); empty for `<name/>`. */
  private text(tag: Tag): string {
    if (tag.kind === 'empty') return '';
    const s = this.s;
    let out = '';
    for (;;) {
      const lt = s.indexOf('<', this.pos);
      if (lt === -1) this.fail(`unterminated <${tag.name}>`);
      out += this.decodeEntities(s.slice(this.pos, lt));
      this.pos = lt;
      if (s.startsWith('<![CDATA[', lt)) {
        const end = s.indexOf(']]>', lt + 9);
        if (end === -1) this.fail('unterminated CDATA section');
        out += s.slice(lt + 9, end);
        this.pos = end + 3;
        continue;
      }
      if (s.startsWith('<!--', lt)) {
        this.skipComment();
        continue;
      }
      this.expectClose(tag.name);
      return out;
    }
  }

  private decodeEntities(raw: string): string {
    if (!raw.includes('&')) return raw;
    let out = '';
    let from = 0;
    for (let amp = raw.indexOf('&'); amp !== -1; amp = raw.indexOf('&', from)) {
      out += raw.slice(from, amp);
      ENTITY.lastIndex = amp;
      const m = ENTITY.exec(raw);
      if (m === null) this.fail('invalid entity reference');
      const [whole, dec, hex, named] = m;
      if (named !== undefined) out += NAMED_ENTITIES[named] ?? '';
      else {
        const code = Number.parseInt(dec ?? hex ?? '', dec === undefined ? 16 : 10);
        if (code > 0x10ffff || code === 0) this.fail('invalid character reference');
        out += String.fromCodePoint(code);
      }
      from = amp + whole.length;
    }
    return out + raw.slice(from);
  }

  /** The next tag, skipping whitespace, comments, processing instructions and DOCTYPE. */
  private tag(): Tag {
    this.skipMisc();
    const s = this.s;
    if (s[this.pos] !== '<') this.fail(this.pos >= s.length ? 'unexpected end of document' : 'text where an element was expected');
    let i = this.pos + 1;
    const close = s[i] === '/';
    if (close) i += 1;
    NAME.lastIndex = i;
    const m = NAME.exec(s);
    if (m === null) this.fail('invalid element name');
    const name = m[0];
    i += name.length;
    const end = s.indexOf('>', i);
    if (end === -1) this.fail(`unterminated <${name}`);
    const rest = s.slice(i, end);
    // Attributes (e.g. <plist version="1.0">) are skipped; a '<' inside a tag is malformed.
    if (rest.includes('<') || (rest !== '' && rest !== '/' && !/^\s/.test(rest))) this.fail(`malformed tag <${name}`);
    const empty = rest.endsWith('/');
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
      while (this.pos < s.length && /\s/.test(s.charAt(this.pos))) this.pos += 1;
      if (s.startsWith('<?', this.pos)) {
        const end = s.indexOf('?>', this.pos + 2);
        if (end === -1) this.fail('unterminated processing instruction');
        this.pos = end + 2;
      } else if (s.startsWith('<!--', this.pos)) {
        this.skipComment();
      } else if (s.startsWith('<!DOCTYPE', this.pos)) {
        // An internal subset ([...]) could declare entities; plists never carry one.
        const end = s.indexOf('>', this.pos);
        if (end === -1 || s.slice(this.pos, end).includes('[')) this.fail('unsupported DOCTYPE');
        this.pos = end + 1;
      } else {
        return;
      }
    }
  }

  private skipComment(): void {
    const end = this.s.indexOf('-->', this.pos + 4);
    if (end === -1) this.fail('unterminated comment');
    this.pos = end + 3;
  }

  private fail(message: string): never {
    throw new PlistParseError('MUXD_ERR_PLIST_MALFORMED', `${message} (at offset ${this.pos})`);
  }
}
