import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { appleKeyboard, config, ep, iface, iphone, iphoneConfigs, mux, nonApple, ptp, stringDescriptor, visionProLike, withConfigurations } from '../../test/support/usb-descriptors.js';
import {
  connectionSpeed,
  decodeSerialDescriptor,
  guessMode,
  isMuxProductId,
  libusbSpeedFromSysfs,
  locationId,
  matchDevice,
  maxPacketSize,
  parseDeviceMode,
  parseLangId,
  selectMuxConfigurations,
  serialToUdid,
  shouldSwitchMode,
} from './match.js';

describe('matchDevice', () => {
  it('takes an iPhone by product id', () => {
    const { device, configs } = iphone();
    expect(matchDevice(device, configs)).toBe('product-id');
  });

  it('takes an unlisted Apple product (0x12B1) by its usbmux interface', () => {
    const { device, configs } = visionProLike();
    expect(isMuxProductId(device.idProduct)).toBe(false);
    expect(matchDevice(device, configs)).toBe('mux-interface');
  });

  it('ignores an Apple keyboard and non-Apple devices', () => {
    const kb = appleKeyboard();
    const other = nonApple();
    expect(matchDevice(kb.device, kb.configs)).toBeUndefined();
    expect(matchDevice(other.device, other.configs)).toBeUndefined();
  });

  it('knows every listed range, inclusive at both ends', () => {
    for (const pid of [0x1290, 0x12a8, 0x12af, 0x1901, 0x1905, 0x8600]) expect(isMuxProductId(pid)).toBe(true);
    for (const pid of [0x128f, 0x12b0, 0x1900, 0x1906, 0x1227, 0x1281, 0x8601]) expect(isMuxProductId(pid)).toBe(false);
  });

  it('finds usbmux in a non-zero alternate setting for matching purposes', () => {
    const dev = { idVendor: 0x05ac, idProduct: 0x1400, bNumConfigurations: 1 };
    expect(matchDevice(dev, [config(1, [[iface(0, 0xff, 0xfd, 1), { ...mux(0), bAlternateSetting: 1 }]])])).toBe('mux-interface');
  });
});

describe('selectMuxConfigurations', () => {
  it('picks configuration 4, interface 1, OUT 0x04 / IN 0x85 on an iPhone, then 3', () => {
    const picks = selectMuxConfigurations(iphoneConfigs());
    expect(picks.map((p) => p.configurationValue)).toEqual([4, 3]);
    expect(picks[0]).toEqual({
      configurationValue: 4,
      interfaceNumber: 1,
      configurationInterfaces: [0, 1, 2],
      inEndpoint: 0x85,
      outEndpoint: 0x04,
      outMaxPacketSize: 512,
    });
  });

  it('accepts the endpoints in either order', () => {
    const [pick] = selectMuxConfigurations([config(1, [[mux(0, [ep(0x81), ep(0x01)])]])]);
    expect(pick?.inEndpoint).toBe(0x81);
    expect(pick?.outEndpoint).toBe(0x01);
  });

  it('requires all of 255/254/2 (HEAD usbmuxd accepts any one of them)', () => {
    for (const [cls, sub, proto] of [[0xff, 0xfe, 1], [0xff, 0xfd, 2], [0x0a, 0xfe, 2]] as const) {
      expect(selectMuxConfigurations([config(1, [[iface(0, cls, sub, proto, [ep(0x01), ep(0x81)])]])])).toEqual([]);
    }
  });

  it('requires exactly one bulk IN and one bulk OUT', () => {
    const bad = [
      [ep(0x01), ep(0x81), ep(0x82)],
      [ep(0x01), ep(0x02)],
      [ep(0x81), ep(0x82)],
      [ep(0x01), ep(0x81, 3)],
      [ep(0x81)],
    ];
    for (const endpoints of bad) expect(selectMuxConfigurations([config(1, [[mux(0, endpoints)]])])).toEqual([]);
  });

  it('looks only at alternate setting 0', () => {
    const alt1Only = config(1, [[iface(0, 0xff, 0xfd, 1), { ...mux(0), bAlternateSetting: 1 }]]);
    expect(selectMuxConfigurations([alt1Only])).toEqual([]);
  });

  it('uses 64 when wMaxPacketSize reads 0, and masks the high-bandwidth bits', () => {
    expect(maxPacketSize(ep(0x01, 2, 0))).toBe(64);
    expect(maxPacketSize(ep(0x01, 2, 0x1200))).toBe(0x200);
    const [pick] = selectMuxConfigurations([config(1, [[mux(0, [ep(0x01, 2, 0), ep(0x81)])]])]);
    expect(pick?.outMaxPacketSize).toBe(64);
  });

  it('returns nothing for a keyboard', () => {
    expect(selectMuxConfigurations(appleKeyboard().configs)).toEqual([]);
  });
});

describe('serial and UDID', () => {
  it('reads the first LANGID', () => {
    expect(parseLangId(Buffer.from('04030904', 'hex'))).toBe(0x0409);
    expect(parseLangId(Buffer.from('0403', 'hex'))).toBeUndefined();
    expect(parseLangId(Buffer.from('02030904', 'hex'))).toBeUndefined();
  });

  it('decodes the emulated iPhone serial (hex fixture)', () => {
    const raw = Buffer.from('3203300030003000300038003000330030003000300031004100320042003300430034004400350045003800300032004500', 'hex');
    expect(decodeSerialDescriptor(raw)).toBe('00008030001A2B3C4D5E802E');
  });

  it('maps non-ASCII units to ?, stops at NUL, honours bLength', () => {
    expect(decodeSerialDescriptor(Buffer.from('0a03410000014200e9004300', 'hex'))).toBe('A?B?');
    expect(decodeSerialDescriptor(Buffer.from('0a0341004200000043004400', 'hex'))).toBe('AB');
    expect(decodeSerialDescriptor(Buffer.from('0603410042004300', 'hex'))).toBe('AB');
    expect(decodeSerialDescriptor(Buffer.from('07034100420043', 'hex'))).toBe('AB');
    expect(decodeSerialDescriptor(Buffer.from('03', 'hex'))).toBe('');
  });

  it('round-trips printable ASCII (property)', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[\x20-\x7e]{0,126}$/), (s) => {
        expect(decodeSerialDescriptor(stringDescriptor(s))).toBe(s);
      }),
    );
  });

  it('hyphenates 24-character serials only', () => {
    expect(serialToUdid('00008030001A2B3C4D5E802E')).toBe('00008030-001A2B3C4D5E802E');
    const forty = 'a'.repeat(40);
    expect(serialToUdid(forty)).toBe(forty);
    fc.assert(
      fc.property(fc.string({ maxLength: 60 }), (s) => {
        const udid = serialToUdid(s);
        if (s.length === 24) expect(udid.replace('-', '')).toBe(s);
        else expect(udid).toBe(s);
      }),
    );
  });
});

describe('modes', () => {
  it('guesses per the §1.3 table', () => {
    const iph = iphone();
    expect(guessMode(4, iph.configs)).toBe(1);
    expect(guessMode(3, iph.configs)).toBe(1);
    expect(guessMode(1, [config(1, [[mux(0)]])])).toBe(5);
    expect(guessMode(6, withConfigurations(6, [[mux(0)]]).configs)).toBe(4);
    expect(guessMode(5, withConfigurations(5, [[iface(0, 0xff, 42, 0xff)], [mux(1)]]).configs)).toBe(2);
    expect(guessMode(5, withConfigurations(5, [[iface(0, 2, 0x0d, 0)], [mux(1)]]).configs)).toBe(3);
    expect(guessMode(5, withConfigurations(5, [[iface(0, 2, 0x0d, 0)]]).configs)).toBe(0);
    expect(guessMode(5, withConfigurations(5, [[ptp()], [mux(1)]]).configs)).toBe(0);
    expect(guessMode(7, [])).toBe(0);
  });

  it('parses USBMUXD_DEFAULT_DEVICE_MODE like atoi, 1 when unset', () => {
    expect(parseDeviceMode(undefined)).toBe(1);
    expect(parseDeviceMode('3')).toBe(3);
    expect(parseDeviceMode(' 2x')).toBe(2);
    expect(parseDeviceMode('abc')).toBe(0);
    expect(parseDeviceMode('')).toBe(0);
  });

  it('switches only to a known, different mode in 1..5', () => {
    expect(shouldSwitchMode(1, 1)).toBe(false);
    expect(shouldSwitchMode(3, 1)).toBe(true);
    expect(shouldSwitchMode(3, 0)).toBe(false);
    expect(shouldSwitchMode(0, 1)).toBe(false);
    expect(shouldSwitchMode(6, 1)).toBe(false);
  });
});

describe('speed and location', () => {
  it('maps libusb speeds to ConnectionSpeed, unknown as high speed', () => {
    expect([0, 1, 2, 3, 4, 5, 9].map(connectionSpeed)).toEqual([480e6, 1.5e6, 12e6, 480e6, 5e9, 10e9, 480e6]);
  });

  it('reads the sysfs speed attribute', () => {
    expect(['1.5\n', '12\n', '480\n', '5000\n', '10000\n', '20000\n', 'x'].map(libusbSpeedFromSysfs)).toEqual([1, 2, 3, 4, 5, 5, 0]);
  });

  it('builds LocationID as (bus << 16) | address', () => {
    expect(locationId(1, 2)).toBe(0x10002);
    expect(locationId(0xff, 0x7f)).toBe(0xff007f);
  });
});
