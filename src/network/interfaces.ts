/**
 * The host's network interfaces as discovery needs them, and the one rule for dialling a
 * link-local address from Node.
 *
 * Node facts (../shared/docs/wifi-devices.md §7.1): `net.connect` to an fe80:: address works only
 * with the zone as an interface NAME (`fe80::1%eth0`); no zone or a numeric zone (`%4`) gives
 * EINVAL. `os.networkInterfaces()` gives the index only as the `scopeid` of fe80:: entries, so an
 * IPv4-only interface's index is read from /sys/class/net/NAME/ifindex.
 */
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import type { NetworkInterfaceInfo } from 'node:os';
import { isIPv6 } from 'node:net';
import { ipv4ToBytes, ipv6ToBytes, splitZone } from '../ip-address.js';

export interface InterfaceAddress {
  readonly family: 4 | 6;
  readonly address: string;
  readonly prefixLength: number;
}

export interface LocalInterface {
  readonly name: string;
  /** The OS interface index (if_nametoindex); 0 when unknown. */
  readonly index: number;
  readonly addresses: readonly InterfaceAddress[];
}

/** Where a packet came in, as far as we can tell (an IPv4 source outside every local subnet: index 0, no name). */
export interface ArrivalInterface {
  readonly name: string | undefined;
  readonly index: number;
}

export type InterfaceSource = () => NodeJS.Dict<NetworkInterfaceInfo[]>;
export type IndexReader = (name: string) => number | undefined;

function sysfsIndex(name: string): number | undefined {
  if (!/^[\w.:@-]{1,15}$/.test(name)) return undefined;
  try {
    const n = Number(readFileSync(`/sys/class/net/${name}/ifindex`, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    // no sysfs (container without /sys, another OS): the index stays 0 and only InterfaceIndex suffers
    return undefined;
  }
}

/**
 * The non-loopback interfaces that have at least one address, sorted by name. `includeInternal`
 * keeps loopback too (tests on a bare `lo`).
 */
export function listInterfaces(opts: { readonly source?: InterfaceSource; readonly readIndex?: IndexReader; readonly includeInternal?: boolean } = {}): LocalInterface[] {
  const raw = (opts.source ?? networkInterfaces)();
  const out: LocalInterface[] = [];
  for (const name of Object.keys(raw).sort()) {
    const entries = raw[name] ?? [];
    const addresses: InterfaceAddress[] = [];
    let index = 0;
    for (const e of entries) {
      if (e.internal && opts.includeInternal !== true) continue;
      const family = e.family === 'IPv4' ? 4 : 6;
      const prefix = Number((e.cidr ?? '').split('/')[1]);
      addresses.push({ family, address: splitZone(e.address).address, prefixLength: Number.isInteger(prefix) ? prefix : family === 4 ? 32 : 128 });
      if (family === 6 && e.scopeid !== undefined && e.scopeid > 0) index = e.scopeid;
    }
    if (addresses.length === 0) continue;
    if (index === 0) index = (opts.readIndex ?? sysfsIndex)(name) ?? 0;
    out.push({ name, index, addresses });
  }
  return out;
}

/** A stable text of what matters for discovery, to notice a change between two polls. */
export function interfacesFingerprint(list: readonly LocalInterface[]): string {
  return list.map((i) => `${i.name}#${i.index}=${i.addresses.map((a) => `${a.address}/${a.prefixLength}`).join(',')}`).join(';');
}

/**
 * The interface an address is on-link for: longest prefix match over the local subnets (how we
 * attribute an IPv4 packet, for which Node gives no arrival interface). Undefined if none.
 */
export function interfaceForAddress(list: readonly LocalInterface[], family: 4 | 6, address: string): LocalInterface | undefined {
  let bytes: Buffer;
  try {
    bytes = family === 4 ? ipv4ToBytes(address) : ipv6ToBytes(splitZone(address).address);
  } catch {
    return undefined; // not an address: no interface, the caller treats it as unknown
  }
  let best: LocalInterface | undefined;
  let bestLen = -1;
  for (const iface of list) {
    for (const a of iface.addresses) {
      if (a.family !== family || a.prefixLength <= bestLen) continue;
      const local = family === 4 ? ipv4ToBytes(a.address) : ipv6ToBytes(a.address);
      if (samePrefix(bytes, local, a.prefixLength)) {
        best = iface;
        bestLen = a.prefixLength;
      }
    }
  }
  return best;
}

function samePrefix(a: Buffer, b: Buffer, bits: number): boolean {
  const whole = Math.floor(bits / 8);
  for (let i = 0; i < whole; i++) if (a[i] !== b[i]) return false;
  const rest = bits % 8;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return ((a[whole] ?? 0) & mask) === ((b[whole] ?? 0) & mask);
}

/** fe80::/10: an address that means nothing without its interface. (Hot path: no throw, no parse.) */
export function isLinkLocalIpv6(address: string): boolean {
  const bare = splitZone(address).address;
  return /^fe[89ab][0-9a-f]:/i.test(bare) && isIPv6(bare);
}

/**
 * The host string to give `net.connect` for a device address: an IPv6 link-local address gets
 * `%<interface name>` (the only zone Node accepts); anything else is returned as is, without a
 * zone. Undefined when a link-local address has no interface name: it cannot be dialled.
 */
export function dialHost(address: string, interfaceName: string | undefined): string | undefined {
  const bare = splitZone(address).address;
  if (!isLinkLocalIpv6(bare)) return bare;
  return interfaceName === undefined || interfaceName === '' ? undefined : `${bare}%${interfaceName}`;
}

/**
 * dialHost for an address whose interface is known by index (a NetworkAddress scope id, an
 * InterfaceIndex): the index is mapped to its name through the current interface list.
 */
export function dialHostForIndex(address: string, interfaceIndex: number, list: readonly LocalInterface[] = listInterfaces()): string | undefined {
  return dialHost(address, list.find((i) => i.index === interfaceIndex && interfaceIndex > 0)?.name);
}
