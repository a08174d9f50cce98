import * as dnsPacket from 'dns-packet';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { escapedFullServiceName, extractRecords, instanceOf, isPlausibleResponse, MAX_TTL_SECONDS, parseInstanceName, parseMobdevTxt, TXT_MAX_BYTES } from './mdns-records.js';

const SVC = '_apple-mobdev2._tcp.local';
const INST = 'aa:bb:cc:dd:ee:ff@fe80::1c2:3ff:fe04:506';

// A response as an iPhone sends it (hex of dns-packet's encoding, decoded back through it).
function iphoneResponse(): Buffer {
  return dnsPacket.encode({
    type: 'response',
    flags: dnsPacket.AUTHORITATIVE_ANSWER,
    answers: [{ name: SVC, type: 'PTR', ttl: 4500, data: `${INST}.${SVC}` }],
    additionals: [
      { name: `${INST}.${SVC}`, type: 'SRV', ttl: 120, flush: true, data: { port: 62078, target: 'iPhone.local' } },
      { name: `${INST}.${SVC}`, type: 'TXT', ttl: 4500, flush: true, data: ['identifier=2E6C0D3B-7A4F-4E51-9C3A-5B1D2F7E8A90', 'authTag=o1Kp90oTquI=', 'authTag#1=AAAAAAAAAAA='] },
      { name: 'iPhone.local', type: 'A', ttl: 120, flush: true, data: '192.168.1.20' },
      { name: 'iPhone.local', type: 'AAAA', ttl: 120, flush: true, data: 'fe80::1c2:3ff:fe04:506' },
      { name: 'other.local', type: 'A', ttl: 120, flush: true, data: '192.168.1.99' },
      { name: '_airplay._tcp.local', type: 'PTR', ttl: 4500, data: `tv._airplay._tcp.local` },
    ],
  });
}

describe('extractRecords', () => {
  it('takes our PTR, SRV, TXT and the addresses of the SRV target; nothing else', () => {
    const { records, rejected } = extractRecords(dnsPacket.decode(iphoneResponse()));
    expect(rejected).toEqual([]);
    expect(records.map((r) => r.type)).toEqual(['PTR', 'SRV', 'TXT', 'A', 'AAAA']);
    expect(records[0]).toEqual({ type: 'PTR', name: SVC, instance: INST, ttl: 4500, flush: false });
    expect(records[1]).toMatchObject({ type: 'SRV', port: 62078, target: 'iphone.local', flush: true });
    expect(records[4]).toMatchObject({ type: 'AAAA', name: 'iphone.local', address: 'fe80::1c2:3ff:fe04:506' });
  });

  it('keeps address records of a target named earlier (knownTargets)', () => {
    const pkt = { answers: [{ name: 'iPhone.local', type: 'A', class: 'IN', ttl: 120, data: '10.0.0.5' }] };
    expect(extractRecords(pkt).records).toEqual([]);
    expect(extractRecords(pkt, (n) => n === 'iphone.local').records).toEqual([{ type: 'A', name: 'iphone.local', address: '10.0.0.5', ttl: 120, flush: false }]);
  });

  it('caps TTLs and refuses oversized TXT and silly instance names', () => {
    const big = dnsPacket.decode(dnsPacket.encode({
      type: 'response',
      answers: [
        { name: SVC, type: 'PTR', ttl: 0xffffffff, data: `${INST}.${SVC}` },
        { name: `${INST}.${SVC}`, type: 'TXT', ttl: 10, data: Array.from({ length: 40 }, () => `authTag#x=${'A'.repeat(200)}`) },
        { name: SVC, type: 'PTR', ttl: 10, data: `a.b.${SVC}` },
        { name: SVC, type: 'PTR', ttl: 10, data: `\u0001x.${SVC}` },
      ],
    }));
    const { records, rejected } = extractRecords(big);
    expect(records).toEqual([{ type: 'PTR', name: SVC, instance: INST, ttl: MAX_TTL_SECONDS, flush: false }]);
    expect(rejected.sort()).toEqual(['bad-instance-name', 'bad-instance-name', 'oversized-txt']);
    expect(40 * 211).toBeGreaterThan(TXT_MAX_BYTES);
  });

  it('never throws on what a hostile decoder could hand it', () => {
    fc.assert(fc.property(fc.anything(), (x) => {
      const r = extractRecords(x);
      expect(Array.isArray(r.records)).toBe(true);
    }));
    expect(extractRecords({ answers: [{ name: SVC, type: 'SRV', ttl: 5, data: null }, { name: `${INST}.${SVC}`, type: 'SRV', ttl: 5, data: { port: 'x', target: 3 } }] }).rejected).toEqual(['bad-record']);
  });

  it('structure-aware fuzz: mutated real responses decode or throw in dns-packet, and never break extraction', () => {
    const base = iphoneResponse();
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), value: fc.nat(255) }),
      fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
      fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ maxLength: 8 }) }),
    );
    fc.assert(fc.property(fc.array(mutation, { minLength: 1, maxLength: 6 }), (muts) => {
      let b = Buffer.from(base);
      for (const m of muts) {
        const at = m.at % (b.length + 1);
        if (m.kind === 'flip') { if (at < b.length) b[at] = m.value; }
        else if (m.kind === 'cut') b = b.subarray(0, at);
        else b = Buffer.concat([b.subarray(0, at), Buffer.from(m.bytes), b.subarray(at)]);
      }
      let decoded: unknown;
      try {
        decoded = dnsPacket.decode(b);
      } catch {
        return; // multicast-dns reports this as a 'warning'; the browser counts it
      }
      const { records } = extractRecords(decoded);
      for (const r of records) {
        expect(r.ttl).toBeLessThanOrEqual(MAX_TTL_SECONDS);
        if (r.type === 'PTR' || r.type === 'SRV' || r.type === 'TXT') expect(Buffer.byteLength(r.instance)).toBeLessThanOrEqual(63);
      }
    }), { numRuns: 3000 });
  });
});

describe('isPlausibleResponse', () => {
  it('passes real responses, screens out queries, short datagrams and headers whose counts cannot fit', () => {
    expect(isPlausibleResponse(iphoneResponse())).toBe(true);
    expect(isPlausibleResponse(dnsPacket.encode({ type: 'query', questions: [{ name: SVC, type: 'PTR' }] }))).toBe(false);
    expect(isPlausibleResponse(Buffer.alloc(11, 0xff))).toBe(false);
    expect(isPlausibleResponse(Buffer.from('000084000000ffff00000000', 'hex'))).toBe(false); // 65535 answers in 0 bytes
    expect(isPlausibleResponse(Buffer.from(`000084000000000100000000${'00'.repeat(11)}`, 'hex'))).toBe(true);
    expect(isPlausibleResponse(Buffer.from(`000084000000000100000000${'00'.repeat(10)}`, 'hex'))).toBe(false);
  });

  it('never rejects what dns-packet decodes as a response with that many records', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 12, maxLength: 200 }), (bytes) => {
      const b = Buffer.from(bytes);
      b[2] = (b[2] ?? 0) | 0x80;
      let decoded: dnsPacket.Packet | undefined;
      try { decoded = dnsPacket.decode(b); } catch { return; }
      expect(decoded.type).toBe('response');
      expect(isPlausibleResponse(b)).toBe(true);
    }));
  });
});

describe('instance names', () => {
  it('instanceOf: one sane label under our service, case-insensitive suffix, trailing dot allowed', () => {
    expect(instanceOf(`${INST}.${SVC}`)).toBe(INST);
    expect(instanceOf(`${INST}._APPLE-MOBDEV2._TCP.LOCAL.`)).toBe(INST);
    expect(instanceOf(SVC)).toBeUndefined();
    expect(instanceOf(`x._airplay._tcp.local`)).toBeUndefined();
    expect(instanceOf(`${'x'.repeat(64)}.${SVC}`)).toBeUndefined();
    expect(instanceOf(`bad\uFFFD.${SVC}`)).toBeUndefined();
  });

  it('parseInstanceName: MAC and link-local address, either may be missing', () => {
    expect(parseInstanceName(INST)).toEqual({ mac: 'aa:bb:cc:dd:ee:ff', linkLocal: 'fe80::1c2:3ff:fe04:506' });
    expect(parseInstanceName('AA:BB:CC:DD:EE:FF@FE80::1')).toEqual({ mac: 'aa:bb:cc:dd:ee:ff', linkLocal: 'fe80::1' });
    expect(parseInstanceName('My iPhone')).toEqual({ mac: undefined, linkLocal: undefined });
    expect(parseInstanceName('aa:bb:cc:dd:ee:ff@2001:db8::1')).toEqual({ mac: 'aa:bb:cc:dd:ee:ff', linkLocal: undefined });
  });

  it('escapedFullServiceName escapes dots and backslashes of the label (RFC 6763 §4.3), with a trailing dot', () => {
    expect(escapedFullServiceName(INST)).toBe(`${INST}._apple-mobdev2._tcp.local.`);
    expect(escapedFullServiceName('a.b\\c')).toBe('a\\.b\\\\c._apple-mobdev2._tcp.local.');
  });
});

describe('parseMobdevTxt', () => {
  it('identifier and every authTag key, raw, first occurrence of a key wins, keys case-insensitive', () => {
    const t = parseMobdevTxt(['identifier=abc', 'AuthTag=t0', 'authTag#1=t1', 'authtag#1=dup', 'Identifier=later', 'flag', '=novalue', 'authTag#2='].map((s) => Buffer.from(s)));
    expect(t.identifier?.toString()).toBe('abc');
    expect(t.authTags.map((b) => b.toString())).toEqual(['t0', 't1', '']);
  });

  it('keeps raw bytes of the identifier (not text)', () => {
    const raw = Buffer.concat([Buffer.from('identifier='), Buffer.from([0, 0xff, 0x80])]);
    expect(parseMobdevTxt([raw]).identifier).toEqual(Buffer.from([0, 0xff, 0x80]));
  });
});
