import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { fromHex } from '../../test/support/reference-codec.js';
import { silentLogger } from '../log.js';
import type { Logger } from '../log.js';
import type { CloseReason, DeviceConnection, LinkContext } from '../devices/api.js';
import { ConnectionRefusedError, DeviceGoneError } from '../devices/errors.js';
import { MUX_HEADER_V1, MUX_HEADER_V2, Protocol, TcpFlag, TX_WINDOW } from './constants.js';
import { NoFreePortError, UnsupportedVersionError, VersionTimeoutError } from './errors.js';
import { MuxSession } from './session.js';
import type { Transport, TransportSink } from './transport.js';
import { decodeMuxHeader, decodeTcpHeader, encodeTcpPacket, encodeVersionPacket, writeMuxHeader } from './wire.js';
import type { MuxHeaderSize, TcpHeader } from './wire.js';

const { SYN, ACK, RST } = TcpFlag;

/** A transport that records every packet and whose `send` can be made to report busy. */
class FakeTransport implements Transport {
  readonly maxPacketSize = 49152;
  sink: TransportSink | undefined;
  sent: Buffer[] = [];
  busy = false;
  closed = 0;
  start(sink: TransportSink): void {
    this.sink = sink;
  }
  send(packet: Buffer): boolean {
    this.sent.push(packet);
    return !this.busy;
  }
  close(): Promise<void> {
    this.closed++;
    if (this.closed === 1) this.sink?.onClose();
    return Promise.resolve();
  }
  /** Sent TCP packets decoded (header size from the packet's own magic). */
  tcp(): (TcpHeader & { len: number; txSeq: number; rxSeq: number })[] {
    return this.sent
      .filter((p) => p.readUInt32BE(0) === Protocol.TCP)
      .map((p) => {
        const h: MuxHeaderSize = p.length >= 16 && p.readUInt32BE(8) === 0xfeedface ? MUX_HEADER_V2 : MUX_HEADER_V1;
        const mux = decodeMuxHeader(p, h);
        return { ...decodeTcpHeader(p, h)!, len: p.length - h - 20, txSeq: mux.txSeq, rxSeq: mux.rxSeq };
      });
  }
}

/** The directory's side, recording the session's reports. */
class Owner implements LinkContext {
  readonly id = 1;
  active = 0;
  dead: (Error | undefined)[] = [];
  constructor(readonly log: Logger) {}
  ready(): void {
    this.active++;
  }
  gone(err?: Error): void {
    this.dead.push(err);
  }
}

function setup(log: Logger = silentLogger()): { session: MuxSession; transport: FakeTransport; owner: Owner } {
  const transport = new FakeTransport();
  const owner = new Owner(log);
  const session = new MuxSession(transport, owner, {
    connectTimeoutMs: 1000,
    endTimeoutMs: 10_000,
    versionTimeoutMs: 500,
    ackDelayMs: 30,
    window: TX_WINDOW,
    shortTransferQuantum: 1,
  });
  session.start();
  return { session, transport, owner };
}

/** A device packet with the v2 header. */
function v2(protocol: number, body: Buffer, txSeq = 0, rxSeq = 0): Buffer {
  const packet = Buffer.alloc(16 + body.length);
  writeMuxHeader(packet, protocol, packet.length, { headerSize: MUX_HEADER_V2, txSeq, rxSeq });
  body.copy(packet, 16);
  return packet;
}

function deviceTcp(tcp: TcpHeader, payload?: Buffer, rxSeq = 0, headerSize: MuxHeaderSize = MUX_HEADER_V2): Buffer {
  return encodeTcpPacket({ headerSize, txSeq: 0, rxSeq }, tcp, payload);
}

function active(version: 1 | 2 = 2): ReturnType<typeof setup> {
  const s = setup();
  s.transport.sink!.onData(encodeVersionPacket(version, 0));
  return s;
}

/** Connect and answer with SYN|ACK; returns the established connection. */
async function open(s: ReturnType<typeof setup>, port = 7): Promise<DeviceConnection> {
  const promise = s.session.connect(port);
  const syn = s.transport.tcp().at(-1)!;
  s.transport.sink!.onData(deviceTcp({ sport: port, dport: syn.sport, seq: 0, ack: 1, flags: SYN | ACK, window: TX_WINDOW }));
  return promise;
}

interface LogLine {
  level: number;
  msg: string;
  err?: { code?: string };
}

function logCapture(level = 'debug'): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(JSON.parse(chunk.toString()) as LogLine);
      cb();
    },
  });
  return { log: pino({ level }, stream), lines };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('MuxSession handshake', () => {
  it('sends VERSION (v1 header, major 2) on start', () => {
    const { transport } = setup();
    expect(transport.sent.map((p) => p.toString('hex'))).toEqual([fromHex('00000000 00000014 00000002 00000000 00000000').toString('hex')]);
  });

  it('v2: sends SETUP, becomes active, and the first SYN is the captured one (tx_seq 1, rx_seq 0xffff)', async () => {
    const s = active(2);
    expect(s.transport.sent[1]!.toString('hex')).toBe(fromHex('00000002 00000011 FEEDFACE 0000 FFFF 07').toString('hex'));
    expect(s.session.currentState).toBe('active');
    expect(s.owner.active).toBe(1);
    void s.session.connect(62078).catch(() => undefined);
    expect(s.transport.sent[2]!.toString('hex')).toBe(fromHex('0000000600000024feedface0001ffff 0001f27e 00000000 00000000 5002020000000000').toString('hex'));
    await s.session.shutdown();
  });

  it("v2: our rx_seq copies the rx_seq field of the device's last packet; tx_seq counts up", async () => {
    const s = active(2);
    s.transport.sink!.onData(v2(Protocol.CONTROL, Buffer.from('\x07hi'), 5, 0x1234));
    await open(s);
    const [syn, ack] = s.transport.tcp();
    expect([syn!.txSeq, syn!.rxSeq]).toEqual([1, 0x1234]);
    expect([ack!.txSeq, ack!.rxSeq]).toEqual([2, 0]); // the SYN|ACK carried rx_seq 0
    await s.session.shutdown();
  });

  it('v1: every later packet has the 8-byte header', async () => {
    const s = active(1);
    expect(s.transport.sent).toHaveLength(1); // no SETUP
    const promise = s.session.connect(7);
    expect(s.transport.sent[1]!.toString('hex')).toBe(fromHex('00000006 0000001c 0001 0007 00000000 00000000 5002 0200 00000000').toString('hex'));
    s.transport.sink!.onData(deviceTcp({ sport: 7, dport: 1, seq: 0, ack: 1, flags: SYN | ACK, window: TX_WINDOW }, undefined, 0, MUX_HEADER_V1));
    await expect(promise).resolves.toMatchObject({ localPort: 1, remotePort: 7 });
    await s.session.shutdown();
  });

  it('an unknown major drops the device (UnsupportedVersionError) and closes the transport', () => {
    const s = setup();
    s.transport.sink!.onData(encodeVersionPacket(3, 0));
    expect(s.session.currentState).toBe('dead');
    expect(s.owner.dead).toHaveLength(1);
    expect(s.owner.dead[0]).toBeInstanceOf(UnsupportedVersionError);
    expect(s.transport.closed).toBe(1);
    expect(s.owner.active).toBe(0);
  });

  it('no VERSION reply in time → VersionTimeoutError, logged at warn, device dropped', () => {
    vi.useFakeTimers();
    const { log, lines } = logCapture();
    const s = setup(log);
    vi.advanceTimersByTime(499);
    expect(s.owner.dead).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(s.owner.dead[0]).toBeInstanceOf(VersionTimeoutError);
    expect(lines.filter((l) => l.level === 40 && l.msg === 'device dropped for a protocol violation' && l.err?.code === 'MUXD_ERR_VERSION_TIMEOUT')).toHaveLength(1);
    expect(s.transport.closed).toBe(1);
  });

  it('a connect before the handshake waits for it, then sends its SYN', async () => {
    const s = setup();
    const promise = s.session.connect(7);
    expect(s.transport.tcp()).toEqual([]);
    s.transport.sink!.onData(encodeVersionPacket(2, 0));
    expect(s.transport.tcp().map((t) => t.flags)).toEqual([SYN]);
    s.transport.sink!.onData(deviceTcp({ sport: 7, dport: 1, seq: 0, ack: 1, flags: RST, window: 0 }));
    await expect(promise).rejects.toBeInstanceOf(ConnectionRefusedError);
  });
});

describe('MuxSession connect ports', () => {
  it('port 0 goes to the phone like any other (as usbmuxd sends it); its RST is ConnectionRefusedError', async () => {
    const s = setup();
    s.transport.sink!.onData(encodeVersionPacket(2, 0));
    const promise = s.session.connect(0);
    expect(s.transport.tcp().map((t) => [t.flags, t.dport])).toEqual([[SYN, 0]]);
    s.transport.sink!.onData(deviceTcp({ sport: 0, dport: 1, seq: 0, ack: 1, flags: RST, window: 0 }));
    await expect(promise).rejects.toBeInstanceOf(ConnectionRefusedError);
  });

  it.each([-1, 65536, 1.5, Number.NaN])('a port outside u16 (%s) is a caller bug: RangeError, nothing sent', async (port) => {
    const s = setup();
    s.transport.sink!.onData(encodeVersionPacket(2, 0));
    await expect(s.session.connect(port)).rejects.toBeInstanceOf(RangeError);
    expect(s.transport.tcp()).toEqual([]);
  });
});

describe('MuxSession packets', () => {
  it('logs CONTROL messages at their level (3 error, 5 warn, 7 info, others debug)', () => {
    const { log, lines } = logCapture();
    const s = setup(log);
    s.transport.sink!.onData(encodeVersionPacket(2, 0));
    lines.length = 0;
    for (const type of [3, 5, 7, 4]) s.transport.sink!.onData(v2(Protocol.CONTROL, Buffer.from(`${String.fromCharCode(type)}msg${type}`)));
    expect(lines.map((l) => [l.level, l.msg])).toEqual([
      [50, 'device: msg3'],
      [40, 'device: msg5'],
      [30, 'device: msg7'],
      [20, 'device: msg4'],
    ]);
  });

  it('traces every TCP packet at trace level in usbmuxd field order, and only then', async () => {
    const { log, lines } = logCapture('trace');
    const s = setup(log);
    s.transport.sink!.onData(encodeVersionPacket(2, 0));
    const promise = s.session.connect(7);
    s.transport.sink!.onData(deviceTcp({ sport: 7, dport: 1, seq: 0, ack: 1, flags: SYN | ACK, window: TX_WINDOW }));
    await promise;
    expect(lines.filter((l) => l.level === 10).map((l) => l.msg)).toEqual([
      '[OUT] dev=1 sport=1 dport=7 seq=0 ack=0 flags=SYN window=131072 len=0',
      '[IN] dev=1 sport=7 dport=1 seq=0 ack=1 flags=SYN|ACK window=131072 len=0',
      '[OUT] dev=1 sport=1 dport=7 seq=1 ack=1 flags=ACK window=131072 len=0',
    ]);
    log.level = 'debug';
    lines.length = 0;
    s.transport.sink!.onData(deviceTcp({ sport: 7, dport: 1, seq: 1, ack: 1, flags: ACK, window: TX_WINDOW }, Buffer.from('x')));
    expect(lines).toEqual([]);
    await s.session.shutdown();
  });

  it('counts and drops unknown protocols and TCP before the handshake', () => {
    const s = setup();
    const early = deviceTcp({ sport: 7, dport: 1, seq: 0, ack: 0, flags: ACK, window: 0 }, undefined, 0, MUX_HEADER_V1);
    s.transport.sink!.onData(early);
    s.transport.sink!.onData(encodeVersionPacket(2, 0));
    s.transport.sink!.onData(v2(9, Buffer.from('zz')));
    expect(s.session.stats).toMatchObject({ beforeActive: 1, unknownProtocol: 1 });
    expect(s.transport.tcp()).toEqual([]);
  });

  it('answers an unknown port pair with an anonymous RST (ports swapped, seq 0, ack = their seq, window 0)', () => {
    const s = active(2);
    s.transport.sink!.onData(deviceTcp({ sport: 62078, dport: 5, seq: 0x11223344, ack: 9, flags: ACK, window: TX_WINDOW }, Buffer.from('x')));
    expect(s.transport.sent.at(-1)!.subarray(16).toString('hex')).toBe(fromHex('0005 f27e 00000000 11223344 50 04 0000 0000 0000').toString('hex'));
    s.transport.sink!.onData(deviceTcp({ sport: 62078, dport: 5, seq: 1, ack: 9, flags: RST, window: 0 }));
    expect(s.session.stats.anonymousRsts).toBe(1);
  });

  it('allocates source ports from 1, skips ports in use, wraps, never uses 0, and runs out', async () => {
    const s = active(2);
    const conns: Promise<DeviceConnection>[] = [];
    for (let i = 0; i < 65535; i++) conns.push(s.session.connect(7).catch(() => undefined as unknown as DeviceConnection));
    const ports = new Set(s.transport.sent.slice(2).map((p) => p.readUInt16BE(16)));
    expect(ports.size).toBe(65535);
    expect(ports.has(0)).toBe(false);
    expect(s.transport.sent[2]!.readUInt16BE(16)).toBe(1);
    await expect(s.session.connect(7)).rejects.toBeInstanceOf(NoFreePortError);
    // free port 300 (refused); the counter has wrapped to 1, skips the ports in use, finds 300
    s.transport.sink!.onData(deviceTcp({ sport: 7, dport: 300, seq: 0, ack: 0, flags: RST, window: 0 }));
    void s.session.connect(7).catch(() => undefined);
    expect(s.transport.sent.at(-1)!.readUInt16BE(16)).toBe(300);
    s.transport.sink!.onClose(new Error('unplugged'));
    await Promise.all(conns);
  });
});

describe('MuxSession with a transport that reuses its buffers', () => {
  it('keeps a chunk the decoder holds part of a packet from, and writes packets into allocPacket buffers', async () => {
    const s = active(2);
    const kept: ArrayBufferLike[] = [];
    const allocated: Buffer[] = [];
    Object.assign(s.transport, {
      recycler: { retain: () => undefined, release: () => undefined, keep: (v: Buffer) => { kept.push(v.buffer); } },
      allocPacket: (n: number) => {
        const b = Buffer.alloc(n);
        allocated.push(b);
        return b;
      },
    });
    // a session reads the transport's capabilities at construction: make a new one over it
    const session = new MuxSession(s.transport, s.owner, { connectTimeoutMs: 1000, endTimeoutMs: 10_000, versionTimeoutMs: 500, ackDelayMs: 30, window: TX_WINDOW, shortTransferQuantum: 1 });
    session.start();
    s.transport.sink!.onData(encodeVersionPacket(2, 0));
    const promise = session.connect(7);
    const syn = s.transport.tcp().at(-1)!;
    expect(allocated.at(-1)?.equals(s.transport.sent.at(-1)!)).toBe(true);
    const synAck = deviceTcp({ sport: 7, dport: syn.sport, seq: 0, ack: 1, flags: SYN | ACK, window: TX_WINDOW });
    // one transfer: a whole packet, then the first 10 bytes of the next
    const chunk = Buffer.concat([synAck, synAck.subarray(0, 10)]);
    s.transport.sink!.onData(chunk);
    await promise;
    expect(kept).toEqual([chunk.buffer]);
    // a transfer holding whole packets only is not kept
    s.transport.sink!.onData(Buffer.concat([synAck.subarray(10)]));
    expect(kept).toHaveLength(1);
    await session.shutdown();
    await s.session.shutdown();
  });
});

describe('MuxSession data plane', () => {
  it('flushes owed ACKs once per event-loop turn, one per connection (each a quarter window or more)', async () => {
    const s = active(2);
    const a = await open(s, 7);
    const b = await open(s, 9);
    const dones: (() => void)[] = [];
    const sink = { onData: (_p: Buffer, done: () => void) => dones.push(done), onWritable: () => undefined, onClose: () => undefined };
    a.attach(sink);
    b.attach(sink);
    for (const [port, local, seq] of [[7, 1, 1], [9, 2, 1], [7, 1, 1 + TX_WINDOW / 4]] as const) {
      s.transport.sink!.onData(deviceTcp({ sport: port, dport: local, seq, ack: 1, flags: ACK, window: TX_WINDOW }, Buffer.alloc(TX_WINDOW / 4)));
    }
    const before = s.transport.tcp().length;
    for (const done of dones) done();
    expect(s.transport.tcp()).toHaveLength(before);
    await new Promise((r) => setImmediate(r));
    const acks = s.transport.tcp().slice(before);
    expect(acks.map((t) => [t.sport, t.flags, t.ack])).toEqual([
      [1, ACK, 1 + TX_WINDOW / 2],
      [2, ACK, 1 + TX_WINDOW / 4],
    ]);
    await s.session.shutdown();
  });

  it.each([
    ['out of sequence', 'MUXD_ERR_SEQUENCE_GAP', 5, 4],
    ['past our window', 'MUXD_ERR_WINDOW_OVERRUN', 1, TX_WINDOW + 1],
  ])('device data %s: that one connection is reset (RST, protocol-error), logged once at warn; the device and its other connections go on', async (_what, code, seq, length) => {
    const { log, lines } = logCapture();
    const s = setup(log);
    s.transport.sink!.onData(encodeVersionPacket(2, 0));
    const a = await open(s, 7);
    const b = await open(s, 9);
    const closes: string[] = [];
    const received: number[] = [];
    // a's client reads nothing (its window fills); b's reads everything
    const sink = (name: string) => ({
      onData: (p: Buffer, done: () => void) => {
        received.push(p.length);
        if (name === 'b') done();
      },
      onWritable: () => undefined,
      onClose: (r: CloseReason) => closes.push(`${name} ${r}`),
    });
    a.attach(sink('a'));
    b.attach(sink('b'));
    const before = s.transport.tcp().length;
    // A packet is at most 64 KiB: an overrun comes as several in-sequence segments.
    let at = seq;
    for (let left = length; left > 0; left -= 60000) {
      const size = Math.min(left, 60000);
      s.transport.sink!.onData(deviceTcp({ sport: 7, dport: a.localPort, seq: at, ack: 1, flags: ACK, window: TX_WINDOW }, Buffer.alloc(size)));
      at += size;
    }
    expect(closes).toEqual(['a protocol-error']);
    expect(s.transport.tcp().slice(before).map((t) => [t.sport, t.flags])).toEqual([[a.localPort, RST]]);
    expect(lines.filter((l) => l.level >= 40).map((l) => [l.level, l.msg, l.err?.code])).toEqual([[40, 'connection reset for a protocol violation', code]]);
    expect(s.session.currentState).toBe('active');
    s.transport.sink!.onData(deviceTcp({ sport: 9, dport: b.localPort, seq: 1, ack: 1, flags: ACK, window: TX_WINDOW }, Buffer.from('fine')));
    expect(received.at(-1)).toBe(4);
    expect(closes).toEqual(['a protocol-error']);
    await s.session.shutdown();
  });

  it('a busy transport is drained round-robin, one packet per connection per turn', async () => {
    const s = active(2);
    const a = await open(s, 7);
    const b = await open(s, 9);
    const quiet = { onData: () => undefined, onWritable: () => undefined, onClose: () => undefined };
    a.attach(quiet);
    b.attach(quiet);
    s.transport.busy = true;
    const start = s.transport.tcp().length;
    // Each connection's first segment goes into the full transport (one past its high-water mark
    // each); the answer false stops them both until the drain.
    expect(a.write(Buffer.alloc(49116 * 3))).toBe(false);
    expect(b.write(Buffer.alloc(49116 * 3))).toBe(false);
    expect(s.transport.tcp().slice(start).map((t) => t.sport)).toEqual([1, 2]);
    expect(a.write(Buffer.alloc(10))).toBe(false);
    expect(s.transport.tcp().length - start).toBe(2);
    s.transport.busy = false;
    s.transport.sink!.onDrain();
    const order = s.transport.tcp().slice(start).map((t) => t.sport);
    // Then one each in turn. The third segment of each would be cut to the window's last 32 KiB:
    // it waits for the device's ACK instead (silly-window avoidance).
    expect(order).toEqual([1, 2, 1, 2]);
    // The device acks a's first segment: the window reopens and a's third segment goes, whole,
    // then its 10 bytes.
    s.transport.sink!.onData(deviceTcp({ sport: 7, dport: 1, seq: 1, ack: 1 + 49116, flags: ACK, window: TX_WINDOW }));
    expect(s.transport.tcp().slice(start).map((t) => [t.sport, t.len])).toEqual([[1, 49116], [2, 49116], [1, 49116], [2, 49116], [1, 49116], [1, 10]]);
    await s.session.shutdown();
  });

  it('transport close ends every connection once with device-gone and rejects pending connects', async () => {
    const s = active(2);
    const a = await open(s, 7);
    const b = await open(s, 9);
    const pending = s.session.connect(19);
    const closes: CloseReason[] = [];
    const sink = { onData: () => undefined, onWritable: () => undefined, onClose: (r: CloseReason) => closes.push(r) };
    a.attach(sink);
    b.attach(sink);
    s.transport.sink!.onClose(new Error('unplugged'));
    s.transport.sink!.onClose(new Error('again'));
    expect(closes).toEqual(['device-gone', 'device-gone']);
    await expect(pending).rejects.toBeInstanceOf(DeviceGoneError);
    await expect(s.session.connect(7)).rejects.toBeInstanceOf(DeviceGoneError);
    expect(s.owner.dead).toHaveLength(1);
  });

  it('shutdown RSTs every connection, then closes the transport', async () => {
    const s = active(2);
    const a = await open(s, 7);
    const closes: CloseReason[] = [];
    a.attach({ onData: () => undefined, onWritable: () => undefined, onClose: (r) => closes.push(r) });
    await s.session.shutdown();
    expect(s.transport.tcp().at(-1)!.flags).toBe(RST);
    expect(closes).toEqual(['local-reset']);
    expect(s.transport.closed).toBeGreaterThanOrEqual(1);
  });
});
