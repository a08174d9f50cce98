import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ByteQueue } from './byte-queue.js';

/**
 * A chunk with an ArrayBuffer of its own. Small Buffer.from/allocUnsafe results share Node's pool,
 * so `.buffer` identity only tells a view from a copy when every pushed chunk owns its memory.
 */
function own(bytes: Uint8Array | string): Buffer {
  const src = typeof bytes === 'string' ? Buffer.from(bytes, 'hex') : bytes;
  return Buffer.from(Uint8Array.from(src).buffer);
}

function queueOf(...hex: string[]): { q: ByteQueue; chunks: Buffer[] } {
  const q = new ByteQueue();
  const chunks = hex.map((h) => own(h));
  for (const c of chunks) q.push(c);
  return { q, chunks };
}

/** True when `b` shares memory with one of `chunks` (a view), false when it is a copy. */
function isViewOf(b: Buffer, chunks: readonly Buffer[]): boolean {
  return chunks.some((c) => c.buffer === b.buffer);
}

function hexOf(b: Buffer | Buffer[]): string | string[] {
  return Array.isArray(b) ? b.map((p) => p.toString('hex')) : b.toString('hex');
}

describe('ByteQueue known answers', () => {
  it('push keeps non-empty chunks and counts their bytes', () => {
    const { q } = queueOf('0102', '', '030405');
    expect(q.length).toBe(5);
    expect(hexOf(q.takeAll())).toEqual(['0102', '030405']);
    expect(q.length).toBe(0);
  });

  it('take returns views of the first chunk, and the chunk itself when it is exactly n long', () => {
    const { q, chunks } = queueOf('00010203', '0405');
    const a = q.take(2);
    expect(a.toString('hex')).toBe('0001');
    expect(a.buffer).toBe(chunks[0]!.buffer);
    expect(a.byteOffset).toBe(chunks[0]!.byteOffset);
    const b = q.take(2);
    expect(b.toString('hex')).toBe('0203');
    expect(b.buffer).toBe(chunks[0]!.buffer);
    expect(b.byteOffset).toBe(chunks[0]!.byteOffset + 2);
    expect(q.take(2)).toBe(chunks[1]);
    expect(q.length).toBe(0);
  });

  it('take copies once when the bytes span chunks', () => {
    const { q, chunks } = queueOf('0102', '0304', '0506');
    expect(q.contiguous(3)).toBe(false);
    const a = q.take(3);
    expect(a.toString('hex')).toBe('010203');
    expect(isViewOf(a, chunks)).toBe(false);
    expect(q.length).toBe(3);
    const b = q.take(3);
    expect(b.toString('hex')).toBe('040506');
    expect(isViewOf(b, chunks)).toBe(false);
    expect(q.length).toBe(0);
  });

  it('take(0) is an empty buffer, with or without bytes buffered', () => {
    const empty = new ByteQueue();
    expect(empty.take(0).length).toBe(0);
    const { q } = queueOf('ab');
    expect(q.take(0).length).toBe(0);
    expect(q.length).toBe(1);
    expect(q.take(1).toString('hex')).toBe('ab');
  });

  it('takeViews returns one view when one chunk holds the bytes, else the views that make them up', () => {
    const { q, chunks } = queueOf('0102', '030405', '06');
    const parts = q.takeViews(4);
    expect(Array.isArray(parts)).toBe(true);
    expect(hexOf(parts)).toEqual(['0102', '0304']);
    if (!Array.isArray(parts)) throw new Error('expected parts');
    expect(parts[0]).toBe(chunks[0]);
    expect(parts[1]!.buffer).toBe(chunks[1]!.buffer);
    const one = q.takeViews(1);
    expect(Buffer.isBuffer(one)).toBe(true);
    expect(hexOf(one)).toBe('05');
    expect(q.takeViews(1)).toBe(chunks[2]);
    expect(hexOf(q.takeViews(0))).toBe('');
    expect(q.length).toBe(0);
  });

  it('takeViews across three chunks keeps every whole chunk as is', () => {
    const { q, chunks } = queueOf('aa', 'bbcc', 'dd', 'eeff');
    const parts = q.takeViews(5);
    expect(hexOf(parts)).toEqual(['aa', 'bbcc', 'dd', 'ee']);
    if (!Array.isArray(parts)) throw new Error('expected parts');
    expect(parts.slice(0, 3)).toEqual(chunks.slice(0, 3));
    expect(parts[0]).toBe(chunks[0]);
    expect(parts[2]).toBe(chunks[2]);
    expect(hexOf(q.takeAll())).toEqual(['ff']);
  });

  it('takeAll hands over every chunk, the first possibly a view past taken bytes, and empties the queue', () => {
    const { q, chunks } = queueOf('010203', '0405');
    q.take(1);
    const all = q.takeAll();
    expect(hexOf(all)).toEqual(['0203', '0405']);
    expect(all[1]).toBe(chunks[1]);
    expect(q.length).toBe(0);
    expect(q.takeAll()).toEqual([]);
    q.push(own('06'));
    expect(all).toHaveLength(2);
    expect(hexOf(q.take(1))).toBe('06');
  });

  it('peekUInt32BE reads within the first chunk and across chunks without removing anything', () => {
    const { q } = queueOf('deadbeefcafe');
    expect(q.peekUInt32BE(0)).toBe(0xdeadbeef);
    expect(q.peekUInt32BE(2)).toBe(0xbeefcafe);
    const split = queueOf('00', '00', '01', '02030405').q;
    expect(split.peekUInt32BE(0)).toBe(0x00000102);
    expect(split.peekUInt32BE(1)).toBe(0x00010203);
    expect(split.peekUInt32BE(3)).toBe(0x02030405);
    expect(split.length).toBe(7);
    const high = queueOf('de', 'adbe', 'ef').q;
    expect(high.peekUInt32BE(0)).toBe(0xdeadbeef);
    expect(hexOf(high.take(4))).toBe('deadbeef');
  });

  it('contiguous says whether the first chunk holds the first n bytes', () => {
    const empty = new ByteQueue();
    expect(empty.contiguous(0)).toBe(true);
    expect(empty.contiguous(1)).toBe(false);
    const { q } = queueOf('010203', '04');
    expect(q.contiguous(0)).toBe(true);
    expect(q.contiguous(3)).toBe(true);
    expect(q.contiguous(4)).toBe(false);
    expect(q.contiguous(5)).toBe(false);
  });

  it('clear drops everything', () => {
    const { q } = queueOf('0102', '03');
    q.clear();
    expect(q.length).toBe(0);
    expect(q.takeAll()).toEqual([]);
    q.push(own('04'));
    expect(hexOf(q.take(1))).toBe('04');
  });
});

describe('ByteQueue errors', () => {
  it('take and takeViews beyond length throw RangeError and leave the queue as it was', () => {
    const { q } = queueOf('0102', '03');
    expect(() => q.take(4)).toThrow(RangeError);
    expect(() => q.takeViews(4)).toThrow(RangeError);
    expect(() => new ByteQueue().take(1)).toThrow(RangeError);
    expect(() => new ByteQueue().takeViews(1)).toThrow(RangeError);
    expect(q.length).toBe(3);
    expect(hexOf(q.take(3))).toBe('010203');
  });

  it('take rejects negative, fractional and NaN sizes', () => {
    const { q } = queueOf('01020304');
    for (const n of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => q.take(n)).toThrow(RangeError);
      expect(() => q.takeViews(n)).toThrow(RangeError);
    }
    expect(q.length).toBe(4);
  });

  it('peekUInt32BE beyond the buffered bytes throws RangeError', () => {
    const { q } = queueOf('0102', '0304', '05');
    expect(q.peekUInt32BE(1)).toBe(0x02030405);
    expect(() => q.peekUInt32BE(2)).toThrow(RangeError);
    expect(() => q.peekUInt32BE(-1)).toThrow(RangeError);
    expect(() => q.peekUInt32BE(0.5)).toThrow(RangeError);
    expect(() => new ByteQueue().peekUInt32BE(0)).toThrow(RangeError);
    expect(() => queueOf('010203').q.peekUInt32BE(0)).toThrow(RangeError);
    expect(q.length).toBe(5);
  });
});

describe('ByteQueue split at every byte offset', () => {
  const input = Buffer.from('000102030405060708090a0b0c0d0e0f10111213', 'hex');
  const sizes = [1, 2, 3, 4, 5, 7, input.length];

  function drain(cuts: readonly number[], size: number): void {
    const bounds = [0, ...cuts, input.length];
    const chunks: Buffer[] = [];
    for (let i = 0; i + 1 < bounds.length; i++) chunks.push(own(input.subarray(bounds[i], bounds[i + 1])));
    const q = new ByteQueue();
    for (const c of chunks) q.push(c);
    expect(q.length).toBe(input.length);
    const out: Buffer[] = [];
    let taken = 0;
    while (q.length > 0) {
      const peeked: number[] = [];
      const expected: number[] = [];
      for (let at = 0; at + 4 <= q.length; at++) {
        peeked.push(q.peekUInt32BE(at));
        expected.push(input.readUInt32BE(taken + at));
      }
      expect(peeked).toEqual(expected);
      const n = Math.min(size, q.length);
      const contiguous = q.contiguous(n);
      const part = q.take(n);
      expect(part.length).toBe(n);
      expect(isViewOf(part, chunks)).toBe(contiguous);
      out.push(part);
      taken += n;
      expect(q.length).toBe(input.length - taken);
    }
    expect(Buffer.concat(out).equals(input)).toBe(true);
  }

  it('one cut: every offset, every take size', () => {
    for (let i = 0; i <= input.length; i++) for (const size of sizes) drain([i], size);
  });

  it('two cuts: every pair of offsets, every take size', () => {
    for (let i = 0; i <= input.length; i++) {
      for (let j = i; j <= input.length; j++) for (const size of sizes) drain([i, j], size);
    }
  });

  it('takeViews at every pair of offsets never copies and rebuilds the input', () => {
    for (let i = 0; i <= input.length; i++) {
      for (let j = i; j <= input.length; j++) {
        for (const size of sizes) {
          const chunks = [input.subarray(0, i), input.subarray(i, j), input.subarray(j)].map((c) => own(c));
          const q = new ByteQueue();
          for (const c of chunks) q.push(c);
          const out: Buffer[] = [];
          while (q.length > 0) {
            const n = Math.min(size, q.length);
            const contiguous = q.contiguous(n);
            const got = q.takeViews(n);
            expect(Array.isArray(got)).toBe(!contiguous);
            const parts = Array.isArray(got) ? got : [got];
            for (const p of parts) {
              expect(p.length).toBeGreaterThan(0);
              expect(isViewOf(p, chunks)).toBe(true);
            }
            expect(Buffer.concat(parts).length).toBe(n);
            out.push(...parts);
          }
          expect(Buffer.concat(out).equals(input)).toBe(true);
        }
      }
    }
  });
});

type Op =
  | { kind: 'push'; bytes: Uint8Array }
  | { kind: 'take'; n: number }
  | { kind: 'takeViews'; n: number }
  | { kind: 'peek'; offset: number }
  | { kind: 'takeOver'; extra: number }
  | { kind: 'takeAll' }
  | { kind: 'clear' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('push' as const), bytes: fc.uint8Array({ maxLength: 40 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('take' as const), n: fc.nat(200) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('takeViews' as const), n: fc.nat(200) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('peek' as const), offset: fc.nat(200) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('takeOver' as const), extra: fc.integer({ min: 1, max: 10 }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'takeAll' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'clear' as const }) },
);

describe('ByteQueue properties against a plain Buffer model', () => {
  it('take / takeViews / peek / takeAll / clear agree with Buffer.concat of what was pushed minus what was taken', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 8 }), fc.array(opArb, { maxLength: 40 }), (initial, ops) => {
        const q = new ByteQueue();
        const pushed: Buffer[] = [];
        let model = Buffer.alloc(0);
        const push = (bytes: Uint8Array): void => {
          const chunk = own(bytes);
          pushed.push(chunk);
          q.push(chunk);
          model = Buffer.concat([model, chunk]);
        };
        for (const bytes of initial) push(bytes);
        for (const op of ops) {
          switch (op.kind) {
            case 'push':
              push(op.bytes);
              break;
            case 'take': {
              const n = op.n % (model.length + 1);
              const contiguous = q.contiguous(n);
              const got = q.take(n);
              expect(got.equals(model.subarray(0, n))).toBe(true);
              if (n > 0) expect(isViewOf(got, pushed)).toBe(contiguous);
              model = model.subarray(n);
              break;
            }
            case 'takeViews': {
              const n = op.n % (model.length + 1);
              const contiguous = q.contiguous(n);
              const got = q.takeViews(n);
              expect(Array.isArray(got)).toBe(!contiguous);
              const parts = Array.isArray(got) ? got : [got];
              if (n > 0) for (const p of parts) expect(isViewOf(p, pushed)).toBe(true);
              expect(Buffer.concat(parts).equals(model.subarray(0, n))).toBe(true);
              model = model.subarray(n);
              break;
            }
            case 'peek':
              if (op.offset + 4 <= model.length) expect(q.peekUInt32BE(op.offset)).toBe(model.readUInt32BE(op.offset));
              else expect(() => q.peekUInt32BE(op.offset)).toThrow(RangeError);
              break;
            case 'takeOver':
              expect(() => q.take(model.length + op.extra)).toThrow(RangeError);
              expect(() => q.takeViews(model.length + op.extra)).toThrow(RangeError);
              break;
            case 'takeAll': {
              const all = q.takeAll();
              for (const c of all) expect(c.length).toBeGreaterThan(0);
              expect(Buffer.concat(all).equals(model)).toBe(true);
              model = Buffer.alloc(0);
              break;
            }
            case 'clear':
              q.clear();
              model = Buffer.alloc(0);
              break;
          }
          expect(q.length).toBe(model.length);
        }
        expect(Buffer.concat(q.takeAll()).equals(model)).toBe(true);
      }),
    );
  });

  it('a stream split into random chunks comes back whole through takes of random sizes', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 300 }),
        fc.array(fc.nat(300), { maxLength: 10 }),
        fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 10 }),
        (bytes, rawCuts, sizes) => {
          const input = Buffer.from(bytes);
          const cuts = rawCuts.map((c) => c % (input.length + 1)).sort((a, b) => a - b);
          const bounds = [0, ...cuts, input.length];
          const chunks: Buffer[] = [];
          for (let i = 0; i + 1 < bounds.length; i++) chunks.push(own(input.subarray(bounds[i], bounds[i + 1])));
          const q = new ByteQueue();
          for (const c of chunks) q.push(c);
          const out: Buffer[] = [];
          for (let i = 0; q.length > 0; i++) {
            const n = Math.min(sizes[i % sizes.length]!, q.length);
            const contiguous = q.contiguous(n);
            const part = q.take(n);
            expect(isViewOf(part, chunks)).toBe(contiguous);
            out.push(part);
          }
          expect(Buffer.concat(out).equals(input)).toBe(true);
        },
      ),
    );
  });
});
