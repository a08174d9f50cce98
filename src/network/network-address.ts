/**
 * The `NetworkAddress` of a network device's Attached / ListDevices record: a raw `struct
 * sockaddr_in` / `sockaddr_in6` zero-padded to 128 bytes, port 0 (clients put their own port in).
 * Two layouts exist and clients disagree on which they read (../shared/docs/wifi-devices.md §3.2,
 * §3.3; choosing one per client is address-layout.ts):
 *
 *   offset   IPv4 linux   IPv4 bsd    IPv6 linux      IPv6 bsd
 *   0        02           10 (len)    0A              1C (len)
 *   1        00           02 (AF)     00              1E (AF_INET6 = 30)
 *   2-3      port 0       port 0      port 0          port 0
 *   4-7      address      address     flowinfo 0      flowinfo 0
 *   8-23     0            0           address         address
 *   24-27    0            0           scope id (LE)   scope id (LE)
 *   28-127   0            0           0               0
 *
 * `linux` is what libimobiledevice ≥ 1.4 reads on Linux (a native sockaddr: family u16 in host
 * order, little-endian here); `bsd` (sa_len, then a one-byte family) is what libimobiledevice ≤ 1.3
 * and libusbmuxd's iproxy/inetcat read. From offset 2 on both are the same. The scope id is the
 * interface index, in host byte order like the rest of a sockaddr.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { BadNetworkAddressError } from './errors.js';

export const NETWORK_ADDRESS_LENGTH = 128;

export type AddressLayout = 'bsd' | 'linux';

export interface IpAddress {
  readonly family: 4 | 6;
  /** Dotted quad, or an IPv6 address in RFC 5952 form, never with a `%zone`. */
  readonly address: string;
  /** IPv6 only: the interface index (sin6_scope_id); 0 when unscoped. */
  readonly scopeId: number;
}

export interface DecodedNetworkAddress extends IpAddress {
  readonly layout: AddressLayout;
  /** The port field (0 in every blob a daemon sends). */
  readonly port: number;
}

const AF_INET_LINUX = 2;
const AF_INET6_LINUX = 10;
const AF_INET6_BSD = 30;
const SOCKADDR_IN_LEN = 16;
const SOCKADDR_IN6_LEN = 28;

/** The 128-byte blob for `ip` in `layout`, port 0. Throws BadNetworkAddressError for a non-IP string. */
export function encodeNetworkAddress(ip: { readonly family?: 4 | 6; readonly address: string; readonly scopeId?: number }, layout: AddressLayout): Buffer {
  const { address, zone } = splitZone(ip.address);
  const blob = Buffer.alloc(NETWORK_ADDRESS_LENGTH);
  if (isIPv4(address) && ip.family !== 6) {
    if (layout === 'bsd') {
      blob[0] = SOCKADDR_IN_LEN;
      blob[1] = AF_INET_LINUX;
    } else {
      blob.writeUInt16LE(AF_INET_LINUX, 0);
    }
    ipv4ToBytes(address).copy(blob, 4);
    return blob;
  }
  if (isIPv6(address) && ip.family !== 4) {
    if (layout === 'bsd') {
      blob[0] = SOCKADDR_IN6_LEN;
      blob[1] = AF_INET6_BSD;
    } else {
      blob.writeUInt16LE(AF_INET6_LINUX, 0);
    }
    ipv6ToBytes(address).copy(blob, 8);
    const scopeId = ip.scopeId ?? (zone !== undefined && /^\d+$/.test(zone) ? Number(zone) : 0);
    if (!Number.isInteger(scopeId) || scopeId < 0 || scopeId > 0xffffffff) {
      throw new BadNetworkAddressError(`scope id ${scopeId} is not a 32-bit interface index`);
    }
    blob.writeUInt32LE(scopeId, 24);
    return blob;
  }
  throw new BadNetworkAddressError(`not an IPv${ip.family ?? '4/6'} address: ${JSON.stringify(ip.address).slice(0, 80)}`);
}

/**
 * Reads a NetworkAddress in either layout (bytes past the sockaddr are ignored, as every client
 * does). Throws BadNetworkAddressError for anything else, e.g. the Windows AF_INET6 (23).
 */
export function decodeNetworkAddress(blob: Uint8Array): DecodedNetworkAddress {
  const b = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
  if (b.length < SOCKADDR_IN_LEN) throw new BadNetworkAddressError(`NetworkAddress of ${b.length} bytes is shorter than a sockaddr_in`);
  let layout: AddressLayout;
  let family: 4 | 6;
  if (b[0] === SOCKADDR_IN_LEN && b[1] === AF_INET_LINUX) {
    layout = 'bsd';
    family = 4;
  } else if (b[0] === SOCKADDR_IN6_LEN && b[1] === AF_INET6_BSD) {
    layout = 'bsd';
    family = 6;
  } else if (b.readUInt16LE(0) === AF_INET_LINUX) {
    layout = 'linux';
    family = 4;
  } else if (b.readUInt16LE(0) === AF_INET6_LINUX) {
    layout = 'linux';
    family = 6;
  } else {
    throw new BadNetworkAddressError(`NetworkAddress starts ${b.subarray(0, 2).toString('hex')}: no known address family`);
  }
  const port = b.readUInt16BE(2);
  if (family === 4) return { layout, family, port, address: bytesToIpv4(b.subarray(4, 8)), scopeId: 0 };
  if (b.length < SOCKADDR_IN6_LEN) throw new BadNetworkAddressError(`IPv6 NetworkAddress of ${b.length} bytes is shorter than a sockaddr_in6`);
  return { layout, family, port, address: bytesToIpv6(b.subarray(8, 24)), scopeId: b.readUInt32LE(24) };
}

/**
 * The NetworkAddress of one address of a device, as learnt on an interface: link-local IPv6 gets
 * the interface index as scope id (libimobiledevice's dialler prefers that interface), every
 * other address scope 0.
 */
export function networkAddressFor(a: { readonly family: 4 | 6; readonly address: string; readonly interfaceIndex: number }, layout: AddressLayout): Buffer {
  const linkLocal = a.family === 6 && /^fe[89ab][0-9a-f]:/i.test(a.address);
  return encodeNetworkAddress({ family: a.family, address: a.address, scopeId: linkLocal ? a.interfaceIndex : 0 }, layout);
}

/**
 * An address as a user writes it (`--network-device`, AddDevice): `192.168.1.20`, `fe80::1%wlan0`,
 * `fe80::1%3`, `[fe80::1%wlan0]`. Throws BadNetworkAddressError for anything else (no host names:
 * resolving them is not ours to do here).
 */
export function parseAddressText(text: string): { family: 4 | 6; address: string; zone: string | undefined } {
  let t = text.trim();
  if (t.startsWith('[') && t.endsWith(']')) t = t.slice(1, -1);
  const { address, zone } = splitZone(t);
  if (zone !== undefined && !/^[\w.:@-]{1,15}$/.test(zone)) throw new BadNetworkAddressError(`bad interface in ${JSON.stringify(text).slice(0, 80)}`);
  if (isIPv4(address) && zone === undefined) return { family: 4, address, zone };
  if (isIPv6(address)) return { family: 6, address: bytesToIpv6(ipv6ToBytes(address)), zone };
  throw new BadNetworkAddressError(`not an IP address: ${JSON.stringify(text).slice(0, 80)}`);
}

/** `fe80::1%eth0` → { address: 'fe80::1', zone: 'eth0' }. */
export function splitZone(address: string): { address: string; zone: string | undefined } {
  const i = address.indexOf('%');
  return i < 0 ? { address, zone: undefined } : { address: address.slice(0, i), zone: address.slice(i + 1) };
}

export function ipv4ToBytes(address: string): Buffer {
  if (!isIPv4(address)) throw new BadNetworkAddressError(`not an IPv4 address: ${JSON.stringify(address).slice(0, 80)}`);
  return Buffer.from(address.split('.').map(Number));
}

export function bytesToIpv4(b: Uint8Array): string {
  return `${b[0] ?? 0}.${b[1] ?? 0}.${b[2] ?? 0}.${b[3] ?? 0}`;
}

/** The 16 bytes of an IPv6 address (`::`, embedded dotted quads; no zone). */
export function ipv6ToBytes(address: string): Buffer {
  if (!isIPv6(address)) throw new BadNetworkAddressError(`not an IPv6 address: ${JSON.stringify(address).slice(0, 80)}`);
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
