import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_UDID } from './options.js';
import { NOTIFICATION_PROXY_PORT } from './lockdown.js';
import { DISCARD_PORT, ECHO_PORT, LOCKDOWN_PORT, SOURCE_PORT, defaultServices, sourceByte, sourceBytes } from './services.js';
import { emptyStats } from './stats.js';

describe('source pattern', () => {
  it('is the documented pure function of the offset', () => {
    expect([0, 1, 2, 255, 256, 257].map(sourceByte)).toEqual([0, 7, 14, (255 * 7) & 0xff, (256 * 7 + 1) & 0xff, (257 * 7 + 1) & 0xff]);
    expect(sourceBytes(0, 4)).toEqual(Buffer.from([0, 7, 14, 21]));
  });

  it('sourceBytes matches sourceByte at any offset and length, across the 64 KiB period', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 40 }), fc.integer({ min: 0, max: 140_000 }), (offset, length) => {
        const bytes = sourceBytes(offset, length);
        expect(bytes.length).toBe(length);
        for (let k = 0; k < length; k += 997) expect(bytes[k]).toBe(sourceByte(offset + k));
        if (length > 0) expect(bytes[length - 1]).toBe(sourceByte(offset + length - 1));
      }),
      { numRuns: 50 },
    );
  });

  it('does not repeat within 64 KiB', () => {
    const first = sourceBytes(0, 256);
    for (let at = 256; at < 65536; at += 256) expect(sourceBytes(at, 256).equals(first)).toBe(false);
    expect(sourceBytes(65536, 256).equals(first)).toBe(true);
  });
});

describe('defaultServices', () => {
  it('serves echo 7, discard 9, source 19 and lockdownd 62078', () => {
    const services = defaultServices(DEFAULT_UDID, emptyStats());
    expect([...services].map(([port, s]) => [port, s.name])).toEqual([
      [ECHO_PORT, 'echo'],
      [DISCARD_PORT, 'discard'],
      [SOURCE_PORT, 'source'],
      [LOCKDOWN_PORT, 'lockdownd'],
      [NOTIFICATION_PROXY_PORT, 'notification_proxy'],
    ]);
  });
});
