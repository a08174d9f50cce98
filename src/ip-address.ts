/**
 * IP addresses as text and as bytes, for the addresses of network devices: what a user types
 * (`--network-device`, AddDevice), what an advert or a sockaddr carries. Pure; used by the server
 * (NetworkAddress blobs) and by src/network (interfaces, subnets, dialling).
 */
import { isIPv4, isIPv6 } from 'node:net';
import { NetworkAddressError } from './errors.js';

/**
 * An address as a user writes it (`--network-device`, AddDevice): `192.168.1.20`, `fe80::1%wlan0`,
 * `fe80::1%3`, `[fe80::1%wlan0]`. Throws NetworkAddressError for anything else (no host names:
 * resolving them is not ours to do here).
 */
export function parseAddressText(text: string): { family: 4 | 6; address: string; zone: string | undefined } {
  let t = text.trim();
  if (t.startsWith('[') && t.endsWith(']')) t = t.slice(1, -1);
  const { address, zone } = splitZone(t);
  if (zone !== undefined && !/^[\w.:@-]{1,15}$/.test(zone)) throw new NetworkAddressError(`bad interface in ${JSON.stringify(text).slice(0, 80)}`);
  if (isIPv4(address) && zone === undefined) return { family: 4, address, zone };
  if (isIPv6(address)) return { family: 6, address: bytesToIpv6(ipv6ToBytes(address)), zone };
  throw new NetworkAddressError(`not an IP address: ${JSON.stringify(text).slice(0, 80)}`);
}

/** `fe80::1%eth0` → { address: 'fe80::1', zone: 'eth0' }. */
export function splitZone(address: string): { address: string; zone: string | undefined } {
  const i = address.indexOf('%');
  return i < 0 ? { address, zone: undefined } : { address: address.slice(0, i), zone: address.slice(i + 1) };
}

export function ipv4ToBytes(address: string): Buffer {
  if (!isIPv4(address)) throw new NetworkAddressError(`not an IPv4 address: ${JSON.stringify(address).slice(0, 80)}`);
  return Buffer.from(address.split('.').map(Number));
}

export function bytesToIpv4(b: Uint8Array): string {
  return `${b[0] ?? 0}.${b[1] ?? 0}.${b[2] ?? 0}.${b[3] ?? 0}`;
}

/** The 16 bytes of an IPv6 address (`::`, embedded dotted quads; no zone). */
export function ipv6ToBytes(address: string): Buffer {
  if (!isIPv6(address)) throw new NetworkAddressError(`not an IPv6 address: ${JSON.stringify(address).slice(0, 80)}`);
  let text = address;
  const lastColon = text.lastIndexOf(':');
  if (text.includes('.', lastColon)) {
    // an embedded dotted quad (::ffff:1.2.3.4) becomes its two words
    const v4 = ipv4ToBytes(text.slice(lastColon + 1));
    text = `${text.slice(0, lastColon + 1)}${v4.readUInt16BE(0).toString(16)}:${v4.readUInt16BE(2).toString(16)}`;
  }
  const parse = (s: string): number[] => (s === '' ? [] : s.split(':').map((w) => parseInt(w, 16)));
  const gap = text.indexOf('::');
  const words: number[] = [];
  if (gap >= 0) {
    const head = parse(text.slice(0, gap));
    const rest = parse(text.slice(gap + 2));
    words.push(...head, ...new Array<number>(8 - head.length - rest.length).fill(0), ...rest);
  } else {
    words.push(...parse(text));
  }
  const out = Buffer.alloc(16);
  words.forEach((w, i) => out.writeUInt16BE(w, i * 2));
  return out;
}

/** RFC 5952 text of 16 bytes: lowercase, no leading zeros, the longest run (≥ 2) of zero words as `::`. */
export function bytesToIpv6(b: Uint8Array): string {
  const words: number[] = [];
  for (let i = 0; i < 8; i++) words.push(((b[i * 2] ?? 0) << 8) | (b[i * 2 + 1] ?? 0));
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = (ws: number[]): string => ws.map((w) => w.toString(16)).join(':');
  if (bestLen < 2) return hex(words);
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLen))}`;
}
