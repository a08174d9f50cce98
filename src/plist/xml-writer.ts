/**
 * Writes XML property lists in the layout libplist gives usbmuxd's replies and pair records:
 * the XML declaration and Apple DOCTYPE, `<plist version="1.0">`, the root at column 0, one tab
 * per nesting level, `<data>` as base64 lines of 68 characters on their own lines.
 *
 * Every PlistValue is writable, whatever its strings hold: `&`, `<` and `>` are escaped in keys
 * and strings and everything else is written as is — control characters included, as libplist
 * writes them (a client's ProgName reaches other clients' ListListeners this way). Why our own
 * and not the `plist` package's builder: that one throws on a dict with a `hasOwnProperty` key
 * and on any control character, and a throw while answering one client must not be possible.
 */
import { PlistParseError } from './errors.js';

/** What the writer takes: a PlistValue, or the same shape read-only. */
export type WritablePlistValue =
  | string | number | bigint | boolean | Buffer | Date
  | readonly WritablePlistValue[]
  | WritablePlistDict;
export interface WritablePlistDict {
  readonly [key: string]: WritablePlistValue;
}

const HEADER =
  '<?xml version="1.0" encoding="UTF-8"?>\n' +
  '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n' +
  '<plist version="1.0">\n';
const FOOTER = '</plist>\n';
/** Base64 characters per `<data>` line. */
const DATA_LINE = 68;
const SPECIAL = /[&<>]/g;
const ESCAPES: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;' };

/** The whole document for `value`. Throws PlistParseError only for a non-finite number or an invalid Date. */
export function writeXmlPlist(value: WritablePlistValue): string {
  const out: string[] = [HEADER];
  writeValue(value, 0, out);
  out.push(FOOTER);
  return out.join('');
}

function escapeText(s: string): string {
  return s.replace(SPECIAL, (c) => ESCAPES[c] ?? c);
}

function writeValue(value: WritablePlistValue, depth: number, out: string[]): void {
  const indent = '\t'.repeat(depth);
  if (typeof value === 'string') {
    out.push(`${indent}<string>${escapeText(value)}</string>\n`);
  } else if (typeof value === 'boolean') {
    out.push(value ? `${indent}<true/>\n` : `${indent}<false/>\n`);
  } else if (typeof value === 'bigint') {
    out.push(`${indent}<integer>${value.toString()}</integer>\n`);
  } else if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new PlistParseError('MUXD_ERR_PLIST_UNSUPPORTED', `cannot write the number ${String(value)}`);
    // BigInt keeps an integral number in digits (String(1e21) would be "1e+21").
    if (Number.isInteger(value)) out.push(`${indent}<integer>${BigInt(value).toString()}</integer>\n`);
    else out.push(`${indent}<real>${String(value)}</real>\n`);
  } else if (Buffer.isBuffer(value)) {
    out.push(`${indent}<data>\n`);
    const b64 = value.toString('base64');
    for (let i = 0; i < b64.length; i += DATA_LINE) out.push(`${indent}${b64.slice(i, i + DATA_LINE)}\n`);
    out.push(`${indent}</data>\n`);
  } else if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw new PlistParseError('MUXD_ERR_PLIST_UNSUPPORTED', 'cannot write an invalid date');
    // Second precision, as Apple's and libplist's writers give it.
    out.push(`${indent}<date>${value.toISOString().replace(/\.\d{3}Z$/, 'Z')}</date>\n`);
  } else if (isArray(value)) {
    if (value.length === 0) {
      out.push(`${indent}<array/>\n`);
      return;
    }
    out.push(`${indent}<array>\n`);
    for (const item of value) writeValue(item, depth + 1, out);
    out.push(`${indent}</array>\n`);
  } else {
    writeDict(value, depth, indent, out);
  }
}

function writeDict(dict: WritablePlistDict, depth: number, indent: string, out: string[]): void {
  const entries = Object.entries(dict);
  if (entries.length === 0) {
    out.push(`${indent}<dict/>\n`);
    return;
  }
  out.push(`${indent}<dict>\n`);
  for (const [key, item] of entries) {
    out.push(`${indent}\t<key>${escapeText(key)}</key>\n`);
    writeValue(item, depth + 1, out);
  }
  out.push(`${indent}</dict>\n`);
}

function isArray(value: WritablePlistValue): value is readonly WritablePlistValue[] {
  return Array.isArray(value);
}
