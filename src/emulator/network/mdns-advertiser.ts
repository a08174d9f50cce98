/**
 * The phone's mDNS responder for `_apple-mobdev2._tcp.local` (records in mdns-records.ts), on
 * multicast-dns sockets: IPv4 224.0.0.251 and IPv6 ff02::fb, port 5353, beside any avahi-daemon.
 *
 *   ( new ) --start()--> [ ANNOUNCING ] --`announcements` sent, `announceIntervalMs` apart--> [ ANNOUNCED ]
 *                             ^   |                                                              |
 *                             |   +-------- answers queries in both states ----------------------+
 *                             |  update(advert) / reannounce(): goodbye for what went, announce again
 *   [ SILENT ] <-- silence(): nothing answered, nothing sent, no goodbye (a radio gone quiet)
 *       |  speak(): announce again
 *   [ GONE ] <-- goodbye(): every record with TTL 0; answers nothing until advertise()
 *   [ STOPPED ] <-- stop(): goodbye (unless SILENT or GONE), sockets closed
 *
 * Sockets: with `interfaceName` both families are pinned to that interface (IPv4: its address,
 * which is re-read and the socket re-made when it changes; IPv6: `::%name`, which IPv6 multicast
 * needs); without it only IPv4 runs, on every interface (multicast-dns's default). A query from a
 * port other than 5353 is answered by unicast to its sender (legacy, RFC 6762 §6.7); every other
 * answer is multicast at once (no random delay: tests and hosts see the phone sooner). No probing.
 */
import { createSocket } from 'node:dgram';
import type { RemoteInfo } from 'node:dgram';
import { networkInterfaces } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Answer, Question } from 'dns-packet';
import multicastDns from 'multicast-dns';
import { InvalidConfigError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { addressGoodbye, announcement, answerQuestions, instanceFqdn } from './mdns-records.js';
import type { Mobdev2Advert } from './mdns-records.js';

export const MDNS_PORT = 5353;
export type AdvertFamilies = 'dual' | 'ipv4' | 'ipv6';
export type AdvertiserState = 'IDLE' | 'ANNOUNCING' | 'ANNOUNCED' | 'SILENT' | 'GONE' | 'STOPPED';

/** What the advertiser needs of a multicast-dns instance (tests pass their own). */
export interface MdnsTransport {
  on(event: 'query', listener: (packet: { id?: number; questions?: Question[] }, rinfo: RemoteInfo) => void): unknown;
  on(event: 'warning' | 'error', listener: (err: Error) => void): unknown;
  respond(packet: { id?: number; questions?: Question[]; answers: Answer[]; additionals?: Answer[] }, rinfo?: { port: number; address: string }, cb?: (err: Error | null) => void): void;
  destroy(cb?: () => void): void;
}

export interface AdvertiserOptions {
  readonly advert: Mobdev2Advert;
  /** Pin the sockets to this interface (needed for IPv6). */
  readonly interfaceName?: string;
  /** Which sockets run (default: dual with an interface, else ipv4). */
  readonly families?: AdvertFamilies;
  /** mDNS port (default 5353). */
  readonly port?: number;
  /** Unsolicited announcements per (re)start (default 3; RFC 6762 asks for at least 2). */
  readonly announcements?: number;
  readonly announceIntervalMs?: number;
  readonly log?: Logger;
  /** Make the transport of one family (tests); default: multicast-dns sockets. */
  readonly transport?: (family: 'ipv4' | 'ipv6', ipv4Address: string | undefined) => MdnsTransport;
}

export interface AdvertiserStats {
  queries: number;
  answered: number;
  announcements: number;
  goodbyes: number;
  sendErrors: number;
}

interface Leg {
  readonly family: 'ipv4' | 'ipv6';
  readonly transport: MdnsTransport;
  /** The IPv4 address the socket is pinned to. */
  readonly pinned: string | undefined;
}

/** Wall-clock milliseconds with sub-millisecond precision (comparable across processes). */
export function preciseNow(): number {
  return performance.timeOrigin + performance.now();
}

/** The first IPv4 address of `name` in this network namespace. */
export function interfaceIpv4(name: string): string | undefined {
  return networkInterfaces()[name]?.find((a) => a.family === 'IPv4')?.address;
}

export class Mobdev2Advertiser {
  readonly stats: AdvertiserStats = { queries: 0, answered: 0, announcements: 0, goodbyes: 0, sendErrors: 0 };
  /** When the first announcement of the last (re)start left (preciseNow()). */
  lastAnnouncedAt: number | undefined;
  private stateValue: AdvertiserState = 'IDLE';
  private advertValue: Mobdev2Advert;
  private legs: Leg[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly families: AdvertFamilies;

  constructor(private readonly options: AdvertiserOptions) {
    this.advertValue = options.advert;
    this.families = options.families ?? (options.interfaceName === undefined ? 'ipv4' : 'dual');
    if (this.families !== 'ipv4' && options.interfaceName === undefined && options.transport === undefined) {
      throw new InvalidConfigError('an IPv6 mDNS advert needs an interface name');
    }
  }

  get state(): AdvertiserState {
    return this.stateValue;
  }

  get advert(): Mobdev2Advert {
    return this.advertValue;
  }

  /** Open the sockets and start announcing. */
  start(): void {
    if (this.stateValue !== 'IDLE') return;
    if (this.families !== 'ipv6') this.openLeg('ipv4');
    if (this.families !== 'ipv4') this.openLeg('ipv6');
    this.announce();
  }

  /**
   * A new advert (IP change, other MAC, other TXT): goodbye for the old instance if its name
   * changed, else for the addresses that went; then the new records are announced.
   */
  update(advert: Mobdev2Advert): void {
    const old = this.advertValue;
    this.advertValue = advert;
    if (this.stateValue === 'IDLE' || this.stateValue === 'STOPPED') return;
    this.repinIpv4();
    if (this.stateValue === 'SILENT' || this.stateValue === 'GONE') return;
    if (instanceFqdn(old) !== instanceFqdn(advert) || old.host !== advert.host) {
      void this.send(announcement(old, true), 'goodbye');
    } else {
      const goneV4 = old.ipv4.filter((ip) => !advert.ipv4.includes(ip));
      const goneV6 = old.ipv6.filter((ip) => !advert.ipv6.includes(ip));
      if (goneV4.length + goneV6.length > 0) void this.send(addressGoodbye(old.host, goneV4, goneV6), 'goodbye');
    }
    this.announce();
  }

  /** Announce again (a link that came back up). */
  reannounce(): void {
    if (this.stateValue === 'ANNOUNCING' || this.stateValue === 'ANNOUNCED') this.announce();
  }

  /** Answer nothing and send nothing, without a goodbye. */
  silence(): void {
    if (this.stateValue !== 'ANNOUNCING' && this.stateValue !== 'ANNOUNCED') return;
    this.clearTimer();
    this.stateValue = 'SILENT';
  }

  /** Back from silence(): announce again. */
  speak(): void {
    if (this.stateValue === 'SILENT') this.announce();
  }

  /** Withdraw the advert (TTL 0); resolves once the goodbyes are sent. */
  async goodbye(): Promise<void> {
    if (this.stateValue !== 'ANNOUNCING' && this.stateValue !== 'ANNOUNCED') return;
    this.clearTimer();
    this.stateValue = 'GONE';
    await this.send(announcement(this.advertValue, true), 'goodbye');
  }

  /** Back from goodbye(): announce again. */
  advertise(): void {
    if (this.stateValue === 'GONE') this.announce();
  }

  /** Goodbye (unless silent or gone already) and close the sockets. */
  async stop(): Promise<void> {
    if (this.stateValue === 'STOPPED') return;
    if (this.stateValue === 'ANNOUNCING' || this.stateValue === 'ANNOUNCED') await this.goodbye();
    this.clearTimer();
    this.stateValue = 'STOPPED';
    const legs = this.legs;
    this.legs = [];
    await Promise.all(legs.map((leg) => new Promise<void>((resolve) => { leg.transport.destroy(() => { resolve(); }); })));
  }

  private announce(): void {
    this.clearTimer();
    this.stateValue = 'ANNOUNCING';
    const count = Math.max(1, this.options.announcements ?? 3);
    const interval = this.options.announceIntervalMs ?? 1000;
    let sent = 0;
    const next = (): void => {
      this.timer = undefined;
      if (this.stateValue !== 'ANNOUNCING') return;
      if (sent === 0) this.lastAnnouncedAt = preciseNow();
      void this.send(announcement(this.advertValue), 'announcement');
      sent++;
      if (sent >= count) {
        this.stateValue = 'ANNOUNCED';
        return;
      }
      this.timer = setTimeout(next, interval * 2 ** (sent - 1));
      this.timer.unref();
    };
    next();
  }

  private clearTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private openLeg(family: 'ipv4' | 'ipv6'): void {
    const name = this.options.interfaceName;
    const pinned = family === 'ipv4' && name !== undefined ? interfaceIpv4(name) : undefined;
    if (family === 'ipv4' && name !== undefined && pinned === undefined) {
      this.options.log?.warn({ interface: name }, 'mDNS advertiser: the interface has no IPv4 address; IPv4 socket not opened');
      return;
    }
    const transport = this.options.transport?.(family, pinned) ?? this.makeTransport(family, pinned);
    transport.on('query', (packet, rinfo) => {
      this.onQuery(transport, packet, rinfo);
    });
    const onProblem = (err: Error): void => {
      this.options.log?.warn({ err, family }, 'mDNS advertiser socket problem');
    };
    transport.on('warning', onProblem);
    transport.on('error', onProblem);
    this.legs.push({ family, transport, pinned });
  }

  private makeTransport(family: 'ipv4' | 'ipv6', pinned: string | undefined): MdnsTransport {
    const port = this.options.port ?? MDNS_PORT;
    if (family === 'ipv4') {
      return multicastDns(pinned === undefined ? { port } : { port, interface: pinned, bind: '0.0.0.0' });
    }
    // Our own socket: IPv6-only, so IPv4 datagrams never reach it as mapped addresses.
    const socket = createSocket({ type: 'udp6', reuseAddr: true, ipv6Only: true });
    return multicastDns({ type: 'udp6', ip: 'ff02::fb', interface: `::%${this.options.interfaceName ?? ''}`, bind: '::', port, socket });
  }

  /** The interface's IPv4 address changed: the IPv4 socket is re-made on the new one. */
  private repinIpv4(): void {
    const name = this.options.interfaceName;
    if (name === undefined || this.families === 'ipv6' || this.options.transport !== undefined) return;
    const now = interfaceIpv4(name);
    const leg = this.legs.find((l) => l.family === 'ipv4');
    if (leg?.pinned === now) return;
    if (leg !== undefined) {
      this.legs = this.legs.filter((l) => l !== leg);
      leg.transport.destroy();
    }
    this.openLeg('ipv4');
  }

  private onQuery(transport: MdnsTransport, packet: { id?: number; questions?: Question[] }, rinfo: RemoteInfo): void {
    this.stats.queries++;
    if (this.stateValue !== 'ANNOUNCING' && this.stateValue !== 'ANNOUNCED') return;
    const legacy = rinfo.port !== (this.options.port ?? MDNS_PORT);
    const questions = packet.questions ?? [];
    const reply = answerQuestions(this.advertValue, questions, legacy);
    if (reply === undefined) return;
    this.stats.answered++;
    const done = (err: Error | null): void => {
      if (err !== null) this.sendFailed(err);
    };
    if (legacy) transport.respond({ id: packet.id ?? 0, questions, answers: reply.answers, additionals: reply.additionals }, { port: rinfo.port, address: rinfo.address }, done);
    else transport.respond({ answers: reply.answers, additionals: reply.additionals }, undefined, done);
  }

  private send(answers: Answer[], kind: 'announcement' | 'goodbye'): Promise<void> {
    if (kind === 'announcement') this.stats.announcements++;
    else this.stats.goodbyes++;
    return Promise.all(
      this.legs.map(
        (leg) =>
          new Promise<void>((resolve) => {
            leg.transport.respond({ answers }, undefined, (err) => {
              if (err !== null) this.sendFailed(err);
              resolve();
            });
          }),
      ),
    ).then(() => undefined);
  }

  private sendFailed(err: Error): void {
    // multicast-dns reports a missing multicast route only here (ENETUNREACH): say it once per error.
    this.stats.sendErrors++;
    this.options.log?.warn({ err }, 'mDNS advertiser: send failed');
  }
}
