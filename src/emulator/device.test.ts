import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { HEADER_V1, HEADER_V2, MUX_MAGIC, Protocol, TcpFlag, encodeTcp, encodeVersion } from './codec.js';
import { EmulatedIPhone } from './device.js';
import { HostDriver } from './host-driver.js';
import type { Service, ServiceCloseReason } from './service.js';
import { DISCARD_PORT, ECHO_PORT, SOURCE_PORT, sourceBytes } from './services.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function active(options: ConstructorParameters<typeof EmulatedIPhone>[0] = {}, major = 2): { phone: EmulatedIPhone; host: HostDriver } {
  const phone = new EmulatedIPhone(options);
  const host = new HostDriver(phone);
  host.handshake(major);
  return { phone, host };
}

/** A service that records its lifecycle. */
function recorder(): Service & { events: string[]; reasons: ServiceCloseReason[] } {
  const svc = {
    name: 'recorder',
    events: [] as string[],
    reasons: [] as ServiceCloseReason[],
    onOpen() {
      svc.events.push('open');
    },
    onData(_c: unknown, data: Buffer) {
      svc.events.push(`data:${data.toString()}`);
    },
    onClose(_c: unknown, reason: ServiceCloseReason) {
      svc.events.push('close');
      svc.reasons.push(reason);
    },
  };
  return svc;
}

afterEach(() => {
  vi.useRealTimers();
});

describe('handshake', () => {
  it('v2: answers VERSION with the 8-byte header, accepts SETUP, then uses its own v2 tx_seq', () => {
    const phone = new EmulatedIPhone();
    const host = new HostDriver(phone);
    expect(phone.state).toBe('AWAIT_VERSION');
    phone.receive(encodeVersion({ major: 2, minor: 0, padding: 0 }));
    expect(host.transfers).toEqual([hex('00000000 00000014 00000002 00000000 00000000')]);
    expect(phone.state).toBe('AWAIT_SETUP');
    host.transfers.length = 0;
    host.headerSize = 16;
    phone.receive(hex('00000002 00000011 FEEDFACE 0000 FFFF 07'));
    expect(phone.state).toBe('ACTIVE');
    expect(phone.stats.setups).toBe(1);
    host.txSeq = 1;
    phone.sendControl(7, 'a');
    host.tcp({ sport: 1, dport: 4444, seq: 0, ack: 0, flags: TcpFlag.SYN }); // host tx_seq 1 → RST
    phone.sendControl(7, 'b');
    const seen = host.take();
    expect(seen.map((p) => [p.mux.magic, p.mux.txSeq, p.mux.rxSeq])).toEqual([
      [MUX_MAGIC, 0, 0],
      [MUX_MAGIC, 1, 1],
      [MUX_MAGIC, 2, 1],
    ]);
  });

  it('v1: answers major 1 and keeps the 8-byte header for TCP', () => {
    const { phone, host } = active({ protocolVersion: 1 }, 2);
    expect(phone.state).toBe('ACTIVE');
    expect(phone.version).toBe(1);
    const answer = host.open(ECHO_PORT, 5);
    expect(answer?.raw.length).toBe(HEADER_V1 + 20);
    expect(answer?.tcp?.flags).toBe(TcpFlag.SYN | TcpFlag.ACK);
  });

  it('noVersionReply: stays silent in AWAIT_VERSION', () => {
    const phone = new EmulatedIPhone({ faults: { noVersionReply: true } });
    const host = new HostDriver(phone);
    expect(host.handshake()).toBeUndefined();
    expect(phone.state).toBe('AWAIT_VERSION');
    expect(phone.stats.versionRequests).toBe(1);
    expect(phone.stats.versionReplies).toBe(0);
  });

  it('versionMajor override answers 3 and refuses to go active', () => {
    const phone = new EmulatedIPhone({ faults: { versionMajor: 3 } });
    const host = new HostDriver(phone);
    expect(host.handshake()?.major).toBe(3);
    expect(phone.state).toBe('AWAIT_VERSION');
    host.tcp({ sport: 1, dport: ECHO_PORT, seq: 0, ack: 0, flags: TcpFlag.SYN });
    expect(host.take()).toEqual([]);
    expect(phone.stats.garbageIn).toBe(1);
  });

  it('drops TCP that arrives before SETUP', () => {
    const phone = new EmulatedIPhone();
    const host = new HostDriver(phone);
    phone.receive(encodeVersion({ major: 2, minor: 0, padding: 0 }));
    host.transfers.length = 0;
    host.headerSize = 16;
    host.tcp({ sport: 1, dport: ECHO_PORT, seq: 0, ack: 0, flags: TcpFlag.SYN });
    expect(host.transfers).toEqual([]);
    expect(phone.stats.earlyTcp).toBe(1);
  });

  it('a second VERSION (host daemon restarted) drops connections and handshakes again', () => {
    const svc = recorder();
    const { phone, host } = active({ services: new Map([[1000, svc]]) });
    host.open(1000, 1);
    expect(phone.openConnections).toHaveLength(1);
    host.headerSize = 8;
    expect(host.handshake()?.major).toBe(2);
    expect(phone.openConnections).toHaveLength(0);
    expect(svc.reasons).toEqual(['link-gone']);
    expect(phone.state).toBe('ACTIVE');
  });

  it('counts v2 host tx_seq gaps and wrong magic', () => {
    const { phone, host } = active();
    host.txSeq = 5; // gap: SETUP was 0, next should be 1
    host.tcp({ sport: 1, dport: 4444, seq: 0, ack: 0, flags: TcpFlag.RST });
    expect(phone.stats.hostSeqGaps).toBe(1);
    phone.receive(encodeTcp({ sport: 1, dport: ECHO_PORT, seq: 0, ack: 0, flags: TcpFlag.SYN, window: 0 }, Buffer.alloc(0), { txSeq: 6, rxSeq: 0, magic: 0x12345678 }));
    expect(phone.stats.garbageIn).toBe(1);
    expect(host.transfers).toEqual([]);
  });

  it('sendControl uses the negotiated header', () => {
    const v1 = active({ protocolVersion: 1 });
    v1.phone.sendControl(3, 'oops');
    expect(v1.host.transfers).toEqual([hex('00000001 0000000d 03 6f6f7073')]);
    const v2 = active();
    v2.phone.sendControl(5, 'hm');
    expect(v2.host.transfers).toEqual([hex('00000001 00000013 feedface 0000 0000 05 686d')]);
    expect(v2.phone.stats.controlOut).toBe(1);
  });

  it('disconnect ends connections silently and goes DETACHED; receive is then ignored', () => {
    const svc = recorder();
    const { phone, host } = active({ services: new Map([[1000, svc]]) });
    host.open(1000, 1);
    phone.disconnect();
    expect(phone.state).toBe('DETACHED');
    expect(svc.reasons).toEqual(['link-gone']);
    phone.receive(encodeVersion({ major: 2, minor: 0, padding: 0 }));
    expect(host.take()).toEqual([]);
  });
});

describe('TCP', () => {
  it('SYN to a listening port: SYN|ACK with the phone ISN and ack = host seq + 1', () => {
    const { phone, host } = active({ initialSeq: 0x1000 });
    const answer = host.open(ECHO_PORT, 77);
    expect(answer?.tcp).toEqual({ sport: ECHO_PORT, dport: 77, seq: 0x1000, ack: 1, flags: TcpFlag.SYN | TcpFlag.ACK, window: 131072 });
    expect(phone.stats.connectionsOpened).toBe(1);
    expect(phone.openConnections[0]?.state).toBe('ESTABLISHED');
  });

  it('SYN to a closed port: RST with ports swapped and ack = seq + 1', () => {
    const { phone, host } = active();
    const answer = host.open(4444, 3);
    expect(answer?.tcp).toEqual({ sport: 4444, dport: 3, seq: 0, ack: 1, flags: TcpFlag.RST, window: 0 });
    expect(phone.stats.refused).toBe(1);
    expect(phone.openConnections).toHaveLength(0);
  });

  it('echo: data back with seq/ack, ack piggybacked (no separate bare ACK)', () => {
    const { phone, host } = active();
    host.open(ECHO_PORT, 9);
    host.tcp({ sport: 9, dport: ECHO_PORT, seq: 1, ack: 1, flags: TcpFlag.ACK }, Buffer.from('ping'));
    const seen = host.take();
    expect(seen).toHaveLength(1);
    expect(seen[0]?.tcp).toMatchObject({ seq: 1, ack: 5, flags: TcpFlag.ACK });
    expect(seen[0]?.body.toString()).toBe('ping');
    expect(phone.stats.acksOut).toBe(0);
    expect(phone.stats.tcpBytesIn).toBe(4);
    expect(phone.stats.tcpBytesOut).toBe(4);
  });

  it('discard: counts bytes and ACKs at once with its advertised window', () => {
    const { phone, host } = active({ faults: { window: 65536 } });
    host.open(DISCARD_PORT, 9);
    host.tcp({ sport: 9, dport: DISCARD_PORT, seq: 1, ack: 1, flags: TcpFlag.ACK }, Buffer.alloc(1000));
    const seen = host.take();
    expect(seen.map((p) => p.tcp)).toEqual([{ sport: DISCARD_PORT, dport: 9, seq: 1, ack: 1001, flags: TcpFlag.ACK, window: 65536 }]);
    expect(phone.stats.discardBytes).toBe(1000);
    expect(seen[0]?.raw.readUInt16BE(HEADER_V2 + 14)).toBe(256);
  });

  it.each(['onOpen', 'onData'] as const)('a service whose %s throws gets its connection reset; the phone and other connections go on', (where) => {
    const crashing: Service = {
      name: 'crashing',
      onOpen() {
        if (where === 'onOpen') throw new TypeError('service bug');
      },
      onData() {
        throw new TypeError('service bug');
      },
    };
    const other = recorder();
    const { phone, host } = active({ services: new Map([[1000, crashing], [1001, other]]) });
    host.open(1001, 8);
    host.tcp({ sport: 1, dport: 1000, seq: 0, ack: 0, flags: TcpFlag.SYN, window: 512 });
    const answer = host.take();
    if (where === 'onOpen') {
      expect(answer.map((p) => p.tcp?.flags)).toEqual([TcpFlag.SYN | TcpFlag.ACK, TcpFlag.RST]);
    } else {
      expect(answer.map((p) => p.tcp?.flags)).toEqual([TcpFlag.SYN | TcpFlag.ACK]);
      host.tcp({ sport: 1, dport: 1000, seq: 1, ack: 1, flags: TcpFlag.ACK }, Buffer.from('x'));
      expect(host.take().map((p) => p.tcp?.flags)).toEqual([TcpFlag.RST]);
    }
    expect(phone.stats.serviceFailures).toBe(1);
    expect(phone.stats.rstOut).toBe(1);
    host.tcp({ sport: 8, dport: 1001, seq: 1, ack: 1, flags: TcpFlag.ACK }, Buffer.from('ping'));
    expect(other.events).toEqual(['open', 'data:ping']);
  });

  it('RST from the host closes the connection and tells the service, no reply', () => {
    const svc = recorder();
    const { phone, host } = active({ services: new Map([[1000, svc]]) });
    host.open(1000, 1);
    host.tcp({ sport: 1, dport: 1000, seq: 1, ack: 1, flags: TcpFlag.ACK }, Buffer.from('x'));
    host.take();
    host.tcp({ sport: 1, dport: 1000, seq: 2, ack: 1, flags: TcpFlag.RST });
    expect(host.take()).toEqual([]);
    expect(svc.events).toEqual(['open', 'data:x', 'close']);
    expect(svc.reasons).toEqual(['host-reset']);
    expect(phone.stats.rstIn).toBe(1);
  });

  it('packets for unknown connections get an anonymous RST, unless they are RST', () => {
    const { phone, host } = active();
    host.tcp({ sport: 5, dport: 6, seq: 42, ack: 7, flags: TcpFlag.ACK }, Buffer.from('zz'));
    expect(host.take().map((p) => p.tcp)).toEqual([{ sport: 6, dport: 5, seq: 0, ack: 42, flags: TcpFlag.RST, window: 0 }]);
    host.tcp({ sport: 5, dport: 6, seq: 42, ack: 7, flags: TcpFlag.RST });
    expect(host.take()).toEqual([]);
    expect(phone.stats.unknownConnection).toBe(2);
  });

  it('unexpected flags on an open connection reset it', () => {
    const { phone, host } = active();
    host.open(ECHO_PORT, 1);
    host.tcp({ sport: 1, dport: ECHO_PORT, seq: 1, ack: 1, flags: TcpFlag.FIN | TcpFlag.ACK });
    expect(host.take().map((p) => p.tcp?.flags)).toEqual([TcpFlag.RST]);
    expect(phone.stats.unexpectedFlags).toBe(1);
    expect(phone.openConnections).toHaveLength(0);
  });

  it('counts host data out of sequence, beyond its window, and acks for unsent bytes', () => {
    const { phone, host } = active({ faults: { window: 1024 } });
    host.open(DISCARD_PORT, 1, 131072);
    host.tcp({ sport: 1, dport: DISCARD_PORT, seq: 5, ack: 1, flags: TcpFlag.ACK }, Buffer.alloc(10));
    expect(phone.stats.hostDataSeqErrors).toBe(1);
    host.tcp({ sport: 1, dport: DISCARD_PORT, seq: 11, ack: 1, flags: TcpFlag.ACK }, Buffer.alloc(2000));
    expect(phone.stats.hostWindowViolations).toBe(1);
    host.tcp({ sport: 1, dport: DISCARD_PORT, seq: 2011, ack: 999, flags: TcpFlag.ACK });
    expect(phone.stats.hostBadAcks).toBe(1);
  });
});

describe('flow control toward the host', () => {
  it('source never exceeds host ack + host window; sends more as the host acks', () => {
    const { host } = active();
    host.open(SOURCE_PORT, 1, 1024);
    let seen = host.take();
    expect(seen.reduce((n, p) => n + p.body.length, 0)).toBe(1024);
    expect(Buffer.concat(seen.map((p) => p.body))).toEqual(sourceBytes(0, 1024));
    host.tcp({ sport: 1, dport: SOURCE_PORT, seq: 1, ack: 1 + 512, flags: TcpFlag.ACK, window: 1024 });
    seen = host.take();
    expect(seen.map((p) => [p.tcp?.seq, p.body.length])).toEqual([[1025, 512]]);
    expect(seen[0]?.body).toEqual(sourceBytes(1024, 512));
  });

  it('a zero window stops the phone until the host opens it', () => {
    const { host } = active();
    host.open(SOURCE_PORT, 1, 0);
    expect(host.take()).toEqual([]);
    host.tcp({ sport: 1, dport: SOURCE_PORT, seq: 1, ack: 1, flags: TcpFlag.ACK, window: 256 });
    expect(host.take().map((p) => p.body.length)).toEqual([256]);
  });

  it('property: every data packet stays within the latest host ack + window', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ ackFraction: fc.double({ min: 0, max: 1, noNaN: true }), windowField: fc.integer({ min: 0, max: 40 }) }), { minLength: 1, maxLength: 30 }),
        fc.integer({ min: 100, max: 4000 }),
        (steps, firstWindow) => {
          const { host } = active({ faults: { maxPacket: 2000 } });
          let hostAck = 1;
          let hostWindow = Math.floor(firstWindow / 256) * 256;
          let sentEnd = 1;
          const check = (): void => {
            for (const p of host.take()) {
              if (p.tcp === undefined || p.body.length === 0) continue;
              const end = p.tcp.seq + p.body.length;
              expect(end - hostAck).toBeLessThanOrEqual(hostWindow);
              expect(p.raw.length).toBeLessThanOrEqual(2000);
              expect(p.body.equals(sourceBytes(p.tcp.seq - 1, p.body.length))).toBe(true); // Buffer.equals: fast
              sentEnd = Math.max(sentEnd, end);
            }
          };
          host.tcp({ sport: 1, dport: SOURCE_PORT, seq: 0, ack: 0, flags: TcpFlag.SYN, window: hostWindow });
          host.take();
          host.tcp({ sport: 1, dport: SOURCE_PORT, seq: 1, ack: 1, flags: TcpFlag.ACK, window: hostWindow });
          check();
          for (const step of steps) {
            hostAck += Math.floor((sentEnd - hostAck) * step.ackFraction);
            hostWindow = step.windowField * 256;
            host.tcp({ sport: 1, dport: SOURCE_PORT, seq: 1, ack: hostAck, flags: TcpFlag.ACK, window: hostWindow });
            check();
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('maxPacket bounds packets (default 16384; up to 65536 to span transfers)', () => {
    const small = active();
    small.host.open(SOURCE_PORT, 1, 262144);
    const sizes = small.host.take().map((p) => p.raw.length);
    expect(Math.max(...sizes)).toBe(16384);
    const big = active({ faults: { maxPacket: 65536 } });
    big.host.open(SOURCE_PORT, 1, 262144);
    expect(Math.max(...big.host.take().map((p) => p.raw.length))).toBe(65536);
    expect(() => new EmulatedIPhone({ faults: { maxPacket: 70000 } })).toThrow(/maxPacket/);
  });
});

describe('fault knobs', () => {
  it('ackDelayMs delays the bare ACK and coalesces it', () => {
    vi.useFakeTimers();
    const { phone, host } = active({ faults: { ackDelayMs: 30 } });
    host.open(DISCARD_PORT, 1);
    host.tcp({ sport: 1, dport: DISCARD_PORT, seq: 1, ack: 1, flags: TcpFlag.ACK }, Buffer.alloc(10));
    host.tcp({ sport: 1, dport: DISCARD_PORT, seq: 11, ack: 1, flags: TcpFlag.ACK }, Buffer.alloc(10));
    expect(host.take()).toEqual([]);
    vi.advanceTimersByTime(29);
    expect(host.take()).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(host.take().map((p) => p.tcp?.ack)).toEqual([21]);
    expect(phone.stats.acksOut).toBe(1);
  });

  it('ackEveryPacket: a bare ACK for each data packet, before the reply that would have carried it', () => {
    const { phone, host } = active({ faults: { ackEveryPacket: true } });
    host.open(ECHO_PORT, 1);
    host.tcp({ sport: 1, dport: ECHO_PORT, seq: 1, ack: 1, flags: TcpFlag.ACK }, Buffer.from('abc'));
    host.tcp({ sport: 1, dport: ECHO_PORT, seq: 4, ack: 4, flags: TcpFlag.ACK }, Buffer.from('de'));
    expect(host.take().map((p) => [p.tcp?.seq, p.tcp?.ack, p.body.toString()])).toEqual([
      [1, 4, ''],
      [1, 4, 'abc'],
      [4, 6, ''],
      [4, 6, 'de'],
    ]);
    expect(phone.stats.acksOut).toBe(2);
  });

  it('withholdAcks: no ACKs, and data segments repeat the old ack', () => {
    const { phone, host } = active();
    host.open(ECHO_PORT, 1);
    phone.faults.withholdAcks = true;
    host.tcp({ sport: 1, dport: ECHO_PORT, seq: 1, ack: 1, flags: TcpFlag.ACK }, Buffer.from('abc'));
    expect(host.take().map((p) => [p.tcp?.ack, p.body.toString()])).toEqual([[1, 'abc']]);
    phone.faults.withholdAcks = false;
    host.tcp({ sport: 1, dport: ECHO_PORT, seq: 4, ack: 4, flags: TcpFlag.ACK }, Buffer.from('d'));
    expect(host.take().map((p) => p.tcp?.ack)).toEqual([5]);
  });

  it('window knob changes the advertised window at runtime', () => {
    const { phone, host } = active();
    host.open(DISCARD_PORT, 1);
    phone.faults.window = 4096;
    host.tcp({ sport: 1, dport: DISCARD_PORT, seq: 1, ack: 1, flags: TcpFlag.ACK }, Buffer.alloc(1));
    expect(host.take()[0]?.raw.readUInt16BE(HEADER_V2 + 14)).toBe(16);
  });

  it('rstAfterBytes resets mid-stream after exactly N bytes', () => {
    const svc = recorder();
    const { phone, host } = active({ faults: { rstAfterBytes: 3000 } });
    phone.listen(1000, svc);
    host.open(SOURCE_PORT, 1);
    const seen = host.take();
    expect(seen.reduce((n, p) => n + p.body.length, 0)).toBe(3000);
    expect(seen.at(-1)?.tcp?.flags).toBe(TcpFlag.RST);
    expect(seen.at(-1)?.tcp?.seq).toBe(3001);
    host.open(1000, 2);
    host.tcp({ sport: 2, dport: 1000, seq: 1, ack: 1, flags: TcpFlag.ACK }, Buffer.alloc(3500));
    expect(host.take().map((p) => p.tcp?.flags)).toEqual([TcpFlag.RST]);
    expect(svc.reasons).toEqual(['device-closed']);
  });

  it('finInsteadOfRst closes with FIN|ACK', () => {
    const { phone, host } = active({ faults: { rstAfterBytes: 100, finInsteadOfRst: true } });
    host.open(SOURCE_PORT, 1);
    const last = host.take().at(-1);
    expect(last?.tcp?.flags).toBe(TcpFlag.FIN | TcpFlag.ACK);
    expect(phone.stats.finOut).toBe(1);
  });

  it('injectGarbage sends reproducible junk transfers', () => {
    const a = active();
    const b = active();
    a.phone.injectGarbage(5);
    b.phone.injectGarbage(5);
    expect(a.host.transfers).toHaveLength(5);
    expect(a.host.transfers).toEqual(b.host.transfers);
    expect(a.phone.stats.hostileOut).toBe(5);
  });
});

describe('hostile helpers', () => {
  it('dataBeyondWindow overruns the host window by the extra amount', () => {
    const { phone, host } = active();
    host.open(DISCARD_PORT, 1, 1024);
    expect(phone.hostile.dataBeyondWindow(100)).toBe(1124);
    const p = host.take()[0];
    expect(p?.body.length).toBe(1124);
    expect(p?.tcp).toMatchObject({ sport: DISCARD_PORT, dport: 1, seq: 1, flags: TcpFlag.ACK });
    expect(active().phone.hostile.dataBeyondWindow()).toBe(0);
  });

  it('builds each hostile packet as described', () => {
    const { phone, host } = active();
    phone.hostile.synAckForUnopened(9, 62078);
    phone.hostile.rstStorm(3, 62078, 10);
    phone.hostile.unknownPort(1, 2);
    phone.hostile.unknownProtocol(0x42);
    const seen = host.take();
    expect(seen.map((p) => [p.mux.protocol, p.tcp?.flags, p.tcp?.dport])).toEqual([
      [Protocol.Tcp, TcpFlag.SYN | TcpFlag.ACK, 9],
      [Protocol.Tcp, TcpFlag.RST, 10],
      [Protocol.Tcp, TcpFlag.RST, 11],
      [Protocol.Tcp, TcpFlag.RST, 12],
      [Protocol.Tcp, TcpFlag.ACK, 1],
      [0x42, undefined, undefined],
    ]);
    phone.hostile.wrongMagic();
    phone.hostile.truncated();
    phone.hostile.lengthMismatch(100);
    const [magic, truncated, mismatch] = host.transfers.splice(0);
    expect(magic?.readUInt32BE(8)).toBe(0xdeadbeef);
    expect(truncated?.length).toBe(16 + 10);
    expect(truncated?.readUInt32BE(4)).toBe(26);
    expect(mismatch?.readUInt32BE(4)).toBe(mismatch!.length + 100);
    expect(phone.stats.hostileOut).toBe(9);
  });

  it('v2HeaderOnV1 only acts on a v1 link', () => {
    const v2 = active();
    v2.phone.hostile.v2HeaderOnV1();
    expect(v2.host.transfers).toHaveLength(0);
    const v1 = active({ protocolVersion: 1 });
    v1.phone.hostile.v2HeaderOnV1();
    expect(v1.host.transfers[0]?.readUInt32BE(8)).toBe(MUX_MAGIC);
  });
});

describe('robustness', () => {
  it('property: arbitrary host transfers in any state never throw', () => {
    fc.assert(
      fc.property(fc.boolean(), fc.array(fc.uint8Array({ maxLength: 80 }), { maxLength: 20 }), (handshake, transfers) => {
        const phone = new EmulatedIPhone();
        const host = new HostDriver(phone);
        if (handshake) host.handshake();
        const before = phone.stats.transfersIn;
        for (const t of transfers) phone.receive(Buffer.from(t));
        expect(phone.stats.transfersIn - before).toBe(transfers.length);
      }),
    );
  });

  it('counts host CONTROL, unknown protocols and malformed SETUP as garbage', () => {
    const { phone, host } = active();
    host.packet(Protocol.Control, Buffer.from([7, 65]));
    host.packet(99, Buffer.alloc(3));
    host.packet(Protocol.Setup, Buffer.from([7, 7]));
    host.packet(Protocol.Tcp, Buffer.alloc(5));
    expect(phone.stats.garbageIn).toBe(4);
    expect(host.transfers).toEqual([]);
  });
});
