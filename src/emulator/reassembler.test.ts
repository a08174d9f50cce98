import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TcpFlag, encodeSetup, encodeTcp, encodeVersion } from './codec.js';
import { Reassembler } from './reassembler.js';

function harness(maxPacket?: number): { r: Reassembler; packets: Buffer[]; garbage: string[] } {
  const packets: Buffer[] = [];
  const garbage: string[] = [];
  const r = new Reassembler(
    {
      onPacket: (p) => packets.push(Buffer.from(p)),
      onGarbage: (reason) => garbage.push(reason),
    },
    maxPacket,
  );
  return { r, packets, garbage };
}

const stream = [
  encodeVersion({ major: 2, minor: 0, padding: 0 }),
  encodeSetup({ txSeq: 0, rxSeq: 0xffff }),
  encodeTcp({ sport: 1, dport: 7, seq: 1, ack: 1, flags: TcpFlag.ACK, window: 131072 }, Buffer.from('payload bytes'), { txSeq: 1, rxSeq: 0 }),
];
const joined = Buffer.concat(stream);

describe('Reassembler', () => {
  it('emits a whole-packet transfer as a view without copying', () => {
    const seen: Buffer[] = [];
    const r = new Reassembler({ onPacket: (p) => seen.push(p), onGarbage: () => undefined });
    const packet = stream[2]!;
    r.push(packet);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.buffer).toBe(packet.buffer);
  });

  it('splits a transfer holding several packets', () => {
    const { r, packets } = harness();
    r.push(joined);
    expect(packets).toEqual(stream);
    expect(r.pendingBytes).toBe(0);
  });

  it('reassembles the stream split at every byte offset (one split)', () => {
    for (let at = 0; at <= joined.length; at++) {
      const { r, packets, garbage } = harness();
      r.push(joined.subarray(0, at));
      r.push(joined.subarray(at));
      expect(packets, `split at ${at}`).toEqual(stream);
      expect(garbage).toEqual([]);
    }
  });

  it('reassembles the stream fed one byte at a time', () => {
    const { r, packets } = harness();
    for (let i = 0; i < joined.length; i++) r.push(joined.subarray(i, i + 1));
    expect(packets).toEqual(stream);
  });

  it('reassembles a 49 KiB OUT packet arriving as 16 KiB transfers (libusb)', () => {
    const payload = Buffer.alloc(49152 - 36, 0xab);
    const big = encodeTcp({ sport: 1, dport: 9, seq: 1, ack: 1, flags: TcpFlag.ACK, window: 131072 }, payload, { txSeq: 9, rxSeq: 0 });
    const { r, packets } = harness();
    for (let at = 0; at < big.length; at += 16384) {
      r.push(big.subarray(at, at + 16384));
      if (at + 16384 < big.length) expect(packets).toHaveLength(0);
    }
    expect(packets).toEqual([big]);
  });

  it('ignores zero-length transfers, also mid-packet', () => {
    const { r, packets } = harness();
    r.push(Buffer.alloc(0));
    r.push(joined.subarray(0, 5));
    r.push(Buffer.alloc(0));
    r.push(joined.subarray(5));
    expect(packets).toEqual(stream);
  });

  it('counts an impossible length field as garbage and drops the buffered bytes', () => {
    const { r, packets, garbage } = harness();
    r.push(Buffer.from('0000000600000004aaaa', 'hex'));
    expect(garbage).toHaveLength(1);
    r.push(Buffer.from('00000006', 'hex'));
    r.push(Buffer.from('00100000', 'hex')); // length 0x100000 > 65536, only known once 8 bytes are in
    expect(garbage).toHaveLength(2);
    expect(r.pendingBytes).toBe(0);
    r.push(stream[0]!);
    expect(packets).toEqual([stream[0]]);
  });

  it('property: any chunking of any packet sequence yields the same packets', () => {
    const packetArb = fc
      .record({ body: fc.uint8Array({ maxLength: 200 }), v2: fc.boolean() })
      .map(({ body, v2 }) => encodeTcp({ sport: 1, dport: 2, seq: 3, ack: 4, flags: TcpFlag.ACK, window: 512 }, Buffer.from(body), v2 ? { txSeq: 1, rxSeq: 2 } : undefined));
    fc.assert(
      fc.property(fc.array(packetArb, { minLength: 1, maxLength: 8 }), fc.array(fc.integer({ min: 0, max: 2000 }), { maxLength: 10 }), (packets, cuts) => {
        const all = Buffer.concat(packets);
        const offsets = [...new Set(cuts.map((c) => c % (all.length + 1)))].sort((a, b) => a - b);
        const { r, packets: out } = harness();
        let start = 0;
        for (const end of [...offsets, all.length]) {
          r.push(all.subarray(start, end));
          start = end;
        }
        expect(out).toEqual(packets);
      }),
    );
  });
});
