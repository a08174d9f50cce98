import { Writable } from 'node:stream';
import fc from 'fast-check';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { fromHex } from '../../test/support/reference-codec.js';
import { silentLogger } from '../log.js';
import { DEV_MRU, MUX_HEADER_V1, MUX_HEADER_V2, SHORT_TRANSFER_QUANTUM, TcpFlag, USB_MRU } from './constants.js';
import { PacketDecoder } from './packet-decoder.js';
import { encodeTcpPacket, encodeVersionPacket } from './wire.js';

function collector(): { decoder: PacketDecoder; packets: string[] } {
  const packets: string[] = [];
  const decoder = new PacketDecoder({ onPacket: (p) => packets.push(p.toString('hex')) }, silentLogger());
  return { decoder, packets };
}

function tcp(len: number, fill: number, txSeq = 1): Buffer {
  return encodeTcpPacket(
    { headerSize: MUX_HEADER_V2, txSeq, rxSeq: 0 },
    { sport: 62078, dport: 1, seq: 1, ack: 1, flags: TcpFlag.ACK, window: 131072 },
    Buffer.alloc(len, fill),
  );
}

const SYN = fromHex('0000000600000024feedface0001ffff 0001f27e 00000000 00000000 5002020000000000');

describe('PacketDecoder short-transfer rule (USB)', () => {
  function usbCollector(): { decoder: PacketDecoder; packets: Buffer[] } {
    const packets: Buffer[] = [];
    const decoder = new PacketDecoder({ onPacket: (p) => packets.push(p) }, silentLogger(), SHORT_TRANSFER_QUANTUM);
    decoder.setHeaderSize(MUX_HEADER_V2);
    return { decoder, packets };
  }

  it('a packet whose length field claims more than its short transfer holds is dropped, not joined with the next transfer', () => {
    const { decoder, packets } = usbCollector();
    const liar = tcp(100, 0xaa);
    liar.writeUInt32BE(liar.length + 100, 4); // the length field lies by 100 bytes
    decoder.push(liar);
    const next = tcp(50, 0xbb);
    decoder.push(next);
    expect(packets).toEqual([next]);
    expect(decoder.stats.truncated).toBe(1);
    expect(decoder.pendingBytes).toBe(0);
  });

  it('still joins a large packet that spans full USB_MRU transfers', () => {
    const { decoder, packets } = usbCollector();
    const big = tcp(40000, 7);
    decoder.push(big.subarray(0, USB_MRU));
    decoder.push(big.subarray(USB_MRU, 2 * USB_MRU));
    decoder.push(big.subarray(2 * USB_MRU));
    expect(packets).toHaveLength(1);
    expect(packets[0]!.equals(big)).toBe(true);
    expect(decoder.stats.truncated).toBe(0);
  });

  it('with the rule off (quantum 1) the same lie waits for the next transfer', () => {
    const { decoder, packets } = collector();
    decoder.setHeaderSize(MUX_HEADER_V2);
    const liar = tcp(100, 0xaa);
    liar.writeUInt32BE(liar.length + 100, 4);
    decoder.push(liar);
    expect(packets).toEqual([]);
    expect(decoder.pendingBytes).toBe(liar.length);
  });
});

describe('PacketDecoder', () => {
  it('hands a transfer holding exactly one packet through as the same memory (no copy)', () => {
    const seen: Buffer[] = [];
    const decoder = new PacketDecoder({ onPacket: (p) => seen.push(p) }, silentLogger());
    decoder.setHeaderSize(MUX_HEADER_V2);
    const transfer = tcp(100, 1);
    decoder.push(transfer);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toBe(transfer);
    expect(decoder.stats.copiedBytes).toBe(0);
  });

  it('reassembles the VERSION reply split at every byte offset', () => {
    const packet = encodeVersionPacket(2, 0);
    for (let at = 0; at <= packet.length; at++) {
      const { decoder, packets } = collector();
      decoder.push(packet.subarray(0, at));
      decoder.push(packet.subarray(at));
      expect(packets, `split at ${at}`).toEqual([packet.toString('hex')]);
      expect(decoder.pendingBytes).toBe(0);
    }
  });

  it('reassembles two v2 packets in one stream split at every pair of offsets', () => {
    const stream = Buffer.concat([SYN, tcp(5, 0xab, 2)]);
    const expected = [SYN.toString('hex'), tcp(5, 0xab, 2).toString('hex')];
    for (let a = 0; a <= stream.length; a++) {
      for (let b = a; b <= stream.length; b++) {
        const { decoder, packets } = collector();
        decoder.setHeaderSize(MUX_HEADER_V2);
        decoder.push(stream.subarray(0, a));
        decoder.push(stream.subarray(a, b));
        decoder.push(stream.subarray(b));
        expect(packets, `split at ${a},${b}`).toEqual(expected);
      }
    }
  });

  it('joins a 64 KiB packet that arrives as 16 KiB transfers with one copy', () => {
    const big = tcp(DEV_MRU - 36, 0x5a);
    const { decoder, packets } = collector();
    decoder.setHeaderSize(MUX_HEADER_V2);
    for (let at = 0; at < big.length; at += 16384) decoder.push(big.subarray(at, at + 16384));
    expect(packets).toEqual([big.toString('hex')]);
    expect(decoder.stats).toMatchObject({ spanning: 1, copiedBytes: DEV_MRU, malformed: 0 });
  });

  it('ignores zero-length transfers', () => {
    const { decoder, packets } = collector();
    decoder.push(Buffer.alloc(0));
    decoder.push(encodeVersionPacket(1, 0));
    decoder.push(Buffer.alloc(0));
    expect(packets).toHaveLength(1);
  });

  it('counts transfers shared by several packets', () => {
    const { decoder, packets } = collector();
    decoder.setHeaderSize(MUX_HEADER_V2);
    decoder.push(Buffer.concat([SYN, SYN, SYN]));
    expect(packets).toHaveLength(3);
    expect(decoder.stats.sharedTransfers).toBe(1);
  });

  it('lets the header size change between two packets of one transfer', () => {
    const packets: Buffer[] = [];
    const decoder = new PacketDecoder(
      {
        onPacket: (p) => {
          packets.push(p);
          if (packets.length === 1) decoder.setHeaderSize(MUX_HEADER_V2);
        },
      },
      silentLogger(),
    );
    decoder.push(Buffer.concat([encodeVersionPacket(2, 0), SYN]));
    expect(packets.map((p) => p.length)).toEqual([20, 36]);
  });

  it.each([
    ['length below the header size', '00000006 00000004 0000'],
    ['length above DEV_MRU', '00000006 00010001 00000000'],
  ])('resyncs on %s: drops the rest of that transfer, keeps going with the next', (_name, bad) => {
    const { decoder, packets } = collector();
    decoder.push(Buffer.concat([fromHex(bad), encodeVersionPacket(2, 0)]));
    expect(packets).toEqual([]);
    expect(decoder.stats.malformed).toBe(1);
    expect(decoder.pendingBytes).toBe(0);
    decoder.push(encodeVersionPacket(2, 0));
    expect(packets).toHaveLength(1);
  });

  it('resyncs on a bad v2 magic', () => {
    const { decoder, packets } = collector();
    decoder.setHeaderSize(MUX_HEADER_V2);
    const bad = Buffer.from(SYN);
    bad.writeUInt32BE(0xdeadbeef, 8);
    decoder.push(bad);
    decoder.push(SYN);
    expect(packets).toEqual([SYN.toString('hex')]);
    expect(decoder.stats).toMatchObject({ malformed: 1, droppedBytes: 36 });
  });

  it('logs malformed packets at warn on the 1st, 2nd, 4th, 8th occurrence only (debug otherwise)', () => {
    const levels: number[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, cb) {
        levels.push((JSON.parse(chunk.toString()) as { level: number }).level);
        cb();
      },
    });
    const decoder = new PacketDecoder({ onPacket: () => undefined }, pino({ level: 'debug' }, stream));
    for (let i = 0; i < 9; i++) decoder.push(fromHex('00000006 00000004 0000'));
    expect(levels).toEqual([40, 40, 20, 40, 20, 20, 20, 40, 20]);
    expect(decoder.stats.malformed).toBe(9);
  });

  it('property: any packets, cut into any transfers, come out whole and in order', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 2000 }), { minLength: 1, maxLength: 8 }),
        fc.array(fc.integer({ min: 0, max: 3000 }), { maxLength: 20 }),
        (sizes, cuts) => {
          const packets = sizes.map((size, i) => tcp(size, i & 0xff, i));
          const stream = Buffer.concat(packets);
          const { decoder, packets: out } = collector();
          decoder.setHeaderSize(MUX_HEADER_V2);
          let at = 0;
          for (const cut of cuts) {
            const end = Math.min(stream.length, at + cut);
            decoder.push(stream.subarray(at, end));
            at = end;
          }
          decoder.push(stream.subarray(at));
          expect(out).toEqual(packets.map((p) => p.toString('hex')));
        },
      ),
    );
  });

  it('property: random garbage never throws and never yields a packet of an impossible size', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 10 }), fc.boolean(), (chunks, v2) => {
        const seen: Buffer[] = [];
        const decoder = new PacketDecoder({ onPacket: (p) => seen.push(p) }, silentLogger());
        if (v2) decoder.setHeaderSize(MUX_HEADER_V2);
        for (const chunk of chunks) decoder.push(Buffer.from(chunk));
        for (const p of seen) {
          expect(p.length).toBeGreaterThanOrEqual(v2 ? MUX_HEADER_V2 : MUX_HEADER_V1);
          expect(p.length).toBe(p.readUInt32BE(4));
        }
      }),
    );
  });
});
