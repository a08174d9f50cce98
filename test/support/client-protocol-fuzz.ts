/**
 * A structure-aware fuzzer of the usbmux client protocol: fast-check generators of whole client
 * connections, for the client-protocol fuzz scenario (bench/soak/client-protocol-fuzz.ts; briefly
 * in `npm test`, at length in `npm run soak`).
 *
 * A connection is a list of frames, pipelined, then cut into writes:
 *
 *   frame  = header (length, version, message, tag) + body
 *     length   the true length mostly; else a lie (short of the body, past it, under 16, over 64 KiB)
 *     version  1 (plist) or 0 (binary) mostly; else 2..9 or any u32
 *     message  8 (plist) for plist bodies, 2/3 (binary Connect/Listen) with binary bodies; else any
 *     body     from the BODY GENERATOR (pluggable: `FuzzOptions.bodies`), binary Connect bodies,
 *              empty, or raw bytes
 *   cuts   whole; one byte per write; or random cut points — with a pause between writes, so the
 *          daemon reads them apart (split at any byte, a header split in the middle included)
 *   end    hang up at once, linger for replies, or (rarely) a half frame and silence
 *
 * The body generator is any `fc.Arbitrary<Buffer>` of plist documents: today hostileBody from
 * hostile-requests.ts; the hostile-plist arbitraries (binary with shared refs and wide ints, XML
 * with long numbers) plug in the same way.
 */
import fc from 'fast-check';
import { MAX_FRAME_BYTES } from '../../src/server/framing.js';
import { hostileBody } from './hostile-requests.js';

const HEADER = 16;

export interface FuzzFrame {
  readonly length: number;
  readonly version: number;
  readonly message: number;
  readonly tag: number;
  readonly body: Buffer;
}

export type CutPlan = { readonly kind: 'whole' } | { readonly kind: 'bytes' } | { readonly kind: 'random'; readonly sizes: readonly number[] };
export type Ending = 'hangup' | 'linger' | 'silence';

export interface FuzzConnection {
  readonly frames: readonly FuzzFrame[];
  readonly cuts: CutPlan;
  readonly ending: Ending;
}

export interface FuzzOptions {
  /** Plist request bodies (default: hostileBody from hostile-requests.ts). */
  readonly bodies?: fc.Arbitrary<Buffer>;
  /** Frames per connection (default 1..8). */
  readonly maxFrames?: number;
}

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const tag = fc.oneof(fc.integer({ min: 0, max: 0xffff }), fc.constant(0xffffffff), u32);

/** A binary CONNECT body: device id, port (big-endian), two reserved bytes. */
const binaryConnectBody = fc.tuple(fc.constantFrom(0, 1, 2, 99, 0xffffffff), fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff })).map(([id, port, rest]) => {
  const body = Buffer.alloc(8);
  body.writeUInt32LE(id, 0);
  body.writeUInt16BE(port, 4);
  body.writeUInt16LE(rest, 6);
  return body;
});

const rawBytes = (max: number): fc.Arbitrary<Buffer> => fc.uint8Array({ maxLength: max }).map((b) => Buffer.from(b));

function frameArbitrary(bodies: fc.Arbitrary<Buffer>): fc.Arbitrary<FuzzFrame> {
  const plist = fc.record({ version: fc.constantFrom(1, 1, 1, 0), message: fc.constant(8), tag, body: bodies });
  const binary = fc.record({
    version: fc.constant(0),
    message: fc.constantFrom(2, 3),
    tag,
    body: fc.oneof(binaryConnectBody, fc.constant(Buffer.alloc(0)), rawBytes(12)),
  });
  const odd = fc.record({
    version: fc.oneof(fc.integer({ min: 0, max: 9 }), u32),
    message: fc.oneof(fc.integer({ min: 0, max: 10 }), u32),
    tag,
    body: fc.oneof(bodies, rawBytes(300)),
  });
  const lie = fc.oneof(
    { weight: 12, arbitrary: fc.constant<'true' | 'short' | 'long' | 'tiny' | 'huge'>('true') },
    { weight: 1, arbitrary: fc.constantFrom<'short' | 'long' | 'tiny' | 'huge'>('short', 'long', 'tiny', 'huge') },
  );
  return fc
    .tuple(fc.oneof({ weight: 8, arbitrary: plist }, { weight: 2, arbitrary: binary }, { weight: 1, arbitrary: odd }), lie, fc.nat())
    .map(([f, how, n]) => {
      const truth = HEADER + f.body.length;
      const length = how === 'true' ? truth
        : how === 'short' ? Math.max(HEADER, truth - 1 - (n % Math.max(1, f.body.length)))
          : how === 'long' ? truth + 1 + (n % 64)
            : how === 'tiny' ? n % HEADER
              : MAX_FRAME_BYTES + 1 + (n % 0x7fff0000);
      return { ...f, length };
    });
}

export function fuzzConnection(options: FuzzOptions = {}): fc.Arbitrary<FuzzConnection> {
  const frames = fc.array(frameArbitrary(options.bodies ?? hostileBody), { minLength: 1, maxLength: options.maxFrames ?? 8 });
  const cuts = fc.oneof(
    { weight: 4, arbitrary: fc.constant<CutPlan>({ kind: 'whole' }) },
    { weight: 1, arbitrary: fc.constant<CutPlan>({ kind: 'bytes' }) },
    { weight: 3, arbitrary: fc.array(fc.integer({ min: 1, max: 600 }), { minLength: 1, maxLength: 6 }).map((sizes): CutPlan => ({ kind: 'random', sizes })) },
  );
  const ending = fc.oneof({ weight: 6, arbitrary: fc.constant<Ending>('linger') }, { weight: 3, arbitrary: fc.constant<Ending>('hangup') }, { weight: 1, arbitrary: fc.constant<Ending>('silence') });
  return fc.record({ frames, cuts, ending });
}

/** The bytes of a frame: its header as generated (length may lie) and its body. */
export function frameBytes(frame: FuzzFrame): Buffer {
  const out = Buffer.allocUnsafe(HEADER + frame.body.length);
  out.writeUInt32LE(frame.length >>> 0, 0);
  out.writeUInt32LE(frame.version >>> 0, 4);
  out.writeUInt32LE(frame.message >>> 0, 8);
  out.writeUInt32LE(frame.tag >>> 0, 12);
  frame.body.copy(out, HEADER);
  return out;
}

/**
 * The writes of a connection, in order. 'bytes' writes every byte alone only up to `maxByteWrites`
 * (then the rest whole): a byte-per-write connection costs a pause per byte.
 */
export function writesOf(connection: FuzzConnection, maxByteWrites = 64): Buffer[] {
  const stream = Buffer.concat(connection.frames.map(frameBytes));
  const cuts = connection.cuts;
  switch (cuts.kind) {
    case 'whole':
      return [stream];
    case 'bytes': {
      const out: Buffer[] = [];
      const n = Math.min(stream.length, maxByteWrites);
      for (let i = 0; i < n; i++) out.push(stream.subarray(i, i + 1));
      if (n < stream.length) out.push(stream.subarray(n));
      return out;
    }
    case 'random': {
      const out: Buffer[] = [];
      let at = 0;
      for (let k = 0; at < stream.length; k++) {
        const size = cuts.sizes[k % cuts.sizes.length] ?? stream.length;
        out.push(stream.subarray(at, at + size));
        at += size;
      }
      return out;
    }
  }
}
