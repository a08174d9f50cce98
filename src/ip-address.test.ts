import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { NetworkAddressError } from './errors.js';
import { bytesToIpv6, ipv6ToBytes, parseAddressText } from './ip-address.js';

const hex = (b: Buffer): string => b.toString('hex');
const zeros = (n: number): string => '00'.repeat(n);
const ipv6Bytes = fc.array(fc.oneof(fc.constant(0), fc.constant(0), fc.nat(0xffff)), { minLength: 8, maxLength: 8 }).map((ws) => {
  const b = Buffer.alloc(16);
  ws.forEach((w, i) => b.writeUInt16BE(w, i * 2));
  return new Uint8Array(b);
});

describe('IPv6 text and bytes', () => {
  it('IPv6 text: our form equals the WHATWG URL serialiser (RFC 5952), and parses back to the same bytes', () => {
    fc.assert(fc.property(ipv6Bytes, (bytes) => {
      const text = bytesToIpv6(bytes);
      expect(new URL(`http://[${text}]/`).hostname).toBe(`[${text}]`);
      expect([...ipv6ToBytes(text)]).toEqual([...bytes]);
    }), { numRuns: 2000 });
  });

  it('IPv6 parse accepts every spelling Node accepts (embedded IPv4, leading zeros, upper case)', () => {
    expect(hex(ipv6ToBytes('::ffff:1.2.3.4'))).toBe('00000000000000000000ffff01020304');
    expect(hex(ipv6ToBytes('0:0::FFFF:0102:0304'))).toBe('00000000000000000000ffff01020304');
    expect(hex(ipv6ToBytes('::'))).toBe(zeros(16));
    expect(hex(ipv6ToBytes('1::'))).toBe(`0001${zeros(14)}`);
    expect(hex(ipv6ToBytes('1:2:3:4:5:6:1.2.3.4'))).toBe('0001000200030004000500060102' + '0304');
  });
});

describe('parseAddressText', () => {
  it('accepts what users type for a manual device', () => {
    expect(parseAddressText(' 192.168.1.20 ')).toEqual({ family: 4, address: '192.168.1.20', zone: undefined });
    expect(parseAddressText('FE80::0001%wlan0')).toEqual({ family: 6, address: 'fe80::1', zone: 'wlan0' });
    expect(parseAddressText('[fe80::1%3]')).toEqual({ family: 6, address: 'fe80::1', zone: '3' });
    expect(parseAddressText('2001:db8::1')).toEqual({ family: 6, address: '2001:db8::1', zone: undefined });
  });

  it('refuses host names, ports, zones on IPv4 and odd zones', () => {
    for (const bad of ['iphone.local', '192.168.1.20:62078', '192.168.1.20%eth0', 'fe80::1%', 'fe80::1%a/b', '']) {
      expect(() => parseAddressText(bad)).toThrow(NetworkAddressError);
    }
  });
});
