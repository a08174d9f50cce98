/**
 * From a decoded mDNS response (dns-packet's shapes, but treated as untrusted input) to the few
 * records `_apple-mobdev2._tcp` discovery needs, validated and bounded; and the parsing of what
 * those records mean: instance names (`<mac>@<fe80::…>`) and TXT (`identifier`, `authTag*`).
 *
 * Pure functions; nothing here keeps state. Hostile input never throws: a record that does not
 * fit is dropped and counted in the returned `rejected` list (the browser logs it, rate-limited).
 */
import { isIPv4, isIPv6 } from 'node:net';
import { normaliseMac } from './identity.js';
import { isLinkLocalIpv6 } from './interfaces.js';

export const MOBDEV2_SERVICE = '_apple-mobdev2._tcp.local';

/** Bounds on what one advert may make us keep (hostile LANs). */
export const TXT_MAX_BYTES = 4096;
export const TXT_MAX_ENTRIES = 64;
export const AUTH_TAGS_MAX = 32;
/** Longest TTL honoured (seconds): a record claiming more lives this long unless refreshed. */
export const MAX_TTL_SECONDS = 4500;

export type MdnsRecord =
  /** `_apple-mobdev2._tcp.local PTR <instance>._apple-mobdev2._tcp.local` */
  | { readonly type: 'PTR'; readonly name: string; readonly instance: string; readonly ttl: number; readonly flush: boolean }
  | { readonly type: 'SRV'; readonly name: string; readonly instance: string; readonly port: number; readonly target: string; readonly ttl: number; readonly flush: boolean }
  | { readonly type: 'TXT'; readonly name: string; readonly instance: string; readonly txt: readonly Buffer[]; readonly ttl: number; readonly flush: boolean }
  | { readonly type: 'A' | 'AAAA'; readonly name: string; readonly address: string; readonly ttl: number; readonly flush: boolean };

export type RejectReason = 'bad-instance-name' | 'oversized-txt' | 'bad-record';

export interface ExtractResult {
  readonly records: MdnsRecord[];
  readonly rejected: RejectReason[];
}

/**
 * Whether a datagram is worth decoding: an mDNS response (QR set; a browser has no use for other
 * hosts' queries) whose header counts could fit in its length (a question takes ≥ 5 bytes, a
 * resource record ≥ 11). dns-packet allocates arrays of the header's counts before it finds the
 * packet short: a 12-byte datagram claiming 4 × 65535 records costs it about a millisecond.
 */
export function isPlausibleResponse(buf: Buffer): boolean {
  if (buf.length < 12 || ((buf[2] ?? 0) & 0x80) === 0) return false;
  const questions = buf.readUInt16BE(4);
  const records = buf.readUInt16BE(6) + buf.readUInt16BE(8) + buf.readUInt16BE(10);
  return questions * 5 + records * 11 <= buf.length - 12;
}

/** Lower-cased, no trailing dot: the key DNS names are compared by (RFC 6762 §16: case-insensitive). */
export function nameKey(name: string): string {
  return name.replace(/\.$/, '').toLowerCase();
}

const SERVICE_KEY = nameKey(MOBDEV2_SERVICE);
const SERVICE_SUFFIX = `.${SERVICE_KEY}`;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null;
}

/**
 * The records of our service in a response's answer and additional sections. Address records are
 * kept only for host names some SRV of the same packet or of `knownTargets` points at.
 */
export function extractRecords(packet: unknown, knownTargets: (name: string) => boolean = () => false): ExtractResult {
  const records: MdnsRecord[] = [];
  const rejected: RejectReason[] = [];
  if (!isObject(packet)) return { records, rejected: ['bad-record'] };
  const all: unknown[] = [];
  for (const section of ['answers', 'additionals']) {
    const list = packet[section];
    if (Array.isArray(list)) all.push(...(list as unknown[]));
  }
  const addressRecords: { rec: Record<string, unknown>; type: 'A' | 'AAAA' }[] = [];
  const targets = new Set<string>();
  for (const rec of all) {
    if (!isObject(rec) || typeof rec['name'] !== 'string' || typeof rec['type'] !== 'string') continue;
    if (rec['class'] !== undefined && rec['class'] !== 'IN') continue;
    const ttlRaw = rec['ttl'];
    const ttl = typeof ttlRaw === 'number' && Number.isInteger(ttlRaw) && ttlRaw >= 0 ? Math.min(ttlRaw, MAX_TTL_SECONDS) : undefined;
    if (ttl === undefined) continue;
    const flush = rec['flush'] === true;
    const name = rec['name'];
    const key = nameKey(name);
    const data = rec['data'];
    switch (rec['type']) {
      case 'PTR': {
        if (key !== SERVICE_KEY) break;
        if (typeof data !== 'string') { rejected.push('bad-record'); break; }
        const instance = instanceOf(data);
        if (instance === undefined) { rejected.push('bad-instance-name'); break; }
        records.push({ type: 'PTR', name: SERVICE_KEY, instance, ttl, flush });
        break;
      }
      case 'SRV': {
        if (!key.endsWith(SERVICE_SUFFIX)) break;
        const instance = instanceOf(name);
        if (instance === undefined) { rejected.push('bad-instance-name'); break; }
        if (!isObject(data) || typeof data['port'] !== 'number' || typeof data['target'] !== 'string' || !isHostName(data['target'])) { rejected.push('bad-record'); break; }
        const target = nameKey(data['target']);
        targets.add(target);
        records.push({ type: 'SRV', name: key, instance, port: data['port'], target, ttl, flush });
        break;
      }
      case 'TXT': {
        if (!key.endsWith(SERVICE_SUFFIX)) break;
        const instance = instanceOf(name);
        if (instance === undefined) { rejected.push('bad-instance-name'); break; }
        const txt = Array.isArray(data) ? (data as unknown[]).filter((b): b is Buffer => Buffer.isBuffer(b)) : [];
        const size = txt.reduce((n, b) => n + b.length + 1, 0);
        if (size > TXT_MAX_BYTES || txt.length > TXT_MAX_ENTRIES) { rejected.push('oversized-txt'); break; }
        records.push({ type: 'TXT', name: key, instance, txt, ttl, flush });
        break;
      }
      case 'A':
      case 'AAAA':
        addressRecords.push({ rec, type: rec['type'] });
        break;
      default:
        break;
    }
  }
  for (const { rec, type } of addressRecords) {
    const key = nameKey(rec['name'] as string);
    if (!targets.has(key) && !knownTargets(key)) continue;
    const data = rec['data'];
    if (typeof data !== 'string' || !(type === 'A' ? isIPv4(data) : isIPv6(data) && !data.includes('%'))) { rejected.push('bad-record'); continue; }
    const ttl = Math.min(rec['ttl'] as number, MAX_TTL_SECONDS);
    records.push({ type, name: key, address: data.toLowerCase(), ttl, flush: rec['flush'] === true });
  }
  return { records, rejected };
}

/**
 * `<label>._apple-mobdev2._tcp.local` → `<label>`, or undefined when the name is not one instance
 * label under our service or the label is not a sane one (≤ 63 bytes, valid UTF-8, no control
 * characters): a name we could not even query back correctly.
 */
export function instanceOf(fullName: string): string | undefined {
  const trimmed = fullName.replace(/\.$/, '');
  if (!trimmed.toLowerCase().endsWith(SERVICE_SUFFIX)) return undefined;
  const label = trimmed.slice(0, trimmed.length - SERVICE_SUFFIX.length);
  // dns-packet joins labels with '.' without escaping, so a dot here is ambiguous: refuse it
  if (label === '' || label.includes('.') || Buffer.byteLength(label) > 63) return undefined;
  if (label.includes('\uFFFD') || /[\u0000-\u001f\u007f]/.test(label)) return undefined;
  return label;
}

function isHostName(name: string): boolean {
  return name.length > 0 && name.length <= 253 && !name.includes('\uFFFD');
}

/** What an instance name says: `aa:bb:cc:dd:ee:ff@fe80::1` → MAC and link-local address. */
export function parseInstanceName(instance: string): { mac: string | undefined; linkLocal: string | undefined } {
  const at = instance.indexOf('@');
  const head = at < 0 ? instance : instance.slice(0, at);
  const tail = at < 0 ? '' : instance.slice(at + 1);
  return {
    mac: normaliseMac(head),
    linkLocal: isIPv6(tail) && isLinkLocalIpv6(tail) && !tail.includes('%') ? tail.toLowerCase() : undefined,
  };
}

/**
 * The escaped full service name of an instance, as Apple's usbmuxd puts it in
 * `EscapedFullServiceName` (RFC 6763 §4.3 escaping of `.` and `\` in the instance label, trailing dot).
 */
export function escapedFullServiceName(instance: string): string {
  return `${instance.replace(/[\\.]/g, (c) => `\\${c}`)}.${MOBDEV2_SERVICE}.`;
}

export interface MobdevTxt {
  /** The raw `identifier` value. */
  readonly identifier: Buffer | undefined;
  /** The raw values of `authTag` and `authTag#N`, in TXT order, at most AUTH_TAGS_MAX. */
  readonly authTags: Buffer[];
}

/**
 * TXT strings → identifier and auth tags. Keys are case-insensitive and the first occurrence of a
 * key wins (RFC 6763 §6.4); a string without `=` is a boolean key and carries no value.
 */
export function parseMobdevTxt(strings: readonly Buffer[]): MobdevTxt {
  let identifier: Buffer | undefined;
  const authTags: Buffer[] = [];
  const seen = new Set<string>();
  for (const s of strings) {
    const eq = s.indexOf(0x3d);
    if (eq <= 0) continue;
    const key = s.subarray(0, eq).toString('latin1').toLowerCase();
    if (seen.has(key)) continue;
    seen.add(key);
    const value = s.subarray(eq + 1);
    if (key === 'identifier') identifier = Buffer.from(value);
    else if ((key === 'authtag' || key.startsWith('authtag#')) && authTags.length < AUTH_TAGS_MAX) authTags.push(Buffer.from(value));
  }
  return { identifier, authTags };
}
