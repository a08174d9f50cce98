import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  HEADER_V1,
  HEADER_V2,
  MUX_MAGIC,
  Protocol,
  TCP_HEADER,
  TcpFlag,
  decodeMuxHeader,
  decodeTcpHeader,
  decodeVersionBody,
  encodeControl,
  encodeMux,
  encodeSetup,
  encodeTcp,
  encodeVersion,
  flagNames,
  peekLength,
} from './codec.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

describe('codec golden fixtures', () => {
  it('VERSION request/reply uses the 8-byte header', () => {
    expect(encodeVersion({ major: 2, minor: 0, padding: 0 })).toEqual(hex('00000000 00000014 00000002 00000000 00000000'));
    expect(encodeVersion({ major: 1, minor: 3, padding: 0 })).toEqual(hex('00000000 00000014 00000001 00000003 00000000'));
    const packet = hex('00000000 00000014 00000002 00000000 00000000');
    expect(decodeMuxHeader(packet, HEADER_V1)).toEqual({ protocol: 0, length: 20, headerSize: 8, magic: 0, txSeq: 0, rxSeq: 0 });
    expect(decodeVersionBody(packet, HEADER_V1)).toEqual({ major: 2, minor: 0, padding: 0 });
  });

  it('host SETUP', () => {
    expect(encodeSetup({ txSeq: 0, rxSeq: 0xffff })).toEqual(hex('00000002 00000011 FEEDFACE 0000 FFFF 07'));
    expect(decodeMuxHeader(hex('00000002 00000011 FEEDFACE 0000 FFFF 07'), HEADER_V2)).toEqual({
      protocol: Protocol.Setup,
      length: 17,
      headerSize: 16,
      magic: MUX_MAGIC,
      txSeq: 0,
      rxSeq: 0xffff,
    });
  });

  it('a real SYN from usbmuxd to lockdownd', () => {
    const syn = hex('0000000600000024feedface0001ffff 0001f27e 00000000 00000000 5002020000000000');
    expect(encodeTcp({ sport: 1, dport: 62078, seq: 0, ack: 0, flags: TcpFlag.SYN, window: 131072 }, Buffer.alloc(0), { txSeq: 1, rxSeq: 0xffff })).toEqual(syn);
    expect(decodeMuxHeader(syn, HEADER_V2)).toMatchObject({ protocol: 6, length: 36, magic: MUX_MAGIC, txSeq: 1, rxSeq: 0xffff });
    expect(decodeTcpHeader(syn, HEADER_V2)).toEqual({ sport: 1, dport: 62078, seq: 0, ack: 0, flags: TcpFlag.SYN, window: 131072 });
  });

  it('a device SYN|ACK with data offset, window field = bytes >> 8 and zero checksum/urgent', () => {
    const packet = encodeTcp({ sport: 62078, dport: 1, seq: 0, ack: 1, flags: TcpFlag.SYN | TcpFlag.ACK, window: 131072 }, Buffer.alloc(0), { txSeq: 0, rxSeq: 1 });
    expect(packet).toEqual(hex('00000006 00000024 feedface 0000 0001  f27e 0001 00000000 00000001 50 12 0200 0000 0000'));
  });

  it('v1 TCP with payload', () => {
    const packet = encodeTcp({ sport: 7, dport: 3, seq: 0x01020304, ack: 0xa0b0c0d0, flags: TcpFlag.ACK, window: 0x100 * 0x1234 }, Buffer.from('hi'));
    expect(packet).toEqual(hex('00000006 0000001e  0007 0003 01020304 a0b0c0d0 50 10 1234 0000 0000 6869'));
  });

  it('CONTROL: type byte then text', () => {
    expect(encodeControl(7, 'ok', { txSeq: 5, rxSeq: 6 })).toEqual(hex('00000001 00000013 feedface 0005 0006 07 6f6b'));
    expect(encodeControl(3, 'x')).toEqual(hex('00000001 0000000a 03 78'));
  });

  it('window is truncated to whole 256-byte units and clamped to the 16-bit field', () => {
    const tcp = (window: number): number => encodeTcp({ sport: 0, dport: 0, seq: 0, ack: 0, flags: 0, window }, Buffer.alloc(0)).readUInt16BE(HEADER_V1 + 14);
    expect(tcp(255)).toBe(0);
    expect(tcp(511)).toBe(1);
    expect(tcp(0x1000000)).toBe(0xffff);
  });

  it('decoders return undefined (never throw) on short input', () => {
    expect(decodeMuxHeader(Buffer.alloc(7), HEADER_V1)).toBeUndefined();
    expect(decodeMuxHeader(Buffer.alloc(15), HEADER_V2)).toBeUndefined();
    expect(decodeTcpHeader(Buffer.alloc(HEADER_V2 + TCP_HEADER - 1), HEADER_V2)).toBeUndefined();
    expect(decodeVersionBody(Buffer.alloc(19), HEADER_V1)).toBeUndefined();
    expect(peekLength(Buffer.alloc(7))).toBeUndefined();
    expect(peekLength(hex('00000000 00000014'))).toBe(20);
  });

  it('names flags', () => {
    expect(flagNames(0x12)).toBe('SYN|ACK');
    expect(flagNames(0)).toBe('none');
  });
});

describe('codec properties', () => {
  const tcpArb = fc.record({
    sport: fc.integer({ min: 0, max: 0xffff }),
    dport: fc.integer({ min: 0, max: 0xffff }),
    seq: fc.integer({ min: 0, max: 0xffffffff }),
    ack: fc.integer({ min: 0, max: 0xffffffff }),
    flags: fc.integer({ min: 0, max: 0xff }),
    window: fc.integer({ min: 0, max: 0xffff }).map((field) => field * 256),
  });
  const seqArb = fc.option(fc.record({ txSeq: fc.integer({ min: 0, max: 0xffff }), rxSeq: fc.integer({ min: 0, max: 0xffff }) }), { nil: undefined });

  it('TCP packets round-trip through encode/decode in both header versions', () => {
    fc.assert(
      fc.property(tcpArb, fc.uint8Array({ maxLength: 300 }), seqArb, (tcp, payload, seq) => {
        const packet = encodeTcp(tcp, Buffer.from(payload), seq);
        const headerSize = seq === undefined ? HEADER_V1 : HEADER_V2;
        const header = decodeMuxHeader(packet, headerSize);
        expect(header).toEqual({ protocol: Protocol.Tcp, length: packet.length, headerSize, magic: seq === undefined ? 0 : MUX_MAGIC, txSeq: seq?.txSeq ?? 0, rxSeq: seq?.rxSeq ?? 0 });
        expect(decodeTcpHeader(packet, headerSize)).toEqual(tcp);
        expect(packet.subarray(headerSize + TCP_HEADER)).toEqual(Buffer.from(payload));
        expect(peekLength(packet)).toBe(packet.length);
      }),
    );
  });

  it('generic packets keep protocol, length and body', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.uint8Array({ maxLength: 100 }), seqArb, (protocol, body, seq) => {
        const packet = encodeMux(protocol, Buffer.from(body), seq);
        const header = decodeMuxHeader(packet, seq === undefined ? HEADER_V1 : HEADER_V2);
        expect(header?.protocol).toBe(protocol);
        expect(header?.length).toBe(packet.length);
        expect(packet.subarray(header?.headerSize)).toEqual(Buffer.from(body));
      }),
    );
  });
});
