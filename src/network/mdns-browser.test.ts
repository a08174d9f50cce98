// The browser over real UDP multicast on loopback (IPv4 pinned to 127.0.0.1, which works without
// lo's MULTICAST flag), on a random port so it never meets the LAN's or other tests' mDNS.
// IPv6, port 5353 and avahi are covered across network namespaces in
// test/integration/mdns-browser-netns.test.ts.
import { createSocket } from 'node:dgram';
import * as dnsPacket from 'dns-packet';
import makeMdns from 'multicast-dns';
import type { MulticastDNS } from 'multicast-dns';
import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { silentLogger } from '../log.js';
import { MdnsBrowser } from './mdns-browser.js';
import type { DownReason, MobdevAdvert } from './mdns-browser.js';

const SVC = '_apple-mobdev2._tcp.local';

interface FakePhone {
  readonly mdns: MulticastDNS;
  instance: string;
  address: string;
  queries: number;
  /** Said goodbye: answers no more queries. */
  gone: boolean;
  announce(ttl?: number): void;
  close(): Promise<void>;
}

function records(instance: string, address: string, ttl: number, host = 'fake-iphone.local'): dnsPacket.Answer[] {
  const name = `${instance}.${SVC}`;
  return [
    { name: SVC, type: 'PTR', ttl: ttl === 0 ? 0 : 4500, data: name },
    { name, type: 'SRV', ttl, flush: true, data: { port: 62078, target: host } },
    { name, type: 'TXT', ttl: ttl === 0 ? 0 : 4500, flush: true, data: ['identifier=2E6C0D3B-7A4F-4E51-9C3A-5B1D2F7E8A90', 'authTag=o1Kp90oTquI='] },
    { name: host, type: 'A', ttl, flush: true, data: address },
  ];
}

function fakePhone(port: number, instance = 'aa:bb:cc:dd:ee:01@fe80::1', address = '127.0.0.1'): FakePhone {
  const mdns = makeMdns({ port, interface: '127.0.0.1', bind: '0.0.0.0' });
  const phone: FakePhone = {
    mdns,
    instance,
    address,
    queries: 0,
    gone: false,
    announce(ttl = 120) {
      phone.gone = ttl === 0;
      const [ptr, ...rest] = records(phone.instance, phone.address, ttl);
      mdns.respond({ answers: [ptr!], additionals: rest });
    },
    close: () => new Promise((resolve) => { mdns.destroy(() => { resolve(); }); }),
  };
  mdns.on('query', (q) => {
    if (phone.gone || !(q.questions ?? []).some((x) => x.name.toLowerCase() === SVC && x.type === 'PTR')) return;
    phone.queries++;
    if ((q.answers ?? []).some((a) => a.type === 'PTR' && a.data === `${phone.instance}.${SVC}`)) return; // known answer
    phone.announce();
  });
  return phone;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function browser(port: number, extra: Partial<ConstructorParameters<typeof MdnsBrowser>[0]> = {}): MdnsBrowser {
  const b = new MdnsBrowser({ log: silentLogger(), port, interfaces: ['lo'], includeInternal: true, families: [4], ...extra });
  cleanups.push(() => b.stop());
  return b;
}

function next<K extends 'up' | 'changed' | 'down' | 'seen'>(b: MdnsBrowser, event: K): Promise<K extends 'down' ? [MobdevAdvert, DownReason] : [MobdevAdvert]> {
  return new Promise((resolve) => {
    b.once(event, ((...args: unknown[]) => { resolve(args as never); }) as never);
  });
}

const randomPort = (): number => 20_000 + Math.floor(Math.random() * 30_000);

describe('MdnsBrowser (loopback, IPv4)', () => {
  it('queries at start and reports the phone up with its address, TXT and interface', async () => {
    const port = randomPort();
    const phone = fakePhone(port);
    cleanups.push(() => phone.close());
    const b = browser(port);
    const t0 = performance.now();
    const up = next(b, 'up');
    b.start();
    const [advert] = await up;
    const ms = performance.now() - t0;
    console.log(`start → up over loopback: ${ms.toFixed(1)} ms`);
    expect(phone.queries).toBeGreaterThanOrEqual(1);
    expect(advert.instance).toBe(phone.instance);
    expect(advert.mac).toBe('aa:bb:cc:dd:ee:01');
    expect(advert.identifier?.toString()).toBe('2E6C0D3B-7A4F-4E51-9C3A-5B1D2F7E8A90');
    expect(advert.addresses).toEqual([{ family: 4, address: '127.0.0.1', interfaceName: 'lo', interfaceIndex: 1, host: '127.0.0.1', ttl: 120 }]);
    expect(b.adverts()).toHaveLength(1);
  });

  it('a re-announcement with nothing changed is "seen" (the phone is there now), not "changed"', async () => {
    const port = randomPort();
    const b = browser(port);
    b.start();
    await new Promise((r) => setTimeout(r, 100));
    const phone = fakePhone(port, 'aa:bb:cc:dd:ee:05@fe80::5', '127.0.0.5');
    cleanups.push(() => phone.close());
    const up = next(b, 'up');
    phone.announce();
    await up;
    let changes = 0;
    b.on('changed', () => { changes++; });
    const seen = next(b, 'seen');
    phone.announce();
    const [advert] = await seen;
    expect(advert.instance).toBe(phone.instance);
    expect(changes).toBe(0);
    // a goodbye is not a sign of life
    let seenAfter = 0;
    b.on('seen', () => { seenAfter++; });
    const down = next(b, 'down');
    phone.announce(0);
    await down;
    expect(seenAfter).toBe(0);
  });

  it('sees an unsolicited announcement, an address change, and a goodbye (down 1 s later)', async () => {
    const port = randomPort();
    const b = browser(port);
    b.start();
    await new Promise((r) => setTimeout(r, 100));
    const phone = fakePhone(port, 'aa:bb:cc:dd:ee:02@fe80::2', '127.0.0.2');
    cleanups.push(() => phone.close());
    const up = next(b, 'up');
    const t0 = performance.now();
    phone.announce();
    await up;
    console.log(`announce → up over loopback: ${(performance.now() - t0).toFixed(1)} ms`);

    const changed = next(b, 'changed');
    phone.address = '127.0.0.3';
    phone.announce();
    const [adv] = await changed;
    expect(adv.addresses.map((a) => a.address)).toContain('127.0.0.3');

    const down = next(b, 'down');
    const t1 = performance.now();
    phone.announce(0);
    const [gone, reason] = await down;
    const waited = performance.now() - t1;
    expect(reason).toBe('goodbye');
    expect(gone.instance).toBe(phone.instance);
    expect(waited).toBeGreaterThanOrEqual(900);
    expect(b.adverts()).toEqual([]);
  });

  it('shares the port with another socket bound to it first (as beside avahi-daemon)', async () => {
    const port = randomPort();
    const other = createSocket({ type: 'udp4', reuseAddr: true });
    await new Promise<void>((r) => other.bind(port, '0.0.0.0', r));
    other.addMembership('224.0.0.251', '127.0.0.1');
    let otherGot = 0;
    other.on('message', () => { otherGot++; });
    cleanups.push(() => new Promise((r) => { other.close(() => { r(); }); }));
    const phone = fakePhone(port);
    cleanups.push(() => phone.close());
    const b = browser(port);
    const up = next(b, 'up');
    b.start();
    await up;
    expect(otherGot).toBeGreaterThan(0);
  });

  it('survives hostile traffic: garbage, a flood of fake instances from one host, and still finds the phone', async () => {
    const port = randomPort();
    const b = browser(port);
    b.start();
    await new Promise((r) => setTimeout(r, 100));
    const attacker = createSocket({ type: 'udp4', reuseAddr: true });
    await new Promise<void>((r) => attacker.bind(0, '127.0.0.9', r));
    attacker.setMulticastInterface('127.0.0.1');
    cleanups.push(() => new Promise((r) => { attacker.close(() => { r(); }); }));
    const send = (buf: Buffer): Promise<void> => new Promise((r) => { attacker.send(buf, port, '224.0.0.251', () => { r(); }); });
    await send(Buffer.from('not dns at all'));
    await send(Buffer.alloc(0));
    await send(Buffer.from('000084000000000100000000c00c', 'hex')); // pointer to itself
    for (let i = 0; i < 300; i++) {
      const [ptr, ...rest] = records(`fake-${i}@fe80::${i.toString(16)}`, '127.0.0.9', 4500, `fake${i}.local`);
      await send(dnsPacket.encode({ type: 'response', answers: [ptr!], additionals: rest }));
    }
    await new Promise((r) => setTimeout(r, 200));
    expect(b.stats.malformed).toBeGreaterThanOrEqual(1); // the non-response garbage is screened out silently
    expect(b.stats.refusedRecords).toBeGreaterThan(0);
    expect(b.adverts().length).toBeLessThanOrEqual(16);

    const phone = fakePhone(port, 'aa:bb:cc:dd:ee:03@fe80::3', '127.0.0.1');
    cleanups.push(() => phone.close());
    const up = next(b, 'up');
    phone.announce();
    const [advert] = await up;
    expect(advert.instance).toBe(phone.instance);
  });

  it('drops a response from a source on none of our links (RFC 6762 §11)', async () => {
    const port = randomPort();
    const lo = { address: '127.0.0.1', netmask: '255.255.255.255', family: 'IPv4' as const, mac: '00:00:00:00:00:00', internal: true, cidr: '127.0.0.1/32' };
    const b = browser(port, { interfaceSource: () => ({ lo: [lo] }) });
    b.start();
    await new Promise((r) => setTimeout(r, 100));
    const offLink = createSocket({ type: 'udp4', reuseAddr: true });
    await new Promise<void>((r) => offLink.bind(0, '127.0.0.9', r));
    offLink.setMulticastInterface('127.0.0.1');
    cleanups.push(() => new Promise((r) => { offLink.close(() => { r(); }); }));
    const [ptr, ...rest] = records('spoof@fe80::9', '127.0.0.9', 120);
    await new Promise<void>((r) => { offLink.send(dnsPacket.encode({ type: 'response', answers: [ptr!], additionals: rest }), port, '224.0.0.251', () => { r(); }); });
    await new Promise((r) => setTimeout(r, 100));
    expect(b.stats.unknownInterface).toBeGreaterThanOrEqual(1);
    expect(b.adverts()).toEqual([]);
    const phone = fakePhone(port); // sends from 127.0.0.1, on the /32
    cleanups.push(() => phone.close());
    const up = next(b, 'up');
    phone.announce();
    expect((await up)[0].instance).toBe(phone.instance);
  });

  it('a port held without SO_REUSEADDR: an error is logged, the browser keeps retrying and stops cleanly', async () => {
    const port = randomPort();
    const exclusive = createSocket({ type: 'udp4', reuseAddr: false });
    await new Promise<void>((r) => exclusive.bind(port, '0.0.0.0', r));
    cleanups.push(() => new Promise((r) => { exclusive.close(() => { r(); }); }));
    const lines: string[] = [];
    const log = pino({ level: 'warn' }, { write: (l: string) => { lines.push(l); } });
    const b = new MdnsBrowser({ log, port, interfaces: ['lo'], includeInternal: true, families: [4] });
    b.start();
    await new Promise((r) => setTimeout(r, 200));
    expect(lines.filter((l) => l.includes('cannot bind UDP') && l.includes('EADDRINUSE'))).toHaveLength(1);
    expect(b.stats.queriesSent).toBe(0);
    await b.stop();
  });

  it('honours TTLs: refreshed at 80 % while the phone answers, down (expired) once it falls silent', async () => {
    const port = randomPort();
    const phone = fakePhone(port, 'aa:bb:cc:dd:ee:04@fe80::4');
    cleanups.push(() => phone.close());
    // a phone with 3 s records that answers every question about them
    const ttl = 3;
    let answered = 0;
    let silent = false;
    phone.mdns.removeAllListeners('query');
    phone.mdns.on('query', (q) => {
      if (silent) return;
      // like a real responder: a browse query that already knows our PTR gets no answer (known-answer
      // suppression), so the records stay alive only through the browser's own refresh questions
      const browse = (q.questions ?? []).some((x) => x.type === 'PTR');
      const known = (q.answers ?? []).some((a) => a.type === 'PTR' && a.data === `${phone.instance}.${SVC}`);
      if (browse && known) return;
      if (!browse) answered++;
      const [ptr, ...rest] = records(phone.instance, phone.address, ttl);
      phone.mdns.respond({ answers: [ptr!], additionals: rest });
    });
    const b = browser(port);
    const up = next(b, 'up');
    b.start();
    await up;
    let downs = 0;
    b.on('down', () => { downs++; });
    await new Promise((r) => setTimeout(r, 3 * ttl * 1000));
    expect(downs).toBe(0); // outlived its records thrice: each was refreshed before it expired
    expect(answered).toBeGreaterThanOrEqual(3); // refresh questions (SRV, A) at 80 % of 3 s
    silent = true;
    const down = next(b, 'down');
    const t0 = performance.now();
    const [, reason] = await down;
    expect(reason).toBe('expired');
    expect(performance.now() - t0).toBeLessThanOrEqual(ttl * 1000 + 1500); // its TTL, plus timer slack under load
  }, 20_000);

  it('resolve(instance) asks the phone directly for its records, which a browse query would not', async () => {
    const port = randomPort();
    const phone = fakePhone(port, 'aa:bb:cc:dd:ee:05@fe80::5', '127.0.0.5');
    cleanups.push(() => phone.close());
    const asked: string[] = [];
    phone.mdns.on('query', (q) => {
      for (const x of q.questions ?? []) {
        if (x.type === 'PTR') continue;
        asked.push(`${x.type} ${x.name}`);
        if (x.type === 'SRV') {
          const [, ...rest] = records(phone.instance, phone.address, 120);
          phone.mdns.respond({ answers: rest });
        }
      }
    });
    const b = browser(port);
    const up = next(b, 'up');
    b.start();
    await up;
    const changed = next(b, 'changed');
    phone.address = '127.0.0.6'; // moved, and does not announce it
    b.resolve(phone.instance);
    const [advert] = await changed;
    expect(advert.addresses.map((a) => a.address)).toContain('127.0.0.6');
    expect(asked).toEqual(expect.arrayContaining([`SRV ${phone.instance}.${SVC}`, `TXT ${phone.instance}.${SVC}`, 'A fake-iphone.local', 'AAAA fake-iphone.local']));
  });

  it('a listener that throws does not stop the browser', async () => {
    const port = randomPort();
    const phone = fakePhone(port);
    cleanups.push(() => phone.close());
    const b = browser(port);
    const up = next(b, 'up');
    b.on('up', () => { throw new Error('listener bug'); });
    b.start();
    await up;
    const changed = next(b, 'changed');
    phone.address = '127.0.0.4';
    phone.announce();
    await changed;
  });
});
