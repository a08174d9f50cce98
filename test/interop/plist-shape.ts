/**
 * A typed reading of XML plists for differential tests. The `plist` package turns both <integer>
 * and <real> into a JS number, but libusbmuxd reads e.g. `Number` with plist_get_uint_val, so the
 * XML element type matters: this small reader keeps it.
 *
 * Only the XML subset daemons emit is handled (dict, array, key, string, integer, real, true,
 * false, data, date); anything else throws, which a test reports as a failure.
 */

export type Typed =
  | { readonly t: 'dict'; readonly v: ReadonlyMap<string, Typed> }
  | { readonly t: 'array'; readonly v: readonly Typed[] }
  | { readonly t: 'string'; readonly v: string }
  | { readonly t: 'integer'; readonly v: bigint }
  | { readonly t: 'real'; readonly v: number }
  | { readonly t: 'bool'; readonly v: boolean }
  | { readonly t: 'data'; readonly v: Buffer }
  | { readonly t: 'date'; readonly v: string };

const TOKEN = /<(\/?)([A-Za-z]+)[^>]*?(\/?)>|([^<]+)/g;

interface Token {
  readonly close: boolean;
  readonly name: string;
  readonly empty: boolean;
  readonly text: string | undefined;
}

function tokenize(xml: string): Token[] {
  const body = xml.replace(/<\?xml[^>]*\?>/, '').replace(/<!DOCTYPE[^>]*>/, '');
  const tokens: Token[] = [];
  for (const m of body.matchAll(TOKEN)) {
    if (m[4] !== undefined) {
      const prev = tokens.at(-1);
      const insideText = prev !== undefined && !prev.close && !prev.empty && (prev.name === 'string' || prev.name === 'key');
      if (m[4].trim() !== '' || insideText) {
        tokens.push({ close: false, name: '#text', empty: false, text: m[4] });
      }
      continue;
    }
    tokens.push({ close: m[1] === '/', name: m[2] ?? '', empty: m[3] === '/', text: undefined });
  }
  return tokens;
}

function unescape(s: string): string {
  return s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, '&');
}

/** Parses an XML plist document (with or without the <plist> wrapper) into a typed tree. */
export function parseTypedPlist(xml: string): Typed {
  const tokens = tokenize(xml).filter((t) => t.name !== 'plist');
  let i = 0;
  const next = (): Token => {
    const t = tokens[i++];
    if (t === undefined) throw new Error('plist ended early');
    return t;
  };
  const textUntil = (name: string): string => {
    let text = '';
    for (let t = next(); !(t.close && t.name === name); t = next()) {
      if (t.name !== '#text') throw new Error(`unexpected <${t.name}> inside <${name}>`);
      text += t.text ?? '';
    }
    return unescape(text);
  };
  const value = (): Typed => {
    const t = next();
    if (t.close || t.name === '#text') throw new Error(`unexpected token ${t.name}`);
    switch (t.name) {
      case 'dict': {
        const map = new Map<string, Typed>();
        if (t.empty) return { t: 'dict', v: map };
        for (;;) {
          const k = next();
          if (k.close && k.name === 'dict') return { t: 'dict', v: map };
          if (k.name !== 'key') throw new Error(`expected <key>, got <${k.name}>`);
          const key = k.empty ? '' : textUntil('key');
          map.set(key, value());
        }
      }
      case 'array': {
        const items: Typed[] = [];
        if (t.empty) return { t: 'array', v: items };
        while (!(tokens[i]?.close === true && tokens[i]?.name === 'array')) items.push(value());
        i++;
        return { t: 'array', v: items };
      }
      case 'string':
        return { t: 'string', v: t.empty ? '' : textUntil('string') };
      case 'integer':
        return { t: 'integer', v: BigInt(textUntil('integer').trim()) };
      case 'real':
        return { t: 'real', v: Number(textUntil('real').trim()) };
      case 'true':
        return { t: 'bool', v: true };
      case 'false':
        return { t: 'bool', v: false };
      case 'data':
        return { t: 'data', v: t.empty ? Buffer.alloc(0) : Buffer.from(textUntil('data').replace(/\s+/g, ''), 'base64') };
      case 'date':
        return { t: 'date', v: textUntil('date') };
      default:
        throw new Error(`unsupported plist element <${t.name}>`);
    }
  };
  return value();
}

/**
 * The type skeleton of a value: dict keys (sorted) mapped to their shapes, arrays as the list of
 * their items' shapes, scalars as their type name. Equal shapes = same keys and value types.
 */
export function shapeOf(v: Typed): unknown {
  switch (v.t) {
    case 'dict':
      return Object.fromEntries([...v.v.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, x]) => [k, shapeOf(x)]));
    case 'array':
      return v.v.map(shapeOf);
    case 'string':
    case 'integer':
    case 'real':
    case 'bool':
    case 'data':
    case 'date':
      return v.t;
  }
}

/** The entry `key` of a dict, or undefined. */
export function field(v: Typed, key: string): Typed | undefined {
  return v.t === 'dict' ? v.v.get(key) : undefined;
}
