import { once } from 'node:events';
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { ConnectionRefusedError, DeviceUnreachableError } from '../devices/index.js';
import { NetworkAddressError } from '../errors.js';
import { describeEndpoint, dialTcp, endpointHost, parseAddress } from './dial.js';
import type { LocalInterface } from './interfaces.js';

const IFACES = (): LocalInterface[] => [
  { name: 'wlan0', index: 3, addresses: [{ family: 4, address: '192.168.1.5', prefixLength: 24 }, { family: 6, address: 'fe80::1', prefixLength: 64 }] },
];

describe('addresses', () => {
  it('parses IPv4, global IPv6 and link-local with an interface name or index', () => {
    expect(parseAddress('10.0.0.2', IFACES)).toEqual({ address: '10.0.0.2', family: 4, interfaceIndex: 0 });
    expect(parseAddress('2001:db8::2', IFACES)).toEqual({ address: '2001:db8::2', family: 6, interfaceIndex: 0 });
    expect(parseAddress('fe80::2%wlan0', IFACES)).toEqual({ address: 'fe80::2', family: 6, interfaceIndex: 3, interfaceName: 'wlan0' });
    expect(parseAddress('fe80::2%3', IFACES)).toEqual({ address: 'fe80::2', family: 6, interfaceIndex: 3, interfaceName: 'wlan0' });
    for (const bad of ['phone.local', '10.0.0.2%wlan0', 'fe80::2', 'fe80::2%eth9', 'fe80::2%wlan0%x', '']) expect(() => parseAddress(bad, IFACES)).toThrow(NetworkAddressError);
  });

  it('dials fe80:: with the interface name (libuv takes no numeric zone), others as they are', () => {
    expect(endpointHost({ address: 'fe80::2', family: 6, interfaceIndex: 3, interfaceName: 'wlan0' })).toBe('fe80::2%wlan0');
    expect(endpointHost({ address: '2001:db8::2', family: 6, interfaceIndex: 3, interfaceName: 'wlan0' })).toBe('2001:db8::2');
    expect(describeEndpoint({ address: 'fe80::2', family: 6, interfaceIndex: 3, interfaceName: 'wlan0' }, 62078)).toBe('[fe80::2%wlan0]:62078');
    expect(describeEndpoint({ address: '10.0.0.2', family: 4, interfaceIndex: 0 }, 7)).toBe('10.0.0.2:7');
  });
});

describe('dialTcp', () => {
  it('connects; a closed port is ConnectionRefusedError; a path error is DeviceUnreachableError', async () => {
    const server = createServer((s) => s.end());
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const addr = server.address();
    if (addr === null || typeof addr === 'string') throw new Error('no address');
    const sock = await dialTcp({ address: '127.0.0.1', family: 4, interfaceIndex: 0 }, addr.port, 1000);
    sock.destroy();
    server.close();
    await once(server, 'close');
    await expect(dialTcp({ address: '127.0.0.1', family: 4, interfaceIndex: 0 }, addr.port, 1000)).rejects.toBeInstanceOf(ConnectionRefusedError);
    // A link-local address on an interface that does not exist: the kernel refuses the route.
    const err = await dialTcp({ address: 'fe80::2', family: 6, interfaceIndex: 999, interfaceName: 'nosuchif0' }, 62078, 1000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeviceUnreachableError);
    expect((err as DeviceUnreachableError).errno).toMatch(/^E/);
  });
});
