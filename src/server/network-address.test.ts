import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeNetworkAddress, ipv6Bytes, layoutFor, NETWORK_ADDRESS_BYTES } from './network-address.js';

describe('NetworkAddress', () => {
  it('IPv4 in both layouts (Apple\'s Windows capture is the native one: 02 00 00 00 c0 a8 0a ef)', () => {
    const bsd = encodeNetworkAddress('192.168.10.239', 4, 0, 'bsd');
    const native = encodeNetworkAddress('192.168.10.239', 4, 0, 'native');
    expect(bsd.length).toBe(NETWORK_ADDRESS_BYTES);
    expect(native.length).toBe(NETWORK_ADDRESS_BYTES);
    expect(bsd.subarray(0, 8).toString('hex')).toBe('10020000c0a80aef');
    expect(native.subarray(0, 8).toString('hex')).toBe('02000000c0a80aef');
    expect(bsd.subarray(8).every((b) => b === 0)).toBe(true);
    expect(native.subarray(8).every((b) => b === 0)).toBe(true);
  });

  it('IPv6 link-local with its scope id in both layouts', () => {
    const addr = 'fe80::1c2b:3aff:fe4d:5e6f';
    const bsd = encodeNetworkAddress(addr, 6, 7, 'bsd');
    const native = encodeNetworkAddress(addr, 6, 7, 'native');
    const expected = 'fe800000000000001c2b3afffe4d5e6f';
    expect(bsd.subarray(0, 28).toString('hex')).toBe('1c1e0000' + '00000000' + expected + '07000000');
    expect(native.subarray(0, 28).toString('hex')).toBe('0a000000' + '00000000' + expected + '07000000');
    expect(bsd.subarray(28).every((b) => b === 0)).toBe(true);
  });

  it('parses every IPv6 text form back to its bytes (compressed anywhere, a zone, a dotted tail)', () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 }), fc.nat(8), fc.nat(8), (words, from, len) => {
      const bytes = Buffer.alloc(16);
      words.forEach((w, i) => { bytes.writeUInt16BE(w, i * 2); });
      const hex = words.map((w) => w.toString(16));
      const start = Math.min(from, 8);
      const end = Math.min(8, start + len);
      // `::` may stand for one or more zero words; make the run zeros first.
      for (let i = start; i < end; i++) { hex[i] = '0'; bytes.writeUInt16BE(0, i * 2); }
      const text = end - start >= 1 ? `${hex.slice(0, start).join(':')}::${hex.slice(end).join(':')}` : hex.join(':');
      expect(ipv6Bytes(text).equals(bytes)).toBe(true);
      expect(ipv6Bytes(`${text}%eth0`).equals(bytes)).toBe(true);
    }));
    expect(ipv6Bytes('::ffff:192.168.1.2').toString('hex')).toBe('00000000000000000000ffffc0a80102');
    for (const bad of ['1::2::3', '1:2:3:4:5:6:7', '12345::', 'g::', '1:2:3:4:5:6:7:8:9']) expect(() => ipv6Bytes(bad)).toThrow(RangeError);
  });

  it('each client gets the layout it reads', () => {
    expect(layoutFor({ progName: 'iproxy', clientVersionString: 'libusbmuxd 2.1.1' })).toBe('bsd');
    expect(layoutFor({ progName: 'inetcat', clientVersionString: 'libusbmuxd 2.0.2' })).toBe('bsd');
    expect(layoutFor({ progName: 'idevice_id', clientVersionString: 'libusbmuxd 2.0.2' })).toBe('bsd');
    expect(layoutFor({ progName: 'idevice_id', clientVersionString: 'libusbmuxd 2.1.0' })).toBe('native');
    expect(layoutFor({ progName: 'pymobiledevice3', clientVersionString: 'usbmux-py' })).toBe('bsd');
    expect(layoutFor({})).toBe('bsd');
  });
});
