/**
 * What a packet costs the mDNS browser's pure path (isPlausibleResponse → dns-packet decode →
 * extractRecords → MobdevCache.ingest), with the cache full, for the traffic a hostile or busy LAN sends.
 * Not a test: it prints a table. Run with `npm run bench:mdns`.
 *
 *   foreign:     responses for other services (AirPlay, printers): decoded, then ignored
 *   re-announce: one of the tracked phones announcing again (the common case)
 *   new fakes:   fresh instances from one host, refused by the per-source cap
 *   spoofed:     fresh instances from ever-changing sources, refused by the instance cap
 *   garbage:     bytes that do not decode
 */
import * as dnsPacket from 'dns-packet';
import { MobdevCache } from '../src/network/mdns-cache.js';
import { extractRecords, isPlausibleResponse } from '../src/network/mdns-records.js';

const SVC = '_apple-mobdev2._tcp.local';
const N = Number(process.env['MDNS_BENCH_PACKETS'] ?? 200_000);
const IFACE = { name: 'eth0', index: 2 };

function phonePacket(label: string, host: string, address: string): Buffer {
  const name = `${label}.${SVC}`;
  return dnsPacket.encode({
    type: 'response',
    answers: [{ name: SVC, type: 'PTR', ttl: 4500, data: name }],
    additionals: [
      { name, type: 'SRV', ttl: 120, flush: true, data: { port: 62078, target: host } },
      { name, type: 'TXT', ttl: 4500, flush: true, data: ['identifier=2E6C0D3B-7A4F-4E51-9C3A-5B1D2F7E8A90', 'authTag=o1Kp90oTquI=', 'authTag#1=AAAAAAAAAAA='] },
      { name: host, type: 'A', ttl: 120, flush: true, data: address },
      { name: host, type: 'AAAA', ttl: 120, flush: true, data: 'fe80::1c2:3ff:fe04:506' },
    ],
  });
}

function fullCache(): MobdevCache {
  const c = new MobdevCache();
  // 256 instances (the cap) from 16 hosts, 16 each (the per-source cap)
  for (let i = 0; i < 256; i++) {
    const pkt = dnsPacket.decode(phonePacket(`aa:bb:cc:dd:${(i >> 8).toString(16)}:${(i & 255).toString(16)}@fe80::${i.toString(16)}`, `p${i}.local`, `10.0.${i >> 4}.${i & 15}`));
    c.ingest(extractRecords(pkt).records, IFACE, 0, `10.0.${i >> 4}.1`);
  }
  return c;
}

function run(name: string, make: (i: number) => { buf: Buffer; source: string }): void {
  const cache = fullCache();
  const packets = Array.from({ length: 1024 }, (_, i) => make(i));
  const t0 = process.hrtime.bigint();
  let events = 0;
  for (let i = 0; i < N; i++) {
    const { buf, source } = packets[i % packets.length]!;
    if (!isPlausibleResponse(buf)) continue;
    let decoded: unknown;
    try {
      decoded = dnsPacket.decode(buf);
    } catch {
      continue;
    }
    const { records } = extractRecords(decoded, (n) => cache.isTarget(n));
    if (records.length > 0) events += cache.ingest(records, IFACE, 1000 + i / 1000, source).events.length;
  }
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`| ${name.padEnd(12)} | ${(N / s / 1000).toFixed(1).padStart(8)} | ${((s / N) * 1e6).toFixed(2).padStart(8)} | ${String(cache.size.instances).padStart(9)} | ${String(events).padStart(6)} |`);
}

console.log(`${N} packets per row, cache holding 256 instances (the cap)\n`);
console.log('| traffic      | kpkt/s   | µs/pkt   | instances | events |');
console.log('| ---          | ---:     | ---:     | ---:      | ---:   |');
run('foreign', (i) => ({
  buf: dnsPacket.encode({ type: 'response', answers: [{ name: '_airplay._tcp.local', type: 'PTR', ttl: 4500, data: `tv${i}._airplay._tcp.local` }], additionals: [{ name: `tv${i}.local`, type: 'A', ttl: 120, data: '10.9.9.9' }] }),
  source: '10.9.9.9',
}));
run('re-announce', (i) => ({ buf: phonePacket(`aa:bb:cc:dd:0:${(i & 255).toString(16)}@fe80::${(i & 255).toString(16)}`, `p${i & 255}.local`, `10.0.${(i & 255) >> 4}.${i & 15}`), source: `10.0.${(i & 255) >> 4}.1` }));
run('new fakes', (i) => ({ buf: phonePacket(`fake-${i}@fe80::1`, `f${i}.local`, '10.66.0.1'), source: '10.66.0.1' }));
run('spoofed', (i) => ({ buf: phonePacket(`fake-${i}@fe80::1`, `f${i}.local`, '10.66.0.1'), source: `10.66.${i >> 8}.${i & 255}` }));
run('garbage', (i) => ({ buf: Buffer.from(`\u0000\u0000\u0084\u0000garbage ${i}`, 'latin1'), source: '10.66.0.1' }));
run('queries', (i) => ({ buf: dnsPacket.encode({ type: 'query', questions: [{ name: `host${i}.local`, type: 'A' }] }), source: '10.9.9.9' }));
