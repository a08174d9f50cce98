/**
 * Structure-aware fuzzing of the plist codec: documents built by test/support/plist-arbitraries.ts
 * (bplists with real offset tables and trailers, shared references, wide integers, odd markers,
 * deep and wide containers, keys that are not strings, the attacks of issue 13; XML with long
 * numbers, entities, comments, CDATA, deep nesting), each parsed under the daemon's limits.
 * A few hundred inputs per format here; MUXD_PLIST_FUZZ_RUNS=100000 for a long run, and the
 * plist-fuzz soak scenario (`npm run soak -- --only plist`) runs it for minutes with heap figures.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { buildXml } from './index.js';
import { hostileBplist, hostileXmlPlist, validBplist } from '../../test/support/plist-arbitraries.js';
import { captureStderr, checkPlist, FUZZ_LIMITS } from '../../test/support/plist-fuzz.js';

const RUNS = Number(process.env['MUXD_PLIST_FUZZ_RUNS'] ?? 300);
const limits = fc.constantFrom(...FUZZ_LIMITS);

let stderr: ReturnType<typeof captureStderr>;
beforeEach(() => {
  stderr = captureStderr();
});
afterEach(() => {
  stderr.stop();
  expect(stderr.bytes(), `printed: ${stderr.first()}`).toBe(0);
});

describe('plist fuzz (structure-aware)', () => {
  it('binary: a value or a PlistParseError, within the work bound, never bigger than the limits', () => {
    fc.assert(fc.property(hostileBplist(), limits, (buf, l) => {
      expect(checkPlist(buf, l).violations).toEqual([]);
    }), { numRuns: RUNS });
  });

  it('XML: a value or a PlistParseError, within the work bound, never bigger than the limits', () => {
    fc.assert(fc.property(hostileXmlPlist(), limits, (buf, l) => {
      expect(checkPlist(buf, l).violations).toEqual([]);
    }), { numRuns: RUNS });
  });

  it('where only XML is accepted (the client socket), any binary plist is UNSUPPORTED and costs no work', () => {
    fc.assert(fc.property(hostileBplist(), limits, (buf, l) => {
      const verdict = checkPlist(buf, l, ['xml']);
      expect(verdict.violations).toEqual([]);
      expect(verdict.outcome).toMatch(/^MUXD_ERR_PLIST_(UNSUPPORTED|TOO_LARGE)$/);
      expect(verdict.work).toBe(0);
    }), { numRuns: Math.min(RUNS, 100) });
  });

  it('the generators reach the readers\' deep paths: valid documents are read, and hostile ones hit every refusal', () => {
    const seen = new Set<string>();
    for (const buf of fc.sample(hostileBplist(), { numRuns: 2000, seed: 1 })) seen.add(checkPlist(buf, FUZZ_LIMITS[1]!).outcome);
    for (const buf of fc.sample(hostileXmlPlist(), { numRuns: 2000, seed: 1 })) seen.add(`xml ${checkPlist(buf, FUZZ_LIMITS[0]!).outcome}`);
    for (const buf of fc.sample(validBplist(), { numRuns: 50, seed: 1 })) expect(checkPlist(buf, FUZZ_LIMITS[1]!).outcome).toBe('value');
    expect([...seen]).toEqual(expect.arrayContaining([
      'MUXD_ERR_PLIST_MALFORMED',
      'MUXD_ERR_PLIST_TOO_DEEP',
      'MUXD_ERR_PLIST_TOO_LARGE',
      'MUXD_ERR_PLIST_TOO_MANY_OBJECTS',
      'MUXD_ERR_PLIST_UNSUPPORTED',
      'value',
      'xml MUXD_ERR_PLIST_MALFORMED',
      'xml MUXD_ERR_PLIST_TOO_DEEP',
      'xml MUXD_ERR_PLIST_TOO_LARGE',
      'xml MUXD_ERR_PLIST_TOO_MANY_OBJECTS',
      'xml MUXD_ERR_PLIST_UNSUPPORTED',
      'xml value',
    ]));
  });

  it('the checker itself catches every kind of broken promise', () => {
    const doc = buildXml([true]);
    const l = { maxBytes: 1 << 20, maxDepth: 8, maxObjects: 2 };
    expect(checkPlist(doc, l).violations).toEqual([]);
    const threw = checkPlist(doc, l, undefined, () => { throw new TypeError('boom'); });
    expect([threw.outcome, threw.violations[0]]).toEqual(['crash', 'threw TypeError: boom']);
    expect(checkPlist(doc, l, undefined, () => [1, 2, 3]).violations[0]).toBe('4 values above maxObjects 2');
    expect(checkPlist(doc, l, undefined, () => ['x'.repeat(doc.length + 20)]).violations[0]).toMatch(/payload bytes above/);
    const slow = checkPlist(doc, l, undefined, (_b, _l, options) => {
      if (options?.meter !== undefined) options.meter.work = 10 ** 9;
      return [];
    });
    expect(slow.violations[0]).toMatch(/^work 1000000000 above the bound/);
  });
});
