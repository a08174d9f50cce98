import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { buildBinary, buildXml, parsePlist } from '../plist/index.js';
import type { PlistDict } from '../plist/index.js';
import { InvalidPairRecordDataError, InvalidPairRecordIdError } from '../pairrecords/index.js';
import { BadCommandError, BadVersionError, errorToResult, MalformedPlistRequestError, Result, UnknownDeviceError } from './errors.js';
import { encodeFrame, FrameDecoder, readHeader } from './framing.js';
import type { Frame } from './framing.js';
import {
  BINARY_DEVICE_RECORD_SIZE,
  decodeBinaryDeviceRecord,
  decodeReply,
  decodeRequest,
  encodeAttached,
  encodeBinaryDeviceRecord,
  encodeDetached,
  encodePaired,
  encodeResult,
  swapPort,
  switchesToPlist,
} from './messages.js';
import type { UsbDeviceInfo } from '../devices/index.js';
import type { DeviceRecord } from './messages.js';

function frameOf(buf: Buffer): Frame {
  const d = new FrameDecoder();
  d.push(buf);
  const f = d.read();
  if (f === undefined) throw new Error('incomplete frame');
  return f;
}

function plistRequest(dict: PlistDict, tag = 1, binary = false): Frame {
  return frameOf(encodeFrame(1, 8, tag, binary ? buildBinary(dict) : buildXml(dict)));
}

const DEVICE: DeviceRecord & { info: UsbDeviceInfo } = {
  deviceId: 3,
  info: {
    connectionType: 'USB',
    productId: 0x12a8,
    serial: '00008030-001A2B3C4D5E6F70',
    usbSerial: '00008030001A2B3C4D5E6F70',
    locationId: 0x00010005,
    speed: 480000000,
  },
};

describe('binary replies (hex fixtures)', () => {
  it('RESULT 0, tag 5: 20 bytes, version 0, message 1', () => {
    expect(encodeResult('binary', 5, 0).toString('hex')).toBe('14000000' + '00000000' + '01000000' + '05000000' + '00000000');
  });

  it('DEVICE_REMOVE / DEVICE_PAIRED carry tag 0 and the id', () => {
    expect(encodeDetached('binary', 3).toString('hex')).toBe('14000000000000000500000000000000' + '03000000');
    expect(encodePaired('binary', 3).toString('hex')).toBe('14000000000000000600000000000000' + '03000000');
  });

  it('DEVICE_ADD is 284 bytes with the packed record at the documented offsets', () => {
    const frame = encodeAttached('binary', DEVICE);
    expect(frame.length).toBe(284);
    expect(frame.subarray(0, 16).toString('hex')).toBe('1c010000' + '00000000' + '04000000' + '00000000');
    const rec = frame.subarray(16);
    expect(rec.subarray(0, 4).toString('hex')).toBe('03000000');
    expect(rec.subarray(4, 6).toString('hex')).toBe('a812');
    expect(rec.subarray(6, 31).toString('latin1')).toBe(DEVICE.info.serial);
    expect(rec[31]).toBe(0);
    expect(rec[6 + 255]).toBe(0);
    expect(rec.subarray(262, 264).toString('hex')).toBe('0000');
    expect(rec.subarray(264, 268).toString('hex')).toBe('05000100');
  });

  it('a 300-character serial is cut to 255 bytes so byte 255 stays NUL', () => {
    const rec = encodeBinaryDeviceRecord({ ...DEVICE, info: { ...DEVICE.info, serial: 'A'.repeat(300) } });
    expect(rec[6 + 254]).toBe(0x41);
    expect(rec[6 + 255]).toBe(0);
  });
});

describe('plist replies', () => {
  it('Result: header version 1, message 8, request tag, XML body with an integer Number', () => {
    const frame = encodeResult('plist', 42, 3);
    expect(readHeader(frame)).toEqual({ length: frame.length, version: 1, message: 8, tag: 42 });
    const body = frame.subarray(16).toString();
    expect(body.startsWith('<?xml')).toBe(true);
    expect(body).toContain('<key>Number</key>');
    expect(body).toContain('<integer>3</integer>');
    expect(parsePlist(frame.subarray(16))).toEqual({ MessageType: 'Result', Number: 3 });
  });

  it('Attached: MessageType, DeviceID and the Properties clients read', () => {
    const frame = encodeAttached('plist', DEVICE);
    expect(readHeader(frame).tag).toBe(0);
    expect(parsePlist(frame.subarray(16))).toEqual({
      MessageType: 'Attached',
      DeviceID: 3,
      Properties: {
        ConnectionSpeed: 480000000,
        ConnectionType: 'USB',
        DeviceID: 3,
        LocationID: 0x10005,
        ProductID: 0x12a8,
        SerialNumber: DEVICE.info.serial,
        USBSerialNumber: DEVICE.info.usbSerial,
      },
    });
  });
});

describe('network devices', () => {
  const NET: DeviceRecord = {
    deviceId: 9,
    info: { connectionType: 'Network', serial: DEVICE.info.serial, address: '192.168.10.239', family: 4, interfaceIndex: 3, escapedFullServiceName: 'aa:bb:cc:dd:ee:ff@fe80::1._apple-mobdev2._tcp.local.' },
  };

  it('Attached carries ConnectionType Network, the service name, the interface and a 128-byte NetworkAddress', () => {
    const dict = parsePlist(encodeAttached('plist', NET, 'bsd').subarray(16)) as Record<string, unknown>;
    const props = dict['Properties'] as Record<string, unknown>;
    expect(Object.keys(props).sort()).toEqual(['ConnectionType', 'DeviceID', 'EscapedFullServiceName', 'InterfaceIndex', 'NetworkAddress', 'SerialNumber']);
    expect(props).toMatchObject({ ConnectionType: 'Network', DeviceID: 9, InterfaceIndex: 3, SerialNumber: DEVICE.info.serial, EscapedFullServiceName: NET.info.connectionType === 'Network' ? NET.info.escapedFullServiceName : '' });
    const blob = props['NetworkAddress'] as Buffer;
    expect(blob.length).toBe(128);
    expect(blob.subarray(0, 8).toString('hex')).toBe('10020000c0a80aef');
    const native = (parsePlist(encodeAttached('plist', NET, 'linux').subarray(16)) as { Properties: { NetworkAddress: Buffer } }).Properties.NetworkAddress;
    expect(native.subarray(0, 8).toString('hex')).toBe('02000000c0a80aef');
  });

  it('a manual device without an advert gets the service name other shims use', () => {
    const manual: DeviceRecord = { deviceId: 2, info: { ...NET.info, escapedFullServiceName: undefined } as DeviceRecord['info'] };
    const props = (parsePlist(encodeAttached('plist', manual).subarray(16)) as { Properties: Record<string, unknown> }).Properties;
    expect(props['EscapedFullServiceName']).toBe(`${DEVICE.info.serial}._apple-mobdev2._tcp.local.`);
  });

  it('is never encoded for a binary (v0) client', () => {
    expect(() => encodeAttached('binary', NET)).toThrow(RangeError);
  });
});

describe('decodeRequest', () => {
  it('binary LISTEN and CONNECT (port big-endian on the wire)', () => {
    expect(decodeRequest(frameOf(Buffer.from('10000000000000000300000007000000', 'hex'))).request).toEqual({ type: 'Listen' });
    const connect = frameOf(Buffer.from('180000000000000002000000010000000100000' + '0f27e0000', 'hex'));
    expect(decodeRequest(connect)).toEqual({ request: { type: 'Connect', deviceId: 1, port: 62078 }, plist: false, identity: {} });
  });

  it('binary CONNECT with a short body is a bad command', () => {
    expect(() => decodeRequest(frameOf(encodeFrame(0, 2, 1, Buffer.alloc(6))))).toThrow(BadCommandError);
  });

  it('plist Connect: PortNumber is byte-swapped (32498 → 62078, 5632 → 22)', () => {
    expect(decodeRequest(plistRequest({ MessageType: 'Connect', DeviceID: 1, PortNumber: 32498 })).request)
      .toEqual({ type: 'Connect', deviceId: 1, port: 62078 });
    expect(decodeRequest(plistRequest({ MessageType: 'Connect', DeviceID: 1, PortNumber: 5632 })).request)
      .toEqual({ type: 'Connect', deviceId: 1, port: 22 });
    expect(swapPort(0xf27e)).toBe(0x7ef2);
  });

  it('plist Connect: a missing or non-integer DeviceID is an unknown device (2), PortNumber a bad command (1)', () => {
    expect(() => decodeRequest(plistRequest({ MessageType: 'Connect', DeviceID: '1', PortNumber: 'x' }))).toThrow(UnknownDeviceError);
    expect(() => decodeRequest(plistRequest({ MessageType: 'Connect', DeviceID: 1.5, PortNumber: 32498 }))).toThrow(UnknownDeviceError);
    expect(() => decodeRequest(plistRequest({ MessageType: 'Connect', PortNumber: 32498 }))).toThrow(UnknownDeviceError);
    expect(() => decodeRequest(plistRequest({ MessageType: 'Connect', DeviceID: 1, PortNumber: 'x' }))).toThrow(BadCommandError);
    expect(() => decodeRequest(plistRequest({ MessageType: 'Connect', DeviceID: 1 }))).toThrow(BadCommandError);
  });

  it('refuses a binary plist body as malformed (Result 1; usbmuxd reads XML only): no client sends one', () => {
    const frame = plistRequest({ MessageType: 'ListDevices', ProgName: 'idevice_id', ClientVersionString: 'libusbmuxd 2.0.2', kLibUSBMuxVersion: 3 }, 1, true);
    expect(() => decodeRequest(frame)).toThrow(MalformedPlistRequestError);
    expect(() => decodeRequest(frame)).toThrow(/binary plists are not accepted/);
    expect(switchesToPlist(frame)).toBe(true);
  });

  it('keeps the identity keys of an XML request', () => {
    const d = decodeRequest(plistRequest({ MessageType: 'ListDevices', ProgName: 'idevice_id', ClientVersionString: 'libusbmuxd 2.0.2', kLibUSBMuxVersion: 3, BundleID: 'org.example' }));
    expect(d).toEqual({
      request: { type: 'ListDevices' },
      plist: true,
      identity: { progName: 'idevice_id', clientVersionString: 'libusbmuxd 2.0.2', libusbmuxVersion: 3, bundleId: 'org.example' },
    });
  });

  it('still reads a binary plist inside PairRecordData (libimobiledevice saves records that way)', () => {
    const data = buildBinary({ HostID: 'H' });
    expect(decodeRequest(plistRequest({ MessageType: 'SavePairRecord', PairRecordID: 'abc', PairRecordData: data })).request)
      .toEqual({ type: 'SavePairRecord', pairRecordId: 'abc', data, deviceId: undefined });
  });

  it('pair-record requests keep string ids and data only; a missing one is refused with 22', () => {
    expect(() => decodeRequest(plistRequest({ MessageType: 'ReadPairRecord', PairRecordID: 7 }))).toThrow(InvalidPairRecordIdError);
    expect(() => decodeRequest(plistRequest({ MessageType: 'DeletePairRecord' }))).toThrow(InvalidPairRecordIdError);
    expect(() => decodeRequest(plistRequest({ MessageType: 'SavePairRecord', PairRecordData: Buffer.from('x') }))).toThrow(InvalidPairRecordIdError);
    expect(decodeRequest(plistRequest({ MessageType: 'SavePairRecord', PairRecordID: 'abc', PairRecordData: Buffer.from('x'), DeviceID: 4 })).request)
      .toEqual({ type: 'SavePairRecord', pairRecordId: 'abc', data: Buffer.from('x'), deviceId: 4 });
    expect(decodeRequest(plistRequest({ MessageType: 'SavePairRecord', PairRecordID: 'abc', PairRecordData: Buffer.from('x') })).request)
      .toEqual({ type: 'SavePairRecord', pairRecordId: 'abc', data: Buffer.from('x'), deviceId: undefined });
    expect(() => decodeRequest(plistRequest({ MessageType: 'SavePairRecord', PairRecordID: 'abc', PairRecordData: 'not data' }))).toThrow(InvalidPairRecordDataError);
    expect(decodeRequest(plistRequest({ MessageType: 'DeletePairRecord', PairRecordID: 'abc' })).request)
      .toEqual({ type: 'DeletePairRecord', pairRecordId: 'abc' });
  });

  it('maps bad input to the documented Results', () => {
    const resultOf = (f: Frame): number => {
      try {
        decodeRequest(f);
      } catch (e) {
        return errorToResult(e);
      }
      return -1;
    };
    expect(resultOf(frameOf(encodeFrame(2, 3, 1)))).toBe(Result.BADVERSION);
    expect(resultOf(frameOf(encodeFrame(0, 7, 1)))).toBe(Result.BADCOMMAND);
    expect(resultOf(frameOf(encodeFrame(0, 1, 1, Buffer.alloc(4))))).toBe(Result.BADCOMMAND);
    expect(resultOf(plistRequest({ MessageType: 'Bogus' }))).toBe(Result.BADCOMMAND);
    expect(resultOf(plistRequest({ Number: 1 }))).toBe(Result.BADCOMMAND);
    expect(resultOf(frameOf(encodeFrame(1, 8, 1, Buffer.from('<plist><dict>'))))).toBe(Result.BADCOMMAND);
    expect(resultOf(plistRequest({ MessageType: 'Connect', PortNumber: 1 }))).toBe(Result.BADDEV);
    expect(resultOf(plistRequest({ MessageType: 'Connect', DeviceID: 1 }))).toBe(Result.BADCOMMAND);
    expect(resultOf(plistRequest({ MessageType: 'ReadPairRecord' }))).toBe(Result.EINVAL);
    expect(resultOf(plistRequest({ MessageType: 'SavePairRecord', PairRecordID: 'abc' }))).toBe(Result.EINVAL);
    expect(() => decodeRequest(frameOf(encodeFrame(5, 8, 1)))).toThrow(BadVersionError);
    expect(() => decodeRequest(frameOf(encodeFrame(1, 8, 1, buildXml([1]))))).toThrow(MalformedPlistRequestError);
  });
});

const recordArb = fc.record({
  deviceId: fc.integer({ min: 0, max: 0xffffffff }),
  info: fc.record({
    connectionType: fc.constant('USB' as const),
    productId: fc.integer({ min: 0, max: 0xffff }),
    serial: fc.string({ unit: fc.constantFrom('0', '1', '9', 'A', 'F', '-'), maxLength: 255 }),
    usbSerial: fc.string({ maxLength: 40 }),
    locationId: fc.integer({ min: 0, max: 0xffffffff }),
    speed: fc.integer({ min: 0, max: 0xffffffff }),
  }),
});

describe('round trips', () => {
  it('binary device record', () => {
    fc.assert(fc.property(recordArb, (rec) => {
      const buf = encodeBinaryDeviceRecord(rec);
      expect(buf.length).toBe(BINARY_DEVICE_RECORD_SIZE);
      expect(decodeBinaryDeviceRecord(buf)).toEqual({ deviceId: rec.deviceId, productId: rec.info.productId, serial: rec.info.serial, locationId: rec.info.locationId });
    }));
  });

  it('notifications in both dialects decode to the same event', () => {
    fc.assert(fc.property(recordArb, fc.constantFrom('binary' as const, 'plist' as const), (rec, dialect) => {
      const attached = decodeReply(frameOf(encodeAttached(dialect, rec)));
      expect(attached.kind).toBe('attached');
      expect(attached.kind === 'attached' && attached.deviceId).toBe(rec.deviceId);
      expect(decodeReply(frameOf(encodeDetached(dialect, rec.deviceId)))).toEqual({ kind: 'detached', deviceId: rec.deviceId });
      expect(decodeReply(frameOf(encodePaired(dialect, rec.deviceId)))).toEqual({ kind: 'paired', deviceId: rec.deviceId });
    }));
  });

  it('Result in both dialects, any tag', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 0xffffffff }), fc.boolean(), (tag, number, plist) => {
      const frame = frameOf(encodeResult(plist ? 'plist' : 'binary', tag, number));
      expect(frame.tag).toBe(tag);
      expect(frame.version).toBe(plist ? 1 : 0);
      expect(decodeReply(frame)).toEqual({ kind: 'result', number });
    }));
  });

  it('plist requests: any u32 DeviceID and port survive encode → decode', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 0xffff }), (deviceId, port) => {
      const req = decodeRequest(plistRequest({ MessageType: 'Connect', DeviceID: deviceId, PortNumber: swapPort(port) })).request;
      expect(req).toEqual({ type: 'Connect', deviceId, port });
    }));
  });
});
