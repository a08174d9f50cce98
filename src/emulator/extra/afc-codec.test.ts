import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AFC_HEADER, AfcOp, AfcPacketReader, decodeAfcHeader, encodeAfcPacket, encodeData, encodeKeyValues, encodeStatus, u64 } from './afc-codec.js';
import type { AfcHeader, AfcPacket, AfcPacketSink } from './afc-codec.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** go-ios's ReadDir of "/": the path among the fixed fields, not NUL-terminated; packet 1. */
const GO_IOS_READ_DIR = hex('434641364c504141 2900000000000000 2900000000000000 0100000000000000 0300000000000000 2f');
/** A FileWrite of "hi" to handle 1 as pymobiledevice3 and libimobiledevice send it: this = 48. */
const FILE_WRITE = hex('434641364c504141 3200000000000000 3000000000000000 0700000000000000 1000000000000000 0100000000000000 6869');

interface Collected {
  readonly packets: AfcPacket[];
  bad: string | undefined;
  readonly reader: AfcPacketReader;
}

function collector(admit: (h: AfcHeader, n: number) => boolean = () => false, small?: number): Collected {
  const packets: AfcPacket[] = [];
  const sink: AfcPacketSink = {
    admit,
    onPacket: (p) => packets.push(p),
    onBad: (reason) => {
      c.bad = reason;
    },
  };
  const c: Collected = { packets, bad: undefined, reader: new AfcPacketReader(sink, small) };
  return c;
}

describe('AFC packets: hex fixtures', () => {
  it("decodes go-ios's ReadDir header", () => {
    expect(decodeAfcHeader(GO_IOS_READ_DIR)).toEqual({ entireLength: 41, thisLength: 41, packetNum: 1n, operation: AfcOp.ReadDir });
  });

  it('encodes STATUS with the code among the fixed fields (this = entire = 48)', () => {
    expect(encodeStatus(1n, 8).toString('hex')).toBe('434641364c504141' + '3000000000000000' + '3000000000000000' + '0100000000000000' + '0100000000000000' + '0800000000000000');
  });

  it('encodes DATA with the bytes as data (this = 40) and FILE_OPEN_RES with the handle as a fixed field', () => {
    expect(encodeData(9n, Buffer.from('a\0')).toString('hex')).toBe('434641364c504141' + '2a00000000000000' + '2800000000000000' + '0900000000000000' + '0200000000000000' + '6100');
    expect(encodeAfcPacket(AfcOp.FileOpenResult, 2n, u64(5)).subarray(16, 24).readBigUInt64LE()).toBe(48n);
  });

  it('key/value lists are NUL-separated pairs', () => {
    expect(encodeKeyValues({ st_size: '3', st_ifmt: 'S_IFREG' }).toString('latin1')).toBe('st_size\u00003\u0000st_ifmt\u0000S_IFREG\u0000');
  });
});

describe('AFC packet reader', () => {
  const stream = Buffer.concat([GO_IOS_READ_DIR, FILE_WRITE, encodeAfcPacket(AfcOp.GetDeviceInfo, 8n, Buffer.alloc(0))]);

  it('reads the same packets whatever byte offset the stream is split at', () => {
    for (let at = 0; at <= stream.length; at++) {
      const c = collector();
      c.reader.push(stream.subarray(0, at));
      c.reader.push(stream.subarray(at));
      expect(c.bad, `split at ${at}`).toBeUndefined();
      expect(c.packets.map((p) => [p.header.operation, p.header.packetNum, p.body?.toString('hex')]), `split at ${at}`).toEqual([
        [AfcOp.ReadDir, 1n, '2f'],
        [AfcOp.FileWrite, 7n, '01000000000000006869'],
        [AfcOp.GetDeviceInfo, 8n, ''],
      ]);
    }
  });

  it('byte by byte', () => {
    const c = collector();
    for (const byte of stream) c.reader.push(Buffer.from([byte]));
    expect(c.packets).toHaveLength(3);
  });

  it('malformed headers stop the reader with a reason, once', () => {
    const cases: [string, Buffer][] = [
      ['bad magic', Buffer.concat([Buffer.from('CFA6LPAB'), GO_IOS_READ_DIR.subarray(8)])],
      ['this_length below the header', encodeWith({ thisLength: 39n })],
      ['entire below this', encodeWith({ entire: 40n, thisLength: 48n })],
      ['huge entire', encodeWith({ entire: 1n << 60n })],
      ['huge fixed part', encodeWith({ entire: 1n << 30n, thisLength: 1n << 30n })],
    ];
    for (const [name, bytes] of cases) {
      const c = collector();
      c.reader.push(Buffer.concat([bytes, GO_IOS_READ_DIR]));
      expect(c.bad, name).toBeDefined();
      expect(c.packets, name).toEqual([]);
      expect(c.reader.isStopped(), name).toBe(true);
    }
  });

  it('a large body the sink refuses is counted off, never held, then reported without a body', () => {
    const c = collector(() => false, 1024);
    const big = encodeAfcPacket(AfcOp.FileWrite, 3n, u64(1), Buffer.alloc(100_000, 0x61));
    for (let i = 0; i < big.length; i += 4096) {
      c.reader.push(big.subarray(i, i + 4096));
      expect(c.reader.heldBytes).toBeLessThanOrEqual(AFC_HEADER);
    }
    c.reader.push(GO_IOS_READ_DIR);
    expect(c.packets.map((p) => [p.header.packetNum, p.body === undefined])).toEqual([
      [3n, true],
      [1n, false],
    ]);
  });

  it('a large body the sink admits is buffered and delivered whole', () => {
    const seen: number[] = [];
    const c = collector((_h, n) => {
      seen.push(n);
      return true;
    }, 1024);
    const big = encodeAfcPacket(AfcOp.FileWrite, 3n, u64(1), Buffer.alloc(5000, 0x62));
    c.reader.push(big);
    expect(seen).toEqual([5008]);
    expect(c.packets[0]?.body?.length).toBe(5008);
  });

  it('property: any packets, any split points, decode to what was encoded', () => {
    const packet = fc.record({
      op: fc.integer({ min: 1, max: 0x30 }),
      num: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      fixed: fc.uint8Array({ maxLength: 40 }),
      data: fc.uint8Array({ maxLength: 300 }),
    });
    fc.assert(
      fc.property(fc.array(packet, { maxLength: 6 }), fc.array(fc.nat(), { maxLength: 8 }), (packets, cuts) => {
        const bytes = Buffer.concat(packets.map((p) => encodeAfcPacket(p.op, p.num, Buffer.from(p.fixed), Buffer.from(p.data))));
        const c = collector();
        const points = [...new Set(cuts.map((n) => n % (bytes.length + 1)))].sort((a, b) => a - b);
        let from = 0;
        for (const point of [...points, bytes.length]) {
          c.reader.push(bytes.subarray(from, point));
          from = point;
        }
        expect(c.bad).toBeUndefined();
        expect(c.packets.map((p) => [p.header.operation, p.header.packetNum, p.body?.toString('hex')])).toEqual(
          packets.map((p) => [p.op, p.num, Buffer.concat([Buffer.from(p.fixed), Buffer.from(p.data)]).toString('hex')]),
        );
      }),
      { numRuns: 200 },
    );
  });
});

/** A header with chosen lengths (no body bytes follow). */
function encodeWith(fields: { entire?: bigint; thisLength?: bigint }): Buffer {
  const out = Buffer.from(GO_IOS_READ_DIR.subarray(0, AFC_HEADER));
  if (fields.entire !== undefined) out.writeBigUInt64LE(fields.entire, 8);
  if (fields.thisLength !== undefined) out.writeBigUInt64LE(fields.thisLength, 16);
  return out;
}
