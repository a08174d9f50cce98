/**
 * `NetworkAddress`, the 128-byte socket address a network device's record carries (port 0: the
 * client puts its own), and which of its two layouts a client can read (wifi-devices.md §3.2–3.3):
 *
 *   offset   IPv4 BSD   IPv4 native   IPv6 BSD     IPv6 native (Linux)
 *   0        10 len     02 00 family  1c len       0a 00 family (u16 LE)
 *   1        02 family                1e family
 *   2-3      port 0     port 0        port 0       port 0
 *   4-7      address    address       flowinfo 0   flowinfo 0
 *   8-23     0          0             address      address
 *   24-27    0          0             scope id     scope id (host order)
 *
 * libusbmuxd's iproxy/inetcat and libimobiledevice up to 1.3 read byte 0 as a length and byte 1
 * as the family (BSD, as Apple's macOS daemon writes it); libimobiledevice 1.4 reads a native
 * Linux sockaddr. No single blob satisfies both, so each client gets the one it reads.
 */

export const NETWORK_ADDRESS_BYTES = 128;

export type AddressLayout = 'bsd' | 'native';

const AF_INET = 2;
const AF_INET6_LINUX = 10;
const AF_INET6_BSD = 30;
const SIN_LEN = 16;
const SIN6_LEN = 28;

/** The 16 bytes of an IPv6 address in text form (with `::` and an optional dotted tail). */
export function ipv6Bytes(address: string): Buffer {
  let text = address;
  const zone = text.indexOf('%');
  if (zone !== -1) text = text.slice(0, zone);
  const words: number[] = [];
  const tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (tail !== null) {
    const v4 = ipv4Bytes(tail[1] ?? '');
    text = `${text.slice(0, tail.index)}${v4.readUInt16BE(0).toString(16)}:${v4.readUInt16BE(2).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) throw new RangeError(`not an IPv6 address: ${address}`);
  const parse = (part: string | undefined): number[] => (part === undefined || part === '' ? [] : part.split(':').map((w) => {
    if (!/^[0-9a-f]{1,4}$/i.test(w)) throw new RangeError(`not an IPv6 address: ${address}`);
    return parseInt(w, 16);
  }));
  const head = parse(halves[0]);
  const rest = parse(halves[1]);
  const fill = 8 - head.length - rest.length;
  if (halves.length === 1 ? fill !== 0 : fill < 1) throw new RangeError(`not an IPv6 address: ${address}`);
  words.push(...head, ...new Array<number>(halves.length === 1 ? 0 : fill).fill(0), ...rest);
  const out = Buffer.alloc(16);
  words.forEach((w, i) => { out.writeUInt16BE(w, i * 2); });
  return out;
}

export function ipv4Bytes(address: string): Buffer {
  const parts = address.split('.');
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) throw new RangeError(`not an IPv4 address: ${address}`);
  return Buffer.from(parts.map(Number));
}

/** The blob for `address` (no zone; `scopeId` is the interface index of an IPv6 address). */
export function encodeNetworkAddress(address: string, family: 4 | 6, scopeId: number, layout: AddressLayout): Buffer {
  const out = Buffer.alloc(NETWORK_ADDRESS_BYTES);
  if (family === 4) {
    if (layout === 'bsd') {
      out.writeUInt8(SIN_LEN, 0);
      out.writeUInt8(AF_INET, 1);
    } else {
      out.writeUInt16LE(AF_INET, 0);
    }
    ipv4Bytes(address).copy(out, 4);
    return out;
  }
  if (layout === 'bsd') {
    out.writeUInt8(SIN6_LEN, 0);
    out.writeUInt8(AF_INET6_BSD, 1);
  } else {
    out.writeUInt16LE(AF_INET6_LINUX, 0);
  }
  ipv6Bytes(address).copy(out, 8);
  out.writeUInt32LE(scopeId >>> 0, 24);
  return out;
}

/** What a client told us about itself, as far as the layout depends on it. */
export interface AddressReader {
  readonly progName?: string | undefined;
  readonly clientVersionString?: string | undefined;
}

/**
 * The layout a client reads. libusbmuxd's own tools (iproxy, inetcat) read BSD in every version;
 * a libusbmuxd 2.0.x library comes with libimobiledevice up to 1.3 (BSD); from libusbmuxd 2.1 on
 * the library beside it is libimobiledevice 1.4, which reads the native layout. Clients that do
 * not parse the blob at all (pymobiledevice3, go-ios: they Connect by DeviceID) get BSD, Apple's
 * own layout, which the parsers that accept either (the idevice crate) read too.
 */
export function layoutFor(reader: AddressReader): AddressLayout {
  const prog = reader.progName ?? '';
  if (prog === 'iproxy' || prog === 'inetcat') return 'bsd';
  const m = /^libusbmuxd (\d+)\.(\d+)/.exec(reader.clientVersionString ?? '');
  if (m === null) return 'bsd';
  const major = Number(m[1]);
  const minor = Number(m[2]);
  return major > 2 || (major === 2 && minor >= 1) ? 'native' : 'bsd';
}
