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
import { NetworkAddressError } from '../errors.js';
import { bytesToIpv4, bytesToIpv6, ipv4ToBytes, ipv6ToBytes, splitZone } from '../ip-address.js';

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

/** The 128-byte blob for `ip` in `layout`, port 0. Throws NetworkAddressError for a non-IP string. */
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
      throw new NetworkAddressError(`scope id ${scopeId} is not a 32-bit interface index`);
    }
    blob.writeUInt32LE(scopeId, 24);
    return blob;
  }
  throw new NetworkAddressError(`not an IPv${ip.family ?? '4/6'} address: ${JSON.stringify(ip.address).slice(0, 80)}`);
}

/**
 * Reads a NetworkAddress in either layout (bytes past the sockaddr are ignored, as every client
 * does). Throws NetworkAddressError for anything else, e.g. the Windows AF_INET6 (23).
 */
export function decodeNetworkAddress(blob: Uint8Array): DecodedNetworkAddress {
  const b = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
  if (b.length < SOCKADDR_IN_LEN) throw new NetworkAddressError(`NetworkAddress of ${b.length} bytes is shorter than a sockaddr_in`);
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
    throw new NetworkAddressError(`NetworkAddress starts ${b.subarray(0, 2).toString('hex')}: no known address family`);
  }
  const port = b.readUInt16BE(2);
  if (family === 4) return { layout, family, port, address: bytesToIpv4(b.subarray(4, 8)), scopeId: 0 };
  if (b.length < SOCKADDR_IN6_LEN) throw new NetworkAddressError(`IPv6 NetworkAddress of ${b.length} bytes is shorter than a sockaddr_in6`);
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
