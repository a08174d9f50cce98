import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fromHex, hex, refDecodeHeader, refDecodeTcp, refEncodePacket, refTcpBody, refVersionBody } from '../../test/support/reference-codec.js';
import { MUX_HEADER_V1, MUX_HEADER_V2, Protocol, TcpFlag, TX_WINDOW } from './constants.js';
import {
  decodeControlBody,
  decodeMuxHeader,
  decodeTcpHeader,
  decodeVersionBody,
  encodeSetupPacket,
  encodeTcpPacket,
  encodeVersionPacket,
  formatTcpFlags,
  outCopyStats,
} from './wire.js';
import type { MuxHeaderSize, TcpHeader } from './wire.js';

const VERSION_HEX = '00000000 00000014 00000002 00000000 00000000';
const SETUP_HEX = '00000002 00000011 FEEDFACE 0000 FFFF 07';
// From a real capture of usbmuxd: SYN to lockdownd (62078) from sport 1, tx_seq 1, rx_seq 0xffff.
const SYN_HEX = '0000000600000024feedface0001ffff 0001f27e 00000000 00000000 5002020000000000';

describe('golden fixtures', () => {
  it('encodes VERSION with the v1 header, major 2', () => {
    expect(encodeVersionPacket(2, 0).toString('hex')).toBe(fromHex(VERSION_HEX).toString('hex'));
  });

  it('encodes SETUP with tx_seq 0, rx_seq 0xFFFF and body 0x07', () => {
    expect(encodeSetupPacket(0, 0xffff).toString('hex')).toBe(fromHex(SETUP_HEX).toString('hex'));
  });

  it('encodes the captured SYN byte for byte', () => {
    const packet = encodeTcpPacket(
      { headerSize: MUX_HEADER_V2, txSeq: 1, rxSeq: 0xffff },
      { sport: 1, dport: 62078, seq: 0, ack: 0, flags: TcpFlag.SYN, window: TX_WINDOW },
      undefined,
    );
    expect(packet.toString('hex')).toBe(fromHex(SYN_HEX).toString('hex'));
  });

  it('decodes the captured SYN', () => {
    const packet = fromHex(SYN_HEX);
    expect(decodeMuxHeader(packet, MUX_HEADER_V2)).toEqual({ protocol: 6, length: 36, magic: 0xfeedface, txSeq: 1, rxSeq: 0xffff });
    expect(decodeTcpHeader(packet, MUX_HEADER_V2)).toEqual({ sport: 1, dport: 62078, seq: 0, ack: 0, flags: TcpFlag.SYN, window: 131072 });
  });

  it('decodes a VERSION reply (v1 header) and refuses a short one', () => {
    const reply = fromHex('00000000 00000014 00000002 00000001 00000000');
    expect(decodeMuxHeader(reply, MUX_HEADER_V1)).toEqual({ protocol: Protocol.VERSION, length: 20, magic: 0, txSeq: 0, rxSeq: 0 });
    expect(decodeVersionBody(reply, MUX_HEADER_V1)).toEqual({ major: 2, minor: 1 });
    expect(decodeVersionBody(reply.subarray(0, 19), MUX_HEADER_V1)).toBeUndefined();
  });

  it('encodes a v1 TCP data packet (ACK, payload "hi", window field 512)', () => {
    const packet = encodeTcpPacket(
      { headerSize: MUX_HEADER_V1, txSeq: 7, rxSeq: 9 },
      { sport: 2, dport: 7, seq: 1, ack: 0x01020304, flags: TcpFlag.ACK, window: TX_WINDOW },
      Buffer.from('hi'),
    );
    expect(packet.toString('hex')).toBe(fromHex('00000006 0000001e 0002 0007 00000001 01020304 50 10 0200 0000 0000 6869').toString('hex'));
  });

  it('packs several payload views into one segment', () => {
    const packet = encodeTcpPacket(
      { headerSize: MUX_HEADER_V2, txSeq: 2, rxSeq: 3 },
      { sport: 5, dport: 9, seq: 1, ack: 1, flags: TcpFlag.ACK, window: 256 },
      [Buffer.from('ab'), Buffer.from('c'), Buffer.from('de')],
    );
    expect(packet.toString('hex')).toBe(
      fromHex('00000006 00000029 feedface 0002 0003 0005 0009 00000001 00000001 50 10 0001 0000 0000 6162636465').toString('hex'),
    );
  });

  it('decodes a v2 CONTROL packet body after the 16-byte header, trailing NULs cut', () => {
    const packet = fromHex('00000001 00000017 feedface 0000 0000 07 68656c6c6f 00');
    expect(decodeControlBody(packet, MUX_HEADER_V2)).toEqual({ type: 7, message: 'hello' });
    expect(decodeControlBody(packet.subarray(0, 16), MUX_HEADER_V2)).toBeUndefined();
  });

  it('decodes an RST from the device with a zero window; refuses a short TCP header', () => {
    const packet = fromHex('00000006 00000024 feedface 0005 0001 f27e 0001 00000000 00000001 50 14 0000 0000 0000');
    expect(decodeTcpHeader(packet, MUX_HEADER_V2)).toEqual({ sport: 62078, dport: 1, seq: 0, ack: 1, flags: 0x14, window: 0 });
    expect(decodeTcpHeader(packet.subarray(0, 35), MUX_HEADER_V2)).toBeUndefined();
  });

  it('names flags for logs', () => {
    expect(formatTcpFlags(0x12)).toBe('SYN|ACK');
    expect(formatTcpFlags(0x3f)).toBe('FIN|SYN|RST|PSH|ACK|URG');
    expect(formatTcpFlags(0)).toBe('-');
  });

  it('counts exactly one copy per data packet and none for bare segments', () => {
    const before = { ...outCopyStats };
    encodeTcpPacket({ headerSize: MUX_HEADER_V1, txSeq: 0, rxSeq: 0 }, { sport: 1, dport: 2, seq: 0, ack: 0, flags: TcpFlag.ACK, window: 0 }, undefined);
    expect(outCopyStats).toEqual(before);
    encodeTcpPacket({ headerSize: MUX_HEADER_V1, txSeq: 0, rxSeq: 0 }, { sport: 1, dport: 2, seq: 0, ack: 0, flags: TcpFlag.ACK, window: 0 }, Buffer.alloc(100));
    expect(outCopyStats.copies).toBe(before.copies + 1);
    expect(outCopyStats.bytes).toBe(before.bytes + 100);
  });
});

const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const tcpArb: fc.Arbitrary<TcpHeader> = fc.record({
  sport: u16,
  dport: u16,
  seq: u32,
  ack: u32,
  flags: fc.integer({ min: 0, max: 0xff }),
  window: u16.map((field) => field * 256),
});
const versionArb = fc.constantFrom<1 | 2>(1, 2);

describe('properties: wire.ts agrees with the DataView reference codec', () => {
  it('TCP packets: encode with wire, decode with the reference, and the reverse', () => {
    fc.assert(
      fc.property(versionArb, u16, u16, tcpArb, fc.uint8Array({ maxLength: 300 }), (version, txSeq, rxSeq, tcp, payload) => {
        const headerSize: MuxHeaderSize = version === 2 ? MUX_HEADER_V2 : MUX_HEADER_V1;
        const ours = encodeTcpPacket({ headerSize, txSeq, rxSeq }, tcp, Buffer.from(payload));
        const theirs = refEncodePacket(version, Protocol.TCP, refTcpBody(tcp, payload), txSeq, rxSeq);
        expect(hex(ours)).toBe(hex(theirs));
        const header = refDecodeHeader(version, ours);
        expect(header.length).toBe(ours.length);
        if (version === 2) expect([header.txSeq, header.rxSeq]).toEqual([txSeq, rxSeq]);
        const decoded = refDecodeTcp(ours.subarray(headerSize));
        expect(decoded.tcp).toEqual(tcp);
        expect(hex(decoded.payload)).toBe(hex(payload));
        // and our decoder reads the reference's bytes back to the same fields
        const back = Buffer.from(theirs);
        expect(decodeTcpHeader(back, headerSize)).toEqual(tcp);
        expect(decodeMuxHeader(back, headerSize).length).toBe(theirs.length);
      }),
    );
  });

  it('VERSION round-trips through both codecs', () => {
    fc.assert(
      fc.property(u32, u32, (major, minor) => {
        const ours = encodeVersionPacket(major, minor);
        expect(hex(ours)).toBe(hex(refEncodePacket(1, Protocol.VERSION, refVersionBody(major, minor))));
        expect(decodeVersionBody(ours, MUX_HEADER_V1)).toEqual({ major, minor });
      }),
    );
  });

  it('SETUP matches the reference for every seq pair', () => {
    fc.assert(
      fc.property(u16, u16, (txSeq, rxSeq) => {
        const ours = encodeSetupPacket(txSeq, rxSeq);
        expect(hex(ours)).toBe(hex(refEncodePacket(2, Protocol.SETUP, Uint8Array.of(7), txSeq, rxSeq)));
      }),
    );
  });

  it('split payload lists encode like one contiguous payload', () => {
    fc.assert(
      fc.property(tcpArb, fc.array(fc.uint8Array({ maxLength: 50 }), { maxLength: 6 }), (tcp, parts) => {
        const seq = { headerSize: MUX_HEADER_V2, txSeq: 1, rxSeq: 2 } as const;
        const joined = encodeTcpPacket(seq, tcp, Buffer.concat(parts));
        const listed = encodeTcpPacket(seq, tcp, parts.map((p) => Buffer.from(p)));
        expect(hex(listed)).toBe(hex(joined));
      }),
    );
  });
});
