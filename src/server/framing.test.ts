import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { encodeFrame, FrameDecoder, HEADER_SIZE, MAX_FRAME_BYTES, readHeader } from './framing.js';
import type { Frame } from './framing.js';
import { FrameTooLargeError, FrameTooShortError } from './errors.js';

/** Binary LISTEN, tag 7: length 16, version 0, message 3, tag 7 (all LE). */
const LISTEN_HEX = '10000000' + '00000000' + '03000000' + '07000000';
/** Binary CONNECT, tag 1, device 1, port 62078 (BE f27e), reserved 0. */
const CONNECT_HEX = '18000000' + '00000000' + '02000000' + '01000000' + '01000000' + 'f27e' + '0000';

function drain(decoder: FrameDecoder): Frame[] {
  const out: Frame[] = [];
  for (let f = decoder.read(); f !== undefined; f = decoder.read()) out.push(f);
  return out;
}

describe('frame header', () => {
  it('encodes the LISTEN fixture byte for byte', () => {
    expect(encodeFrame(0, 3, 7).toString('hex')).toBe(LISTEN_HEX);
  });

  it('encodes the CONNECT fixture byte for byte', () => {
    const body = Buffer.from('01000000f27e0000', 'hex');
    expect(encodeFrame(0, 2, 1, body).toString('hex')).toBe(CONNECT_HEX);
    expect(readHeader(Buffer.from(CONNECT_HEX, 'hex'))).toEqual({ length: 24, version: 0, message: 2, tag: 1 });
  });
});

describe('FrameDecoder', () => {
  const stream = Buffer.from(LISTEN_HEX + CONNECT_HEX + LISTEN_HEX, 'hex');

  it('midFrame: true from the first byte of a frame until its last, at every split of the stream', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const d = new FrameDecoder();
      d.push(stream.subarray(0, cut));
      drain(d);
      // Frame boundaries of the stream: 0, 16, 40, 56.
      expect(d.midFrame).toBe(![0, 16, 40, 56].includes(cut));
      d.push(stream.subarray(cut));
      expect(drain(d).length + (cut >= 56 ? 3 : cut >= 40 ? 2 : cut >= 16 ? 1 : 0)).toBe(3);
      expect(d.midFrame).toBe(false);
    }
  });

  it('returns pipelined frames in order from one chunk', () => {
    const d = new FrameDecoder();
    d.push(stream);
    const frames = drain(d);
    expect(frames.map((f) => [f.message, f.tag, f.body.toString('hex')])).toEqual([
      [3, 7, ''],
      [2, 1, '01000000f27e0000'],
      [3, 7, ''],
    ]);
    expect(d.bufferedBytes).toBe(0);
  });

  it('gives the same frames when the stream is split at every byte offset', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const d = new FrameDecoder();
      const frames: Frame[] = [];
      d.push(stream.subarray(0, cut));
      frames.push(...drain(d));
      d.push(stream.subarray(cut));
      frames.push(...drain(d));
      expect(frames.map((f) => f.tag), `cut at ${cut}`).toEqual([7, 1, 7]);
      expect(frames[1]?.body.toString('hex')).toBe('01000000f27e0000');
    }
  });

  it('gives the same frames fed one byte at a time', () => {
    const d = new FrameDecoder();
    const frames: Frame[] = [];
    for (const byte of stream) {
      d.push(Buffer.from([byte]));
      frames.push(...drain(d));
    }
    expect(frames.map((f) => f.message)).toEqual([3, 2, 3]);
  });

  it('returns a view, not a copy, when the body lies within one chunk', () => {
    const d = new FrameDecoder();
    const chunk = Buffer.from(CONNECT_HEX, 'hex');
    d.push(chunk);
    const frame = d.read();
    expect(frame?.body.buffer).toBe(chunk.buffer);
  });

  it('rejects a length below 16', () => {
    const d = new FrameDecoder();
    d.push(Buffer.from('0f000000000000000300000000000000', 'hex'));
    expect(() => d.read()).toThrow(FrameTooShortError);
  });

  it('rejects a length above 65536 at the header, before the body arrives', () => {
    const d = new FrameDecoder();
    const header = Buffer.alloc(HEADER_SIZE);
    header.writeUInt32LE(MAX_FRAME_BYTES + 1, 0);
    d.push(header);
    expect(() => d.read()).toThrow(FrameTooLargeError);
  });

  it('accepts exactly 65536 and honours a configured smaller limit', () => {
    const big = encodeFrame(1, 8, 1, Buffer.alloc(MAX_FRAME_BYTES - HEADER_SIZE));
    const d = new FrameDecoder();
    d.push(big);
    expect(d.read()?.body.length).toBe(MAX_FRAME_BYTES - HEADER_SIZE);
    const small = new FrameDecoder(1024);
    small.push(big);
    expect(() => small.read()).toThrow(FrameTooLargeError);
  });

  it('takeRemaining hands over everything after the last frame read, and empties the decoder', () => {
    const d = new FrameDecoder();
    const tail = Buffer.from('payload bytes');
    d.push(Buffer.concat([Buffer.from(CONNECT_HEX, 'hex'), tail.subarray(0, 4)]));
    d.push(tail.subarray(4));
    expect(d.read()?.message).toBe(2);
    expect(Buffer.concat(d.takeRemaining()).toString()).toBe('payload bytes');
    expect(d.bufferedBytes).toBe(0);
    expect(d.read()).toBeUndefined();
  });

  it('takeRemaining includes a half-read frame header', () => {
    const d = new FrameDecoder();
    const frame = encodeFrame(1, 8, 9, Buffer.from('abcdef'));
    d.push(frame.subarray(0, 18));
    expect(d.read()).toBeUndefined();
    expect(Buffer.concat(d.takeRemaining()).equals(frame.subarray(0, 18))).toBe(true);
  });

  it('property: any frames, any chunking, same frames out', () => {
    const frameArb = fc.record({
      version: fc.integer({ min: 0, max: 2 }),
      message: fc.integer({ min: 0, max: 10 }),
      tag: fc.integer({ min: 0, max: 0xffffffff }),
      body: fc.uint8Array({ maxLength: 100 }),
    });
    fc.assert(fc.property(fc.array(frameArb, { maxLength: 6 }), fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1 }), (frames, cuts) => {
      const wire = Buffer.concat(frames.map((f) => encodeFrame(f.version, f.message, f.tag, Buffer.from(f.body))));
      const d = new FrameDecoder();
      const out: Frame[] = [];
      let at = 0;
      for (let i = 0; at < wire.length; i++) {
        const n = cuts[i % cuts.length] ?? 1;
        d.push(wire.subarray(at, at + n));
        at += n;
        out.push(...drain(d));
      }
      expect(out.map((f) => ({ version: f.version, message: f.message, tag: f.tag, body: new Uint8Array(f.body) }))).toEqual(
        frames.map((f) => ({ ...f, body: new Uint8Array(f.body) })),
      );
    }));
  });
});
