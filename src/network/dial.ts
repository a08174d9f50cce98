/**
 * Opening a TCP connection to a port of a network device: where it is (an endpoint), how Node
 * must be told (an IPv6 link-local address only dials with its zone as an interface NAME: libuv
 * refuses a numeric zone and an address without one, wifi-devices.md §7.1), and what a failure
 * means to a client.
 */
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { ConnectionRefusedError, DeviceUnreachableError } from '../devices/index.js';
import { NetworkAddressError, systemErrorCode } from '../errors.js';
import { parseAddressText } from '../ip-address.js';
import { dialHost, isLinkLocalIpv6, listInterfaces } from './interfaces.js';
import type { LocalInterface } from './interfaces.js';

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
 * An address a user typed (`--network-device`, AddDevice): an IPv4 or IPv6 literal, `%zone` for a
 * link-local one (an interface name, or its index). Throws NetworkAddressError for anything else,
 * and for a link-local address whose interface this host does not have.
 */
export function parseAddress(text: string, interfaces: () => readonly LocalInterface[] = listInterfaces): Endpoint {
  const { family, address, zone } = parseAddressText(text);
  if (family === 4) return { address, family, interfaceIndex: 0 };
  if (!isLinkLocalIpv6(address)) return { address, family, interfaceIndex: 0 };
  if (zone === undefined || zone === '') throw new NetworkAddressError(`a link-local address needs its interface: ${address}%<interface>`);
  const iface = interfaces().find((i) => zone === i.name || (i.index > 0 && zone === String(i.index)));
  if (iface === undefined || iface.index === 0) throw new NetworkAddressError(`no interface ${zone} for ${address}`);
  return { address, family, interfaceIndex: iface.index, interfaceName: iface.name };
}

/** The host string node:net dials: `fe80::1%eth0` for a link-local address, the address otherwise. */
export function endpointHost(endpoint: Endpoint): string {
  return dialHost(endpoint.address, endpoint.interfaceName) ?? endpoint.address;
}

/** `address` or `[address%if]:port` for logs. */
export function describeEndpoint(endpoint: Endpoint, port?: number): string {
  const host = endpointHost(endpoint);
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
    const socket = connect({ host: endpointHost(endpoint), port, family: endpoint.family, noDelay: true });
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
