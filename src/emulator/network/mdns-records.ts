/**
 * The records of a phone's `_apple-mobdev2._tcp.local` advert and the answers to mDNS questions
 * about it (RFC 6762/6763). Pure functions; the advertiser (mdns-advertiser.ts) does the sending.
 *
 *   _apple-mobdev2._tcp.local              PTR  <instance>._apple-mobdev2._tcp.local   (shared)
 *   <instance>._apple-mobdev2._tcp.local   SRV  0 0 <port> <host>                       (unique)
 *   <instance>._apple-mobdev2._tcp.local   TXT  identifier=…, authTag=…, authTag#1=…     (unique)
 *   <host>                                 A / AAAA                                      (unique)
 *   _services._dns-sd._udp.local           PTR  _apple-mobdev2._tcp.local               (shared)
 *
 * `<instance>` is `<MAC>@<IPv6 link-local address without zone>` (wifi-devices.md §1.2). TTLs are
 * mDNSResponder's (PTR and TXT 4500 s, SRV and addresses 120 s); unique records carry the
 * cache-flush bit in multicast answers. A goodbye is the same records with TTL 0.
 */
import type { Answer, Question } from 'dns-packet';

export const MOBDEV2_SERVICE = '_apple-mobdev2._tcp.local';
export const SERVICES_META = '_services._dns-sd._udp.local';
export const TTL_SHARED = 4500;
export const TTL_HOST = 120;

export interface Mobdev2Advert {
  /** The instance label: `<mac>@<fe80 address>`. */
  readonly instance: string;
  /** The SRV target, e.g. `iPhone-123456.local`. */
  readonly host: string;
  /** The SRV port (62078: every client dials lockdownd there anyway). */
  readonly port: number;
  readonly ipv4: readonly string[];
  /** Without zone. */
  readonly ipv6: readonly string[];
  /** TXT strings; none gives the single empty string DNS-SD requires. */
  readonly txt: readonly Buffer[];
}

export function instanceFqdn(advert: Pick<Mobdev2Advert, 'instance'>): string {
  return `${advert.instance}.${MOBDEV2_SERVICE}`;
}

function same(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}

interface Records {
  readonly ptr: Answer;
  readonly srv: Answer;
  readonly txt: Answer;
  readonly addresses: Answer[];
  readonly meta: Answer;
}

function records(advert: Mobdev2Advert, goodbye: boolean, flush: boolean): Records {
  const ttl = (live: number): number => (goodbye ? 0 : live);
  const fqdn = instanceFqdn(advert);
  return {
    ptr: { name: MOBDEV2_SERVICE, type: 'PTR', ttl: ttl(TTL_SHARED), data: fqdn },
    srv: { name: fqdn, type: 'SRV', ttl: ttl(TTL_HOST), flush, data: { priority: 0, weight: 0, port: advert.port, target: advert.host } },
    txt: { name: fqdn, type: 'TXT', ttl: ttl(TTL_SHARED), flush, data: advert.txt.length > 0 ? [...advert.txt] : [Buffer.alloc(0)] },
    addresses: [
      ...advert.ipv4.map((ip): Answer => ({ name: advert.host, type: 'A', ttl: ttl(TTL_HOST), flush, data: ip })),
      ...advert.ipv6.map((ip): Answer => ({ name: advert.host, type: 'AAAA', ttl: ttl(TTL_HOST), flush, data: ip })),
    ],
    meta: { name: SERVICES_META, type: 'PTR', ttl: ttl(TTL_SHARED), data: MOBDEV2_SERVICE },
  };
}

/** An unsolicited announcement (or, with `goodbye`, its TTL-0 withdrawal): every record as an answer. */
export function announcement(advert: Mobdev2Advert, goodbye = false): Answer[] {
  const r = records(advert, goodbye, !goodbye);
  return [r.ptr, r.srv, r.txt, ...r.addresses];
}

/** TTL-0 records for addresses the advert no longer has (an IP change keeps the instance). */
export function addressGoodbye(host: string, ipv4: readonly string[], ipv6: readonly string[]): Answer[] {
  return [...ipv4.map((ip): Answer => ({ name: host, type: 'A', ttl: 0, data: ip })), ...ipv6.map((ip): Answer => ({ name: host, type: 'AAAA', ttl: 0, data: ip }))];
}

/**
 * The question's class: IN or ANY, with or without the unicast-response bit (dns-packet 5 leaves
 * that bit in the class and names it UNKNOWN_32769 / UNKNOWN_33023).
 */
function classMatches(question: Question): boolean {
  const klass: string = question.class ?? 'IN';
  return klass === 'IN' || klass === 'ANY' || klass === 'UNKNOWN_32769' || klass === 'UNKNOWN_33023';
}

export interface QueryAnswer {
  readonly answers: Answer[];
  readonly additionals: Answer[];
}

/**
 * What the phone answers to `questions`, or undefined when none concerns it. `unicast` (a legacy
 * query from a port other than 5353) drops the cache-flush bit, as RFC 6762 §6.7 asks.
 */
export function answerQuestions(advert: Mobdev2Advert, questions: readonly Question[], unicast = false): QueryAnswer | undefined {
  const r = records(advert, false, !unicast);
  const answers = new Set<Answer>();
  const additionals = new Set<Answer>();
  const fqdn = instanceFqdn(advert);
  for (const q of questions) {
    if (!classMatches(q)) continue;
    const type: string = q.type;
    const any = type === 'ANY';
    if (same(q.name, MOBDEV2_SERVICE) && (type === 'PTR' || any)) {
      answers.add(r.ptr);
      for (const rec of [r.srv, r.txt, ...r.addresses]) additionals.add(rec);
    } else if (same(q.name, SERVICES_META) && (type === 'PTR' || any)) {
      answers.add(r.meta);
    } else if (same(q.name, fqdn)) {
      if (type === 'SRV' || any) answers.add(r.srv);
      if (type === 'TXT' || any) answers.add(r.txt);
      if (answers.has(r.srv)) for (const rec of r.addresses) additionals.add(rec);
    } else if (same(q.name, advert.host)) {
      for (const rec of r.addresses) if (any || rec.type === type) answers.add(rec);
    }
  }
  if (answers.size === 0) return undefined;
  for (const rec of answers) additionals.delete(rec);
  return { answers: [...answers], additionals: [...additionals] };
}
