/**
 * Structure-aware fuzzing of the AFC service, which faces whatever a host sends: sequences of
 * well-framed requests with arbitrary opcodes, handles, sizes, modes and paths (".." included),
 * with header fields mutated now and then, fed in arbitrary pieces. Bodies over 4 KiB count as
 * large, so uploads go through admission and reservation as multi-MiB ones do. The service must never throw,
 * never hold more than its quota, and give every reserved byte back when the connection ends.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FakeServiceConnection } from '../fake-connection.js';
import { AFC_HEADER, AfcOp, encodeAfcPacket, u64 } from './afc-codec.js';
import { AfcFileSystem } from './afc-fs.js';
import { createAfcService } from './afc-service.js';

const CAPACITY = 256 * 1024;

const path = fc
  .array(fc.constantFrom('a', 'b', 'DCIM', '..', '.', '', 'Downloads', 'x'.repeat(300), 'é', '\u0000'), { maxLength: 5 })
  .map((parts) => parts.join('/'));
const cstr = path.map((p) => Buffer.from(`${p}\0`, 'utf8'));
const handle = fc.oneof(fc.bigInt({ min: 0n, max: 70n }), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })).map((h) => u64(h));
const size = fc.oneof(fc.integer({ min: 0, max: 70_000 }), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })).map((n) => u64(n));

const request = fc.oneof(
  fc.tuple(fc.constantFrom(AfcOp.ReadDir, AfcOp.GetFileInfo, AfcOp.MakeDir, AfcOp.RemovePath, AfcOp.RemovePathAndContents), cstr).map(([op, p]) => encodeAfcPacket(op, 1n, p)),
  fc.tuple(cstr, cstr).map(([a, b]) => encodeAfcPacket(AfcOp.RenamePath, 2n, Buffer.concat([a, b]))),
  fc.tuple(fc.integer({ min: 0, max: 8 }), cstr).map(([mode, p]) => encodeAfcPacket(AfcOp.FileOpen, 3n, Buffer.concat([u64(mode), p]))),
  fc.tuple(handle, size).map(([h, n]) => encodeAfcPacket(AfcOp.FileRead, 4n, Buffer.concat([h, n]))),
  fc.tuple(handle, fc.integer({ min: 0, max: 300_000 })).map(([h, n]) => encodeAfcPacket(AfcOp.FileWrite, 5n, h, Buffer.alloc(n, 0x5a))),
  fc.tuple(handle, fc.bigInt({ min: 0n, max: 3n }), fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n })).map(([h, whence, off]) => {
    const o = Buffer.alloc(8);
    o.writeBigInt64LE(off);
    return encodeAfcPacket(AfcOp.FileSeek, 6n, Buffer.concat([h, u64(whence), o]));
  }),
  fc.tuple(fc.constantFrom(AfcOp.FileTell, AfcOp.FileClose, AfcOp.FileLock), handle).map(([op, h]) => encodeAfcPacket(op, 7n, h)),
  fc.tuple(handle, size).map(([h, n]) => encodeAfcPacket(AfcOp.FileSetSize, 8n, Buffer.concat([h, n]))),
  fc.tuple(size, cstr).map(([n, p]) => encodeAfcPacket(AfcOp.Truncate, 9n, Buffer.concat([n, p]))),
  fc.tuple(fc.integer({ min: 0, max: 0x40 }), fc.uint8Array({ maxLength: 64 })).map(([op, body]) => encodeAfcPacket(op, 10n, Buffer.from(body))),
);

/** Sometimes overwrite one header byte (lengths, magic, opcode) or cut the packet short. */
const mutated = fc.tuple(request, fc.option(fc.tuple(fc.integer({ min: 0, max: AFC_HEADER - 1 }), fc.integer({ min: 0, max: 255 })), { freq: 8 })).map(([bytes, m]) => {
  if (m === null) return bytes;
  const copy = Buffer.from(bytes);
  copy[m[0]] = m[1];
  return copy;
});

describe('AFC service under arbitrary host input', () => {
  it('never throws, stays within its quota, returns every reserved byte at close', () => {
    fc.assert(
      fc.property(fc.array(mutated, { maxLength: 25 }), fc.array(fc.integer({ min: 1, max: 5000 }), { minLength: 1, maxLength: 5 }), (packets, pieces) => {
        const fs = new AfcFileSystem({ capacity: CAPACITY });
        const service = createAfcService(fs, { smallBody: 4096 }); // large uploads go through the quota's admission
        const conn: FakeServiceConnection = new FakeServiceConnection(1, () => undefined, () => service.onClose?.(conn, 'device-closed'));
        service.onOpen?.(conn);
        const stream = Buffer.concat(packets);
        let at = 0;
        for (let i = 0; at < stream.length && conn.open; i++) {
          const n = pieces[i % pieces.length] ?? 1;
          service.onData(conn, stream.subarray(at, at + n));
          at += n;
          expect(fs.used + fs.reserved).toBeLessThanOrEqual(CAPACITY);
        }
        if (conn.open) conn.close();
        expect(fs.reserved).toBe(0);
        expect(fs.used).toBeLessThanOrEqual(CAPACITY);
      }),
      { numRuns: 300 },
    );
  });
});
