import type { RemoteInfo } from 'node:dgram';
import type { Answer, Question } from 'dns-packet';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Mobdev2Advertiser } from './mdns-advertiser.js';
import type { MdnsTransport } from './mdns-advertiser.js';
import type { Mobdev2Advert } from './mdns-records.js';

interface Sent {
  readonly answers: Answer[];
  readonly additionals: Answer[] | undefined;
  readonly to: { port: number; address: string } | undefined;
  readonly id: number | undefined;
}

/** A transport that records what the advertiser sends and lets the test deliver queries. */
class FakeTransport implements MdnsTransport {
  readonly sent: Sent[] = [];
  destroyed = false;
  private onQueryListener: ((packet: { id?: number; questions?: Question[] }, rinfo: RemoteInfo) => void) | undefined;

  on(event: string, listener: never): this {
    if (event === 'query') this.onQueryListener = listener;
    return this;
  }

  respond(packet: { id?: number; answers: Answer[]; additionals?: Answer[] }, rinfo?: { port: number; address: string }, cb?: (err: Error | null) => void): void {
    this.sent.push({ answers: packet.answers, additionals: packet.additionals, to: rinfo, id: packet.id });
    cb?.(null);
  }

  destroy(cb?: () => void): void {
    this.destroyed = true;
    cb?.();
  }

  query(questions: Question[], port = 5353, id = 0): void {
    this.onQueryListener?.({ id, questions }, { address: '10.7.0.1', family: 'IPv4', port, size: 40 });
  }

  take(): Sent[] {
    return this.sent.splice(0);
  }
}

const ADVERT: Mobdev2Advert = { instance: 'a4:c3:f0:12:34:56@fe80::1', host: 'iPhone-123456.local', port: 62078, ipv4: ['10.7.0.2'], ipv6: ['fe80::1'], txt: [] };
const BROWSE: Question[] = [{ name: '_apple-mobdev2._tcp.local', type: 'PTR' }];

function make(): { adv: Mobdev2Advertiser; v4: FakeTransport; v6: FakeTransport } {
  const v4 = new FakeTransport();
  const v6 = new FakeTransport();
  const adv = new Mobdev2Advertiser({ advert: ADVERT, families: 'dual', transport: (family) => (family === 'ipv4' ? v4 : v6) });
  return { adv, v4, v6 };
}

const ttlOf = (a: Answer): number => (a as { ttl?: number }).ttl ?? -1;
const dataOf = (a: Answer | undefined): unknown => (a as { data?: unknown } | undefined)?.data;
const ttls = (sent: Sent[]): number[] => sent.flatMap((s) => s.answers.map(ttlOf));

describe('mobdev2 advertiser', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('announces 3 times (0, 1 s, 3 s) on both families, then only answers queries', () => {
    const { adv, v4, v6 } = make();
    adv.start();
    expect(adv.state).toBe('ANNOUNCING');
    expect(v4.take()).toHaveLength(1);
    expect(v6.take()).toHaveLength(1);
    vi.advanceTimersByTime(1000);
    expect(v4.take()).toHaveLength(1);
    vi.advanceTimersByTime(2000);
    expect(v4.take()).toHaveLength(1);
    expect(adv.state).toBe('ANNOUNCED');
    expect(v6.take()).toHaveLength(2);
    vi.advanceTimersByTime(60_000);
    expect(v4.take()).toHaveLength(0);
    v4.query(BROWSE);
    const [reply] = v4.take();
    expect(reply?.answers.map((a) => a.type)).toEqual(['PTR']);
    expect(reply?.to).toBeUndefined(); // multicast
    expect(v6.take()).toHaveLength(0); // answered on the family it was asked on
    expect(adv.stats).toMatchObject({ announcements: 3, queries: 1, answered: 1 });
  });

  it('answers a legacy query (source port not 5353) by unicast with its ID', () => {
    const { adv, v4 } = make();
    adv.start();
    v4.take();
    v4.query(BROWSE, 40_000, 77);
    expect(v4.take()).toMatchObject([{ to: { port: 40_000, address: '10.7.0.1' }, id: 77 }]);
  });

  it('silence: no answers, no goodbye; speak: announces again', () => {
    const { adv, v4 } = make();
    adv.start();
    v4.take();
    adv.silence();
    vi.advanceTimersByTime(5000);
    v4.query(BROWSE);
    expect(v4.take()).toEqual([]);
    adv.speak();
    expect(ttls(v4.take()).every((t) => t > 0)).toBe(true);
  });

  it('goodbye sends every record with TTL 0 and answers nothing until advertise()', async () => {
    const { adv, v4, v6 } = make();
    adv.start();
    v4.take();
    v6.take();
    await adv.goodbye();
    expect(adv.state).toBe('GONE');
    expect(ttls(v4.take())).toEqual([0, 0, 0, 0, 0]);
    expect(ttls(v6.take())).toEqual([0, 0, 0, 0, 0]);
    v4.query(BROWSE);
    expect(v4.take()).toEqual([]);
    adv.advertise();
    expect(adv.state).toBe('ANNOUNCING');
  });

  it('an IP change: goodbye for the old address only, then the new records', () => {
    const { adv, v4 } = make();
    adv.start();
    vi.advanceTimersByTime(10_000);
    v4.take();
    adv.update({ ...ADVERT, ipv4: ['10.7.0.9'] });
    const [bye, hello] = v4.take();
    expect(bye?.answers).toEqual([{ name: 'iPhone-123456.local', type: 'A', ttl: 0, data: '10.7.0.2' }]);
    expect(dataOf(hello?.answers.find((a) => a.type === 'A'))).toBe('10.7.0.9');
  });

  it('a new instance name (another MAC) withdraws the old instance entirely', () => {
    const { adv, v4 } = make();
    adv.start();
    v4.take();
    adv.update({ ...ADVERT, instance: '06:11:22:33:44:55@fe80::1' });
    const [bye, hello] = v4.take();
    expect(bye?.answers.map((a) => [a.type, ttlOf(a)])).toEqual([['PTR', 0], ['SRV', 0], ['TXT', 0], ['A', 0], ['AAAA', 0]]);
    expect(dataOf(bye?.answers[0])).toBe('a4:c3:f0:12:34:56@fe80::1._apple-mobdev2._tcp.local');
    expect(dataOf(hello?.answers[0])).toBe('06:11:22:33:44:55@fe80::1._apple-mobdev2._tcp.local');
  });

  it('stop: goodbye, then the sockets close; a silent stop sends nothing', async () => {
    const a = make();
    a.adv.start();
    a.v4.take();
    await a.adv.stop();
    expect(ttls(a.v4.take())).toEqual([0, 0, 0, 0, 0]);
    expect(a.v4.destroyed && a.v6.destroyed).toBe(true);
    const b = make();
    b.adv.start();
    b.v4.take();
    b.adv.silence();
    await b.adv.stop();
    expect(b.v4.take()).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });
});
