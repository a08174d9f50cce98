import dnsPacket from 'dns-packet';
import fc from 'fast-check';
import type { Answer, Question, TxtAnswer } from 'dns-packet';
import { describe, expect, it } from 'vitest';
import { mobdev2TxtStrings } from './auth-tag.js';
import { MOBDEV2_SERVICE, SERVICES_META, addressGoodbye, announcement, answerQuestions, instanceFqdn } from './mdns-records.js';
import type { Mobdev2Advert } from './mdns-records.js';

const ADVERT: Mobdev2Advert = {
  instance: 'a4:c3:f0:12:34:56@fe80::a6c3:f0ff:fe12:3456',
  host: 'iPhone-123456.local',
  port: 62078,
  ipv4: ['10.7.0.2'],
  ipv6: ['fe80::a6c3:f0ff:fe12:3456'],
  txt: mobdev2TxtStrings('5C0F3B4A-2D1E-4F60-8A7B-9C8D7E6F5A4B', ['8F4E2A1C-0B3D-4C5E-9F60-718293A4B5C6']),
};
const FQDN = 'a4:c3:f0:12:34:56@fe80::a6c3:f0ff:fe12:3456._apple-mobdev2._tcp.local';

const q = (name: string, type: string, klass?: string): Question => ({ name, type: type as Question['type'], ...(klass === undefined ? {} : { class: klass as Question['class'] }) });
const field = (a: Answer | undefined, key: 'ttl' | 'flush' | 'data'): unknown => (a as Record<string, unknown> | undefined)?.[key];
const kinds = (answers: readonly Answer[]): string[] => answers.map((a) => `${a.type} ${a.name}`);

describe('mobdev2 records', () => {
  it('announce every record, unique ones with the cache-flush bit, with mDNSResponder TTLs', () => {
    expect(instanceFqdn(ADVERT)).toBe(FQDN);
    const records = announcement(ADVERT);
    expect(records.map((r) => [r.type, r.name, field(r, 'ttl'), field(r, 'flush') === true])).toEqual([
      ['PTR', MOBDEV2_SERVICE, 4500, false],
      ['SRV', FQDN, 120, true],
      ['TXT', FQDN, 4500, true],
      ['A', 'iPhone-123456.local', 120, true],
      ['AAAA', 'iPhone-123456.local', 120, true],
    ]);
    expect(announcement(ADVERT, true).every((r) => field(r, 'ttl') === 0)).toBe(true);
    expect(addressGoodbye('h.local', ['10.0.0.1'], [])).toEqual([{ name: 'h.local', type: 'A', ttl: 0, data: '10.0.0.1' }]);
  });

  it('survive the wire: instance label with colons and @, TXT strings byte for byte (hex fixture)', () => {
    const wire = dnsPacket.encode({ type: 'response', flags: dnsPacket.AUTHORITATIVE_ANSWER, answers: announcement(ADVERT) });
    // the PTR data starts with ONE label holding "a4:c3:…@fe80::…" (colons and @ are not separators)
    const label = Buffer.from('a4:c3:f0:12:34:56@fe80::a6c3:f0ff:fe12:3456');
    expect(wire.includes(Buffer.concat([Buffer.from([label.length]), label]))).toBe(true);
    const decoded = dnsPacket.decode(wire);
    const ptr = decoded.answers?.find((a) => a.type === 'PTR');
    expect(field(ptr, 'data')).toBe(FQDN);
    const txt = decoded.answers?.find((a): a is TxtAnswer => a.type === 'TXT');
    expect((txt?.data as Buffer[]).map((b) => b.toString())).toEqual([
      'identifier=5C0F3B4A-2D1E-4F60-8A7B-9C8D7E6F5A4B',
      'authTag=sj5o8nOD7Z8=',
    ]);
    const srv = decoded.answers?.find((a) => a.type === 'SRV');
    expect(srv?.data).toEqual({ priority: 0, weight: 0, port: 62078, target: 'iPhone-123456.local' });
  });

  it('an old MAC-only advert has one empty TXT string', () => {
    const records = announcement({ ...ADVERT, txt: [] });
    const txt = records.find((r) => r.type === 'TXT');
    expect(field(txt, 'data')).toEqual([Buffer.alloc(0)]);
    const wire = dnsPacket.encode({ type: 'response', answers: records });
    expect(wire.includes(Buffer.from([0x00, 0x01, 0x00]))).toBe(true); // rdlength 1, the zero-length string
  });
});

describe('answers to questions', () => {
  it('PTR browse: the PTR, with SRV, TXT and addresses as additionals', () => {
    const reply = answerQuestions(ADVERT, [q('_apple-mobdev2._tcp.local', 'PTR')]);
    expect(kinds(reply?.answers ?? [])).toEqual([`PTR ${MOBDEV2_SERVICE}`]);
    expect(kinds(reply?.additionals ?? [])).toEqual([`SRV ${FQDN}`, `TXT ${FQDN}`, 'A iPhone-123456.local', 'AAAA iPhone-123456.local']);
  });

  it('names compare without case; class ANY and the unicast-response bit are taken', () => {
    expect(answerQuestions(ADVERT, [q('_APPLE-MOBDEV2._TCP.LOCAL', 'PTR', 'UNKNOWN_32769')])).toBeDefined();
    expect(answerQuestions(ADVERT, [q(MOBDEV2_SERVICE, 'ANY', 'ANY')])).toBeDefined();
    expect(answerQuestions(ADVERT, [q(MOBDEV2_SERVICE, 'PTR', 'CH')])).toBeUndefined();
  });

  it('resolve: SRV and TXT of the instance, addresses of the host, the services meta-query', () => {
    expect(kinds(answerQuestions(ADVERT, [q(FQDN, 'SRV')])?.answers ?? [])).toEqual([`SRV ${FQDN}`]);
    expect(kinds(answerQuestions(ADVERT, [q(FQDN, 'ANY')])?.answers ?? [])).toEqual([`SRV ${FQDN}`, `TXT ${FQDN}`]);
    expect(kinds(answerQuestions(ADVERT, [q('iphone-123456.local', 'AAAA')])?.answers ?? [])).toEqual(['AAAA iPhone-123456.local']);
    expect(kinds(answerQuestions(ADVERT, [q(SERVICES_META, 'PTR')])?.answers ?? [])).toEqual([`PTR ${SERVICES_META}`]);
  });

  it('any decoded question list gets an answer or undefined, never a throw (property)', () => {
    const names = fc.oneof(fc.constantFrom(MOBDEV2_SERVICE, SERVICES_META, FQDN, ADVERT.host, ''), fc.string());
    const types = fc.constantFrom('PTR', 'SRV', 'TXT', 'A', 'AAAA', 'ANY', 'NSEC', 'UNKNOWN_999');
    const classes = fc.constantFrom(undefined, 'IN', 'ANY', 'CH', 'UNKNOWN_32769');
    fc.assert(
      fc.property(fc.array(fc.tuple(names, types, classes), { maxLength: 8 }), fc.boolean(), (qs, legacy) => {
        const reply = answerQuestions(ADVERT, qs.map(([n, t, c]) => q(n, t, c)), legacy);
        if (reply !== undefined) {
          expect(reply.answers.length).toBeGreaterThan(0);
          expect(() => dnsPacket.encode({ type: 'response', answers: reply.answers, additionals: reply.additionals })).not.toThrow();
        }
      }),
    );
  });

  it('ignores what is not about it; a legacy unicast answer has no cache-flush bit', () => {
    expect(answerQuestions(ADVERT, [q('_airplay._tcp.local', 'PTR'), q('other.local', 'A')])).toBeUndefined();
    const legacy = answerQuestions(ADVERT, [q(FQDN, 'SRV')], true);
    expect(field(legacy?.answers[0], 'flush')).toBe(false);
  });
});
