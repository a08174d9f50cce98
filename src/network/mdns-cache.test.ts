import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MobdevCache } from './mdns-cache.js';
import type { CacheEvent } from './mdns-cache.js';
import type { MdnsRecord } from './mdns-records.js';

const SVC = '_apple-mobdev2._tcp.local';
const ETH = { name: 'eth0', index: 2 };
const WLAN = { name: 'wlan0', index: 3 };

function phone(label: string, opts: { ttl?: number; host?: string; a?: string[]; aaaa?: string[]; txt?: string[] | null | undefined; flush?: boolean } = {}): MdnsRecord[] {
  const ttl = opts.ttl ?? 120;
  const host = opts.host ?? `${label.replace(/[^a-z0-9]/gi, '')}.local`;
  const name = `${label}.${SVC}`.toLowerCase();
  const flush = opts.flush ?? true;
  const out: MdnsRecord[] = [
    { type: 'PTR', name: SVC, instance: label, ttl: opts.ttl ?? 4500, flush: false },
    { type: 'SRV', name, instance: label, port: 62078, target: host, ttl, flush },
  ];
  if (opts.txt !== null) out.push({ type: 'TXT', name, instance: label, txt: (opts.txt ?? ['identifier=id1', 'authTag=o1Kp90oTquI=']).map((s) => Buffer.from(s)), ttl: opts.ttl ?? 4500, flush });
  for (const a of opts.a ?? ['192.168.1.20']) out.push({ type: 'A', name: host, address: a, ttl, flush });
  for (const a of opts.aaaa ?? []) out.push({ type: 'AAAA', name: host, address: a, ttl, flush });
  return out;
}

const types = (events: CacheEvent[]): string[] => events.map((e) => `${e.type}:${e.advert.instance}${e.type === 'down' ? `:${e.reason}` : ''}`);
const L1 = 'aa:bb:cc:dd:ee:01@fe80::1';
const L2 = 'aa:bb:cc:dd:ee:02@fe80::2';

describe('MobdevCache', () => {
  it('an instance is up once PTR, SRV and an address are known; the view carries what the lead needs', () => {
    const c = new MobdevCache();
    const r = c.ingest(phone(L1, { aaaa: ['fe80::1'] }), ETH, 0);
    expect(types(r.events)).toEqual([`up:${L1}`]);
    const a = c.adverts()[0]!;
    expect(a.mac).toBe('aa:bb:cc:dd:ee:01');
    expect(a.nameAddress).toBe('fe80::1');
    expect(a.identifier?.toString()).toBe('id1');
    expect(a.authTags.map((t) => t.toString())).toEqual(['o1Kp90oTquI=']);
    expect(a.port).toBe(62078);
    expect(a.fullServiceName).toBe(`${L1}._apple-mobdev2._tcp.local.`);
    expect(a.addresses).toEqual([
      { family: 4, address: '192.168.1.20', interfaceName: 'eth0', interfaceIndex: 2, host: '192.168.1.20', ttl: 120 },
      { family: 6, address: 'fe80::1', interfaceName: 'eth0', interfaceIndex: 2, host: 'fe80::1%eth0', ttl: 120 },
    ]);
    expect(a.interfaces).toEqual([ETH]);
  });

  it('a PTR alone is pending and asks for SRV and TXT; an SRV without address asks A and AAAA', () => {
    const c = new MobdevCache();
    const [ptr, srv] = phone(L1);
    const r1 = c.ingest([ptr!], ETH, 0);
    expect(r1.events).toEqual([]);
    expect(r1.questions.map((q) => `${q.type} ${q.name}`)).toEqual([`SRV ${L1}.${SVC}`, `TXT ${L1}.${SVC}`]);
    const r2 = c.ingest([srv!], ETH, 10);
    expect(r2.events).toEqual([]);
    expect(r2.questions.map((q) => q.type)).toEqual(['TXT', 'A', 'AAAA']);
    const r3 = c.ingest(phone(L1).filter((x) => x.type === 'A'), ETH, 20);
    expect(types(r3.events)).toEqual([`up:${L1}`]);
  });

  it('an address record for a host no SRV names is ignored', () => {
    const c = new MobdevCache();
    c.ingest(phone(L1), ETH, 0);
    c.ingest([{ type: 'A', name: 'other.local', address: '10.9.9.9', ttl: 120, flush: true }], ETH, 5);
    expect(c.adverts()[0]!.addresses.map((a) => a.address)).toEqual(['192.168.1.20']);
  });

  it('re-announcements of the same records emit nothing; a TXT change emits changed', () => {
    const c = new MobdevCache();
    c.ingest(phone(L1), ETH, 0);
    expect(c.ingest(phone(L1), ETH, 5000).events).toEqual([]);
    const r = c.ingest(phone(L1, { txt: ['identifier=id2', 'authTag#1=o1Kp90oTquI='] }), ETH, 6000);
    expect(types(r.events)).toEqual([`changed:${L1}`]);
  });

  it('goodbye (TTL 0) takes the instance down 1 s later, and a correction within that second keeps it', () => {
    const c = new MobdevCache();
    c.ingest(phone(L1), ETH, 0);
    c.ingest(phone(L1, { ttl: 0 }), ETH, 10_000);
    expect(c.tick(10_999).events).toEqual([]);
    expect(types(c.tick(11_000).events)).toEqual([`down:${L1}:goodbye`]);
    expect(c.size.instances).toBe(0);

    const d = new MobdevCache();
    d.ingest(phone(L2), ETH, 0);
    d.ingest(phone(L2, { ttl: 0 }), ETH, 10_000);
    d.ingest(phone(L2), ETH, 10_500);
    expect(d.tick(12_000).events).toEqual([]);
    expect(d.adverts()).toHaveLength(1);
  });

  it('records expire at their TTL: the short-lived address first, taking the instance down', () => {
    const c = new MobdevCache();
    c.ingest(phone(L1), ETH, 0);
    expect(c.tick(119_999).events).toEqual([]);
    expect(types(c.tick(120_000).events)).toEqual([`down:${L1}:expired`]);
  });

  it('an address change with the cache-flush bit replaces the old address one second later', () => {
    const c = new MobdevCache();
    c.ingest(phone(L1, { a: ['192.168.1.20'] }), ETH, 0);
    const r = c.ingest(phone(L1, { a: ['192.168.1.77'] }), ETH, 30_000);
    expect(types(r.events)).toEqual([`changed:${L1}`]);
    expect(c.adverts()[0]!.addresses.map((a) => a.address)).toEqual(['192.168.1.20', '192.168.1.77']);
    const t = c.tick(31_000);
    expect(types(t.events)).toEqual([`changed:${L1}`]);
    expect(c.adverts()[0]!.addresses.map((a) => a.address)).toEqual(['192.168.1.77']);
  });

  it('keeps answers per interface, and dropping an interface removes only what came from it', () => {
    const c = new MobdevCache();
    c.ingest(phone(L1, { aaaa: ['fe80::1'] }), ETH, 0);
    expect(c.ingest(phone(L1, { aaaa: ['fe80::1'] }), ETH, 1).events).toEqual([]); // duplicate answer
    expect(types(c.ingest(phone(L1, { aaaa: ['fe80::1'] }), WLAN, 2).events)).toEqual([`changed:${L1}`]);
    expect(c.adverts()[0]!.addresses.map((a) => a.host)).toEqual(['192.168.1.20', '192.168.1.20', 'fe80::1%eth0', 'fe80::1%wlan0']);
    expect(types(c.dropInterface('eth0', 3))).toEqual([`changed:${L1}`]);
    expect(types(c.dropInterface('wlan0', 4))).toEqual([`down:${L1}:interface-gone`]);
  });

  it('refreshes at 80 % of the TTL (+ up to 2 %), once per point, on the interface it came from', () => {
    const c = new MobdevCache({ random: () => 0 });
    c.ingest(phone(L1), ETH, 0);
    expect(c.nextDeadline()).toBe(96_000); // SRV and A: 120 s × 0.8
    const q = c.tick(96_000).questions;
    expect(q.map((x) => `${x.ifaceKey} ${x.type} ${x.name}`).sort()).toEqual([`eth0 A ${L1.replace(/[^a-z0-9]/gi, '')}.local`, `eth0 SRV ${L1}.${SVC}`]);
    expect(c.tick(96_001).questions).toEqual([]);
    expect(c.tick(102_000).questions).toHaveLength(2); // 85 %
    // an answer resets the refresh cycle
    c.ingest(phone(L1), ETH, 103_000);
    expect(c.tick(104_000).questions).toEqual([]);
  });

  it('known answers: PTRs with more than half their TTL left', () => {
    const c = new MobdevCache();
    c.ingest(phone(L1), ETH, 0);
    expect(c.knownAnswers('eth0', 1000)).toEqual([{ instance: L1, ttl: 4499 }]);
    expect(c.knownAnswers('wlan0', 1000)).toEqual([]);
    expect(c.knownAnswers('eth0', 2_300_000)).toEqual([]);
  });

  it('caps instances, records and addresses; a goodbye for an unknown instance is ignored', () => {
    const c = new MobdevCache({ maxInstances: 3, maxAddresses: 2 });
    for (let i = 0; i < 5; i++) c.ingest(phone(`fake-${i}`), ETH, 0);
    expect(c.size.instances).toBe(3);
    const r = c.ingest(phone('fake-9'), ETH, 1);
    expect(r.refused).toContain('instance-cap');
    expect(c.ingest(phone('nobody', { ttl: 0 }), ETH, 2).refused).toEqual([]);
    const many = c.ingest(phone('fake-0', { a: ['10.0.0.1', '10.0.0.2', '10.0.0.3'], flush: false }), ETH, 3);
    expect(many.refused).toContain('address-cap');
    const perSource = new MobdevCache({ maxInstancesPerSource: 2 });
    for (let i = 0; i < 4; i++) perSource.ingest(phone(`flood-${i}`), ETH, 0, '10.0.0.66');
    expect(perSource.ingest(phone(L1), ETH, 0, '10.0.0.66').refused).toContain('source-cap');
    expect(types(perSource.ingest(phone(L1), ETH, 0, '10.0.0.5').events)).toEqual([`up:${L1}`]);
    expect(perSource.size.instances).toBe(3);
    const small = new MobdevCache({ maxRecords: 6 });
    small.ingest(phone(L1), ETH, 0);
    expect(small.ingest(phone(L2), ETH, 0).refused).toContain('record-cap');
  });

  it('instance names are case-insensitive keys but keep their spelling', () => {
    const c = new MobdevCache();
    c.ingest(phone('AA:BB:CC:DD:EE:01@FE80::1'), ETH, 0);
    expect(c.ingest(phone('aa:bb:cc:dd:ee:01@fe80::1'), ETH, 1).events.map((e) => e.type)).toEqual(['changed']);
    expect(c.size.instances).toBe(1);
  });

  it('property: any sequence of announcements, goodbyes, ticks and interface drops keeps events consistent', () => {
    const labels = ['p1@fe80::1', 'p2@fe80::2', 'p3@fe80::3'];
    const op = fc.oneof(
      fc.record({ kind: fc.constant('announce' as const), label: fc.constantFrom(...labels), iface: fc.constantFrom(ETH, WLAN), a: fc.constantFrom('10.0.0.1', '10.0.0.2'), ttl: fc.constantFrom(0, 3, 120), txt: fc.boolean(), dt: fc.nat(5000) }),
      fc.record({ kind: fc.constant('tick' as const), dt: fc.nat(200_000) }),
      fc.record({ kind: fc.constant('drop' as const), iface: fc.constantFrom('eth0', 'wlan0'), dt: fc.nat(1000) }),
    );
    fc.assert(fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
      const c = new MobdevCache({ maxInstances: 2 });
      const up = new Set<string>();
      let now = 0;
      const check = (events: CacheEvent[]): void => {
        for (const e of events) {
          const k = e.advert.instance.toLowerCase();
          if (e.type === 'up') { expect(up.has(k)).toBe(false); up.add(k); }
          else { expect(up.has(k)).toBe(true); if (e.type === 'down') up.delete(k); }
          if (e.type !== 'down') expect(e.advert.addresses.length).toBeGreaterThan(0);
        }
      };
      for (const o of ops) {
        now += o.dt;
        if (o.kind === 'announce') check(c.ingest(phone(o.label, { ttl: o.ttl, a: [o.a], txt: o.txt ? undefined : null }), o.iface, now).events);
        else if (o.kind === 'tick') check(c.tick(now).events);
        else check(c.dropInterface(o.iface, now));
        expect(new Set(c.adverts().map((a) => a.instance.toLowerCase()))).toEqual(up);
        expect(c.size.instances).toBeLessThanOrEqual(2);
        const next = c.nextDeadline();
        if (next !== undefined) expect(next).toBeGreaterThanOrEqual(0);
      }
      // everything expires in the end
      check(c.tick(now + 10 * 4500 * 1000).events);
      expect(up.size).toBe(0);
      expect(c.size).toEqual({ instances: 0, records: 0 });
    }), { numRuns: 300 });
  });
});
