import type { NetworkInterfaceInfo } from 'node:os';
import { describe, expect, it } from 'vitest';
import { BrowseSchedule } from './browse-schedule.js';
import { dialHost, dialHostForIndex, interfaceForAddress, interfacesFingerprint, isLinkLocalIpv6, listInterfaces } from './interfaces.js';

const v4 = (address: string, cidr: number, internal = false): NetworkInterfaceInfo => ({ address, netmask: '', family: 'IPv4', mac: '00:00:00:00:00:00', internal, cidr: `${address}/${cidr}` });
const v6 = (address: string, cidr: number, scopeid: number, internal = false): NetworkInterfaceInfo => ({ address, netmask: '', family: 'IPv6', mac: '00:00:00:00:00:00', internal, cidr: `${address}/${cidr}`, scopeid });

const RAW = {
  lo: [v4('127.0.0.1', 8, true), v6('::1', 128, 0, true)],
  eth0: [v4('192.168.1.2', 24), v6('fd00::2', 64, 0), v6('fe80::fc:ff:fe00:1', 64, 4)],
  wlan0: [v4('192.168.1.3', 16)],
  veth9: [v6('fe80::9', 64, 9)],
};

describe('listInterfaces', () => {
  it('skips loopback, takes the index from a link-local scope id, else from sysfs', () => {
    const list = listInterfaces({ source: () => RAW, readIndex: (n) => (n === 'wlan0' ? 7 : undefined) });
    expect(list.map((i) => [i.name, i.index])).toEqual([['eth0', 4], ['veth9', 9], ['wlan0', 7]]);
    expect(list[0]!.addresses).toEqual([
      { family: 4, address: '192.168.1.2', prefixLength: 24 },
      { family: 6, address: 'fd00::2', prefixLength: 64 },
      { family: 6, address: 'fe80::fc:ff:fe00:1', prefixLength: 64 },
    ]);
    expect(listInterfaces({ source: () => RAW, readIndex: () => undefined, includeInternal: true }).map((i) => i.name)).toContain('lo');
  });

  it('reads the real machine (lo has index 1)', () => {
    expect(listInterfaces({ includeInternal: true }).find((i) => i.name === 'lo')?.index).toBe(1);
  });

  it('fingerprint changes with an address', () => {
    const a = listInterfaces({ source: () => RAW, readIndex: () => 5 });
    const b = listInterfaces({ source: () => ({ ...RAW, wlan0: [v4('192.168.1.4', 16)] }), readIndex: () => 5 });
    expect(interfacesFingerprint(a)).not.toBe(interfacesFingerprint(b));
    expect(interfacesFingerprint(a)).toBe(interfacesFingerprint(listInterfaces({ source: () => RAW, readIndex: () => 5 })));
  });
});

describe('interfaceForAddress', () => {
  const list = listInterfaces({ source: () => RAW, readIndex: () => 7 });
  it('longest prefix wins', () => {
    expect(interfaceForAddress(list, 4, '192.168.1.77')?.name).toBe('eth0'); // /24 beats wlan0's /16
    expect(interfaceForAddress(list, 4, '192.168.9.1')?.name).toBe('wlan0');
    expect(interfaceForAddress(list, 4, '10.0.0.1')).toBeUndefined();
    expect(interfaceForAddress(list, 6, 'fd00::1234')?.name).toBe('eth0');
    expect(interfaceForAddress(list, 4, 'nonsense')).toBeUndefined();
  });
});

describe('dialHost', () => {
  it('link-local IPv6 needs the interface name; everything else is dialled as is', () => {
    expect(dialHost('fe80::1', 'eth0')).toBe('fe80::1%eth0');
    expect(dialHost('fe80::1%7', 'eth0')).toBe('fe80::1%eth0');
    expect(dialHost('fe80::1', undefined)).toBeUndefined();
    expect(dialHost('febf::1', 'eth0')).toBe('febf::1%eth0');
    expect(dialHost('fec0::1', 'eth0')).toBe('fec0::1');
    expect(dialHost('192.168.1.20', 'eth0')).toBe('192.168.1.20');
    expect(dialHost('2001:db8::1', 'eth0')).toBe('2001:db8::1');
    expect(isLinkLocalIpv6('10.0.0.1')).toBe(false);
  });

  it('maps an interface index to its name', () => {
    const list = listInterfaces({ source: () => RAW, readIndex: () => 7 });
    expect(dialHostForIndex('fe80::1', 9, list)).toBe('fe80::1%veth9');
    expect(dialHostForIndex('fe80::1', 0, list)).toBeUndefined();
    expect(dialHostForIndex('10.1.1.1', 0, list)).toBe('10.1.1.1');
  });
});

describe('BrowseSchedule', () => {
  it('queries at once, then after 1, 2, 4 … s up to the cap; reset starts over', () => {
    const s = new BrowseSchedule(1000, 8000);
    const gaps: number[] = [];
    let now = 1000;
    for (let i = 0; i < 7; i++) {
      expect(s.due(now)).toBe(true);
      s.sent(now);
      gaps.push(s.nextAt() - now);
      expect(s.due(s.nextAt() - 1)).toBe(false);
      now = s.nextAt();
    }
    expect(gaps).toEqual([1000, 2000, 4000, 8000, 8000, 8000, 8000]);
    s.reset(now + 5);
    expect(s.due(now + 5)).toBe(true);
    s.sent(now + 5);
    expect(s.nextAt()).toBe(now + 1005);
  });
});
