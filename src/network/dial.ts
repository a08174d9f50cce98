/**
 * Opening a TCP connection to a port of a network device: where it is (an endpoint), how Node
 * must be told (an IPv6 link-local address only dials with its zone as an interface NAME: libuv
 * refuses a numeric zone and an address without one, wifi-devices.md §7.1), and what a failure
 * means to a client.
 */
import { connect, isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { Socket } from 'node:net';
import { ConnectionRefusedError, DeviceUnreachableError } from '../devices/index.js';
import { systemErrorCode } from '../errors.js';

/** One address a network device was found at. */
export interface Endpoint {
  /** The IP address, without a zone. */
  readonly address: string;
  readonly family: 4 | 6;
  /** The interface it was found on (0 when unknown); the scope of an fe80:: address. */
  readonly interfaceIndex: number;
  /** That interface's name (needed to dial fe80::). */
  readonly interfaceName?: string | undefined;
}

/**
 * An address a user typed (`--network-device`, AddDevice): an IPv4 or IPv6 literal, `%zone` for
 * a link-local one (an interface name, or its index). Throws RangeError for anything else, and for
 * a link-local address whose interface cannot be named.
 */
export function parseAddress(text: string, interfaces: () => ReturnType<typeof networkInterfaces> = networkInterfaces): Endpoint {
  const [address = '', zone, ...more] = text.split('%');
  const family = isIP(address);
  if (family === 0 || more.length > 0 || (family === 4 && zone !== undefined)) throw new RangeError(`not an IP address: ${text}`);
  if (family === 4) return { address, family: 4, interfaceIndex: 0 };
  if (!isLinkLocal6(address)) return { address, family: 6, interfaceIndex: 0 };
  if (zone === undefined || zone === '') throw new RangeError(`a link-local address needs its interface: ${address}%<interface>`);
  // os.networkInterfaces() gives each fe80:: address its scopeid: the index ↔ name map Node lacks.
  for (const [name, addrs] of Object.entries(interfaces())) {
    const index = (addrs ?? []).find((a) => a.family === 'IPv6' && a.scopeid > 0)?.scopeid;
    if (index === undefined) continue;
    if (zone === name || zone === String(index)) return { address, family: 6, interfaceIndex: index, interfaceName: name };
  }
  throw new RangeError(`no interface ${zone} with an IPv6 link-local address`);
}

/** True for fe80::/10. */
export function isLinkLocal6(address: string): boolean {
  return /^fe[89ab][0-9a-f]:/i.test(address);
}

/** The host string node:net dials: `fe80::1%eth0` for a link-local address, the address otherwise. */
export function dialHost(endpoint: Endpoint): string {
  if (endpoint.family === 6 && isLinkLocal6(endpoint.address) && endpoint.interfaceName !== undefined) {
    return `${endpoint.address}%${endpoint.interfaceName}`;
  }
  return endpoint.address;
}

/** `address` or `[address%if]:port` for logs. */
export function describeEndpoint(endpoint: Endpoint, port?: number): string {
  const host = dialHost(endpoint);
  if (port === undefined) return host;
  return endpoint.family === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Connect to `port` of the device at `endpoint`. Rejects with ConnectionRefusedError (the device
 * answered with RST: nothing listens) or DeviceUnreachableError (no route, host down, or no answer
 * within `timeoutMs`).
 */
export function dialTcp(endpoint: Endpoint, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const socket = connect({ host: dialHost(endpoint), port, family: endpoint.family, noDelay: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new DeviceUnreachableError(port, 'ETIMEDOUT'));
    }, timeoutMs);
    const onError = (err: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      const code = systemErrorCode(err) ?? 'EIO';
      reject(code === 'ECONNREFUSED' ? new ConnectionRefusedError(port) : new DeviceUnreachableError(port, code, { cause: err }));
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.off('error', onError);
      resolve(socket);
    });
  });
}
