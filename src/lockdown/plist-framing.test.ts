import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { buildBinary, buildXml } from '../plist/index.js';
import { encodePlistFrame, PlistFrameDecoder, parsePlistMessage } from './plist-framing.js';
import { LockdownProtocolError } from './errors.js';

/** A binary QueryType reply as a phone sends it: `bplist00` body behind a 4-byte BE length. */
const BINARY_REPLY = buildBinary({ Request: 'QueryType', Type: 'com.apple.mobile.lockdown' });
const XML_REPLY = buildXml({ Request: 'GetValue', Key: 'ProductVersion', Value: '17.5' });

function framed(body: Buffer): Buffer {
  const header = Buffer.alloc(4);
  header.writeUInt32BE(body.length, 0);
  return Buffer.concat([header, body]);
}

describe('encodePlistFrame', () => {
  it('writes the body length big-endian, then the XML body', () => {
    const frame = encodePlistFrame({ Label: 'usbmuxd', Request: 'QueryType' });
    const body = frame.subarray(4);
    expect(frame.readUInt32BE(0)).toBe(body.length);
    expect(body.toString('utf8')).toContain('<key>Request</key>');
    expect(body.subarray(0, 5).toString('latin1')).toBe('<?xml');
    expect(parsePlistMessage(body)).toEqual({ Label: 'usbmuxd', Request: 'QueryType' });
  });

  it('matches the QueryType hex fixture byte for byte (libplist layout, as usbmuxd sends it)', () => {
    const xml =
      '<?xml version="1.0" encoding="UTF-8"?>\n' +
      '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n' +
      '<plist version="1.0">\n<dict>\n\t<key>Label</key>\n\t<string>usbmuxd</string>\n' +
      '\t<key>Request</key>\n\t<string>QueryType</string>\n</dict>\n</plist>\n';
    const frame = encodePlistFrame({ Label: 'usbmuxd', Request: 'QueryType' });
    expect(frame.subarray(0, 4).toString('hex')).toBe('00000118');
    expect(frame.toString('hex')).toBe('00000118' + Buffer.from(xml, 'utf8').toString('hex'));
  });
});

describe('PlistFrameDecoder', () => {
  const stream = Buffer.concat([framed(BINARY_REPLY), framed(XML_REPLY), framed(Buffer.alloc(0))]);

  it('starts with the big-endian length of the binary reply (hex fixture)', () => {
    expect(stream.subarray(0, 12).toString('hex')).toBe(
      BINARY_REPLY.length.toString(16).padStart(8, '0') + Buffer.from('bplist00', 'latin1').toString('hex'),
    );
  });

  it('decodes binary and XML replies split at every byte offset', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const d = new PlistFrameDecoder();
      const bodies = [...d.push(stream.subarray(0, cut)), ...d.push(stream.subarray(cut))];
      expect(bodies.length, `cut at ${cut}`).toBe(3);
      expect(parsePlistMessage(bodies[0]!)).toEqual({ Request: 'QueryType', Type: 'com.apple.mobile.lockdown' });
      expect(parsePlistMessage(bodies[1]!)).toEqual({ Request: 'GetValue', Key: 'ProductVersion', Value: '17.5' });
      expect(bodies[2]!.length).toBe(0);
      expect(d.pendingBytes).toBe(0);
    }
  });

  it('decodes the stream fed one byte at a time', () => {
    const d = new PlistFrameDecoder();
    const bodies: Buffer[] = [];
    for (let i = 0; i < stream.length; i++) bodies.push(...d.push(stream.subarray(i, i + 1)));
    expect(bodies.map((b) => b.length)).toEqual([BINARY_REPLY.length, XML_REPLY.length, 0]);
  });

  it('refuses a length above the limit before any body arrives', () => {
    const d = new PlistFrameDecoder(1024);
    expect(() => d.push(Buffer.from('00000401', 'hex'))).toThrow(LockdownProtocolError);
    expect(() => new PlistFrameDecoder().push(Buffer.from('00100001', 'hex'))).toThrow(/exceeds/);
  });

  it('accepts exactly the limit', () => {
    const d = new PlistFrameDecoder(8);
    expect(d.push(Buffer.from('000000080102030405060708', 'hex')).map((b) => b.toString('hex'))).toEqual(['0102030405060708']);
  });

  it('round-trips arbitrary dicts under arbitrary chunking (property)', () => {
    const dict = fc.dictionary(
      fc.stringMatching(/^[A-Za-z][A-Za-z0-9]{0,7}$/),
      fc.oneof(fc.stringMatching(/^[ -~]{0,20}$/), fc.integer(), fc.boolean(), fc.uint8Array({ maxLength: 16 }).map((a) => Buffer.from(a))),
      { maxKeys: 5, noNullPrototype: true },
    );
    fc.assert(
      fc.property(fc.array(dict, { minLength: 1, maxLength: 4 }), fc.array(fc.nat(), { maxLength: 8 }), (messages, cuts) => {
        const wire = Buffer.concat(messages.map((m) => encodePlistFrame(m)));
        const points = [...new Set(cuts.map((c) => c % (wire.length + 1)))].sort((a, b) => a - b);
        const d = new PlistFrameDecoder();
        const out: Buffer[] = [];
        let from = 0;
        for (const p of [...points, wire.length]) {
          out.push(...d.push(wire.subarray(from, p)));
          from = p;
        }
        expect(out.map((b) => parsePlistMessage(b))).toEqual(messages);
      }),
      { numRuns: 100 },
    );
  });
});

describe('parsePlistMessage', () => {
  it('refuses a non-dict and garbage with LockdownProtocolError', () => {
    expect(() => parsePlistMessage(buildXml(['a']))).toThrow(LockdownProtocolError);
    expect(() => parsePlistMessage(Buffer.from('not a plist'))).toThrow(LockdownProtocolError);
  });
});
