import { describe, expect, it } from 'vitest';
import { chooseAddressLayout, libimobiledeviceFromMaps, libusbmuxdVersion, readPeerLibimobiledevice } from './address-layout.js';

// A trimmed /proc/PID/maps of Debian 12's `ideviceinfo` (libimobiledevice 1.3.0-6, libusbmuxd 2.0.2-3).
const DEBIAN12_MAPS = `
55d0c8e00000-55d0c8e02000 r--p 00000000 fe:01 1311 /usr/bin/ideviceinfo
7f3a40a00000-7f3a40a0c000 r--p 00000000 fe:01 2048 /usr/lib/x86_64-linux-gnu/libimobiledevice-1.0.so.6.0.0
7f3a40a0c000-7f3a40a2f000 r-xp 0000c000 fe:01 2048 /usr/lib/x86_64-linux-gnu/libimobiledevice-1.0.so.6.0.0
7f3a40c00000-7f3a40c04000 r--p 00000000 fe:01 2050 /usr/lib/x86_64-linux-gnu/libusbmuxd-2.0.so.6.0.0
`;
const ARCH_1_4_MAPS = '7f00-7f10 r-xp 0 fe:01 9 /usr/lib/libimobiledevice-1.0.so.6.1.0\n';

describe('chooseAddressLayout', () => {
  it('gives libusbmuxd tools the BSD layout whatever their version', () => {
    expect(chooseAddressLayout({ progName: 'iproxy', clientVersionString: 'libusbmuxd 2.1.1' }).layout).toBe('bsd');
    expect(chooseAddressLayout({ progName: '/usr/bin/inetcat', clientVersionString: 'libusbmuxd 2.0.2' }).layout).toBe('bsd');
  });

  it('gives Debian 12 clients (libusbmuxd 2.0.2, libimobiledevice 1.3.0) the BSD layout', () => {
    for (const progName of ['idevice_id', 'ideviceinfo', 'idevicepair']) {
      expect(chooseAddressLayout({ progName, clientVersionString: 'libusbmuxd 2.0.2' }).layout).toBe('bsd');
      expect(chooseAddressLayout({ progName, clientVersionString: 'libusbmuxd 2.0.2', libimobiledevice: libimobiledeviceFromMaps(DEBIAN12_MAPS) }).layout).toBe('bsd');
    }
  });

  it('gives libimobiledevice 1.4 (.so.6.1) and libusbmuxd ≥ 2.1 clients the native Linux layout', () => {
    expect(chooseAddressLayout({ progName: 'ideviceinfo', clientVersionString: 'libusbmuxd 2.0.2', libimobiledevice: libimobiledeviceFromMaps(ARCH_1_4_MAPS) }).layout).toBe('linux');
    expect(chooseAddressLayout({ progName: 'idevice_id', clientVersionString: 'libusbmuxd 2.1.0' }).layout).toBe('linux');
    expect(chooseAddressLayout({ progName: 'idevice_id', clientVersionString: 'libusbmuxd 2.1.1-3-g93eb168' }).layout).toBe('linux');
    expect(chooseAddressLayout({ clientVersionString: 'libusbmuxd 3.0' }).layout).toBe('linux');
  });

  it('defaults to BSD for clients that tell nothing (binary protocol, pymobiledevice3, go-ios)', () => {
    expect(chooseAddressLayout({}).layout).toBe('bsd');
    expect(chooseAddressLayout({ progName: 'pymobiledevice3', clientVersionString: 'usbmux-cli' }).layout).toBe('bsd');
  });

  it('obeys a configured layout', () => {
    expect(chooseAddressLayout({ progName: 'iproxy' }, 'linux')).toEqual({ layout: 'linux', reason: 'configured' });
    expect(chooseAddressLayout({ clientVersionString: 'libusbmuxd 2.1.0' }, 'bsd').layout).toBe('bsd');
  });
});

describe('version readers', () => {
  it('libusbmuxdVersion', () => {
    expect(libusbmuxdVersion('libusbmuxd 2.0.2')).toEqual({ major: 2, minor: 0 });
    expect(libusbmuxdVersion('libusbmuxd 2.1')).toEqual({ major: 2, minor: 1 });
    expect(libusbmuxdVersion('libusbmuxd')).toBeUndefined();
    expect(libusbmuxdVersion('qt4i-usbmuxd 1.0')).toBeUndefined();
    expect(libusbmuxdVersion(undefined)).toBeUndefined();
  });

  it('libimobiledeviceFromMaps', () => {
    expect(libimobiledeviceFromMaps(DEBIAN12_MAPS)).toEqual({ major: 6, minor: 0, patch: 0 });
    expect(libimobiledeviceFromMaps(ARCH_1_4_MAPS)).toEqual({ major: 6, minor: 1, patch: 0 });
    expect(libimobiledeviceFromMaps('7f00-7f10 r-xp 0 fe:01 9 /usr/lib/libusbmuxd-2.0.so.6.0.0\n')).toBeUndefined();
  });

  it('readPeerLibimobiledevice: the maps of a live process; undefined when unreadable', async () => {
    expect(await readPeerLibimobiledevice(42, () => Promise.resolve(DEBIAN12_MAPS))).toEqual({ major: 6, minor: 0, patch: 0 });
    expect(await readPeerLibimobiledevice(42, () => Promise.reject(Object.assign(new Error('EACCES'), { code: 'EACCES' })))).toBeUndefined();
    expect(await readPeerLibimobiledevice(0)).toBeUndefined();
    expect(await readPeerLibimobiledevice(process.pid)).toBeUndefined(); // node maps no libimobiledevice
  });
});
