import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { NetworkAddressError } from '../errors.js';
import { bytesToIpv6 } from '../ip-address.js';
import { decodeNetworkAddress, encodeNetworkAddress, NETWORK_ADDRESS_LENGTH, networkAddressFor } from './network-address.js';

function hex(b: Buffer): string {
  return b.toString('hex');
}
const zeros = (n: number): string => '00'.repeat(n);

describe('encodeNetworkAddress', () => {
  it('IPv4, Linux layout: the shape of the captured Apple (Windows) sample', () => {
    // wifi-devices.md §3.2: 02 00 00 00 c0 a8 0a ef 00 … for 192.168.10.239
    const blob = encodeNetworkAddress({ address: '192.168.10.239' }, 'linux');
    expect(blob.length).toBe(NETWORK_ADDRESS_LENGTH);
    expect(hex(blob)).toBe(`02000000c0a80aef${zeros(120)}`);
  });

  it('IPv4, BSD layout: sa_len 16, family 2', () => {
    expect(hex(encodeNetworkAddress({ address: '10.0.0.7' }, 'bsd'))).toBe(`100200000a000007${zeros(120)}`);
  });

  it('IPv6 link-local, both layouts, scope id little-endian at 24', () => {
    const ip = { address: 'fe80::1c2:3ff:fe04:506', scopeId: 0x1234 };
    const tail = `fe8000000000000001c203fffe04050634120000${zeros(100)}`;
    expect(hex(encodeNetworkAddress(ip, 'linux'))).toBe(`0a00000000000000${tail}`);
    expect(hex(encodeNetworkAddress(ip, 'bsd'))).toBe(`1c1e000000000000${tail}`);
  });

  it('takes a numeric zone as the scope id when none is given, and ignores a named one', () => {
    expect(encodeNetworkAddress({ address: 'fe80::1%7' }, 'linux').readUInt32LE(24)).toBe(7);
    expect(encodeNetworkAddress({ address: 'fe80::1%eth0' }, 'linux').readUInt32LE(24)).toBe(0);
  });

  it('refuses what is not an address of the family asked for', () => {
    for (const bad of ['', 'localhost', '1.2.3', '::g', '1.2.3.4.5', 'fe80::1::2']) {
      expect(() => encodeNetworkAddress({ address: bad }, 'bsd')).toThrow(NetworkAddressError);
    }
    expect(() => encodeNetworkAddress({ family: 6, address: '1.2.3.4' }, 'bsd')).toThrow(NetworkAddressError);
    expect(() => encodeNetworkAddress({ family: 4, address: '::1' }, 'bsd')).toThrow(NetworkAddressError);
    expect(() => encodeNetworkAddress({ address: '::1', scopeId: -1 }, 'bsd')).toThrow(NetworkAddressError);
  });
});

describe('decodeNetworkAddress', () => {
  it('reads both layouts of both families', () => {
    expect(decodeNetworkAddress(Buffer.from(`02000000c0a80aef${zeros(120)}`, 'hex'))).toEqual({ layout: 'linux', family: 4, port: 0, address: '192.168.10.239', scopeId: 0 });
    expect(decodeNetworkAddress(Buffer.from(`10020f7e0a000007${zeros(8)}`, 'hex'))).toEqual({ layout: 'bsd', family: 4, port: 0x0f7e, address: '10.0.0.7', scopeId: 0 });
    expect(decodeNetworkAddress(Buffer.from(`1c1e000000000000fe80000000000000000000000000000103000000`, 'hex'))).toEqual({ layout: 'bsd', family: 6, port: 0, address: 'fe80::1', scopeId: 3 });
  });

  it('refuses unknown families, Windows AF_INET6 and short blobs', () => {
    expect(() => decodeNetworkAddress(Buffer.alloc(128))).toThrow(NetworkAddressError);
    expect(() => decodeNetworkAddress(Buffer.from(`1700${zeros(126)}`, 'hex'))).toThrow(NetworkAddressError);
    expect(() => decodeNetworkAddress(Buffer.from(`0a00${zeros(20)}`, 'hex'))).toThrow(NetworkAddressError);
    expect(() => decodeNetworkAddress(Buffer.from('0200', 'hex'))).toThrow(NetworkAddressError);
  });

  it('never throws anything but NetworkAddressError on arbitrary bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 160 }), (bytes) => {
      try {
        const d = decodeNetworkAddress(bytes);
        expect([4, 6]).toContain(d.family);
      } catch (err) {
        expect(err).toBeInstanceOf(NetworkAddressError);
      }
    }));
  });
});

const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((p) => p.join('.'));
const ipv6Bytes = fc.oneof(
  fc.uint8Array({ minLength: 16, maxLength: 16 }),
  // runs of zero words, where the :: rules matter
  fc.array(fc.oneof(fc.constant(0), fc.constant(0), fc.nat(0xffff)), { minLength: 8, maxLength: 8 }).map((ws) => {
    const b = Buffer.alloc(16);
    ws.forEach((w, i) => b.writeUInt16BE(w, i * 2));
    return new Uint8Array(b);
  }),
);

describe('properties', () => {
  it('encode then decode gives back the address, scope and layout', () => {
    const ip = fc.oneof(
      ipv4.map((address) => ({ address, scopeId: 0, family: 4 as const })),
      fc.tuple(ipv6Bytes, fc.nat()).map(([b, scopeId]) => ({ address: bytesToIpv6(b), scopeId, family: 6 as const })),
    );
    fc.assert(fc.property(ip, fc.constantFrom('bsd' as const, 'linux' as const), (addr, layout) => {
      const blob = encodeNetworkAddress(addr, layout);
      expect(blob.length).toBe(128);
      expect(decodeNetworkAddress(blob)).toEqual({ ...addr, layout, port: 0 });
      // both layouts agree from offset 2 on: only the family bytes differ
      const other = encodeNetworkAddress(addr, layout === 'bsd' ? 'linux' : 'bsd');
      expect(blob.subarray(2).equals(other.subarray(2))).toBe(true);
    }), { numRuns: 1000 });
  });
});

describe('networkAddressFor', () => {
  it('scope id = interface index for link-local IPv6 only', () => {
    expect(decodeNetworkAddress(networkAddressFor({ family: 6, address: 'fe80::1', interfaceIndex: 5 }, 'bsd')).scopeId).toBe(5);
    expect(decodeNetworkAddress(networkAddressFor({ family: 6, address: '2001:db8::1', interfaceIndex: 5 }, 'linux')).scopeId).toBe(0);
    expect(decodeNetworkAddress(networkAddressFor({ family: 4, address: '10.0.0.2', interfaceIndex: 5 }, 'linux'))).toMatchObject({ family: 4, address: '10.0.0.2' });
  });
});
