/**
 * LeanPhone: the least a phone can do and still speak the real mux protocol to the daemon, for
 * the ceiling bench's "daemon's own cost" rows (`--phone lean`). It is a `Transport` itself (no
 * MemoryTransportPair in between) and serves two ports: source (19) and discard (9). The full
 * emulator (src/emulator) checks every field and runs real device-side TCP; this one trusts the
 * host and spends as little CPU as it can, so that the server process's CPU is nearly all daemon.
 *
 *   daemon ──send(packet)──▶ queued ── one setImmediate per turn ──▶ run(): parse each (VERSION →
 *                            reply; SYN → SYN|ACK or RST; ACK → the host's ack and window; payload
 *                            to discard → count), then
 *   daemon ◀──onData(transfer)── bare ACKs owed by discard, source packets filling the host window,
 *                                 one mux packet per transfer (≤ 16384 bytes, like USB_MRU), then
 *                                 onDrain if send() returned false
 *
 * Source packets come from a per-connection pool of 16 KiB buffers, reused once the host has
 * acknowledged all of a buffer's bytes: the daemon acks only after the client socket took them
 * (ConnectionSink `done`), so nothing of the daemon still reads a buffer the phone rewrites.
 * What the phone still costs (the pattern copy into each packet, header writes, parsing) happens in
 * one place per turn, `run()`, timed there with the process's CPU clock (getrusage, so preemption by
 * other load does not count): `phoneSeconds`, which the bench subtracts to report the daemon's share.
 * getrusage is a syscall that costs about as much as a small run (perf: 8–13 % of the server's
 * samples when every run was timed, half of it landing outside the timed span, i.e. on the
 * daemon), so one run in TIME_EVERY, picked at random, is timed and counted TIME_EVERY times: an
 * unbiased estimate of the sum at an eighth of the clock reads.
 */
import { DISCARD_PORT, SOURCE_PORT, sourceByte } from '../../src/emulator/stock-ports.js';
import type { UsbDeviceInfo } from '../../src/devices/index.js';
import type { Transport, TransportSink } from '../../src/mux/index.js';

const VERSION = 0;
const TCP = 6;
const HEADER_V1 = 8;
const HEADER_V2 = 16;
const TCP_HEADER = 20;
const MAGIC = 0xfeedface;
const FIN = 0x01;
const SYN = 0x02;
const RST = 0x04;
const ACK = 0x10;
/** One run in this many is timed (at random); its CPU time counts this many times. */
const TIME_EVERY = 8;
/** One IN transfer, like USB_MRU: every phone packet fits one. */
const TRANSFER = 16384;
const MAX_PAYLOAD = TRANSFER - HEADER_V2 - TCP_HEADER;
/** Our receive window (as the emulator: 128 KiB). */
const WINDOW = 131072;
/** send() returns false above this many bytes not yet taken by the phone (as MemoryTransportPair). */
const OUT_HIGH_WATER = 4 * 49152;
const ISN = 0x10000;

const PERIOD = 65536;
const PATTERN: Buffer = (() => {
  const b = Buffer.allocUnsafe(2 * PERIOD);
  for (let i = 0; i < b.length; i++) b[i] = sourceByte(i);
  return b;
})();

interface InFlight {
  readonly buf: Buffer;
  /** Sequence number just past this packet's payload. */
  readonly end: number;
}

interface LeanConn {
  readonly hostPort: number;
  readonly port: number;
  /** Our next sequence number. */
  sndNext: number;
  /** Next host sequence number expected (= our ack). */
  rcvNext: number;
  /** Last ack we sent. */
  ackSent: number;
  /** Host's ack of our data, and its window in bytes. */
  hostAck: number;
  hostWindow: number;
  /** Source stream offset of the next payload byte. */
  offset: number;
  readonly inFlight: InFlight[];
  readonly free: Buffer[];
  established: boolean;
}

let nextAddress = 1;

export class LeanPhone implements Transport {
  readonly maxPacketSize = 49152;
  readonly info: UsbDeviceInfo;
  /** Bytes the discard service has taken. */
  discardBytes = 0;
  /** Host packets that carried payload (each would be one USB OUT transfer). */
  dataPacketsIn = 0;
  /** Seconds spent in phone code (parsing host packets, building ours), daemon callbacks excluded. */
  phoneSeconds = 0;
  private sink: TransportSink | undefined;
  private readonly conns = new Map<number, LeanConn>();
  /** Connections with work for the next run: an owed ACK or source room. */
  private readonly dirty = new Set<LeanConn>();
  private readonly control: Buffer[] = [];
  /** Host packets not parsed yet. */
  private inbox: Buffer[] = [];
  private txSeq = 0;
  private v2 = false;
  private undelivered = 0;
  private needDrain = false;
  private scheduled = false;
  private closed = false;
  private readonly runBound = (): void => {
    this.run();
  };

  constructor(udid: string) {
    this.info = { connectionType: 'USB', serial: udid, usbSerial: udid.replace('-', ''), productId: 0x12a8, locationId: (0xfe << 16) | nextAddress++, speed: 480_000_000 };
  }

  start(sink: TransportSink): void {
    this.sink = sink;
  }

  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.sink?.onClose();
    }
    return Promise.resolve();
  }

  send(packet: Buffer): boolean {
    if (this.closed) return true;
    // Only queued here (like a USB transport's submit); parsed in run(), where it is timed.
    this.inbox.push(packet);
    this.undelivered += packet.length;
    this.schedule();
    if (this.undelivered <= OUT_HIGH_WATER) return true;
    this.needDrain = true;
    return false;
  }

  private take(packet: Buffer): void {
    const protocol = packet.readUInt32BE(0);
    if (protocol === VERSION) {
      const reply = Buffer.alloc(20);
      reply.writeUInt32BE(VERSION, 0);
      reply.writeUInt32BE(20, 4);
      reply.writeUInt32BE(2, 8);
      this.control.push(reply);
      return;
    }
    if (protocol !== TCP) {
      if (protocol === 2) this.v2 = true; // SETUP: v2 headers from now on
      return;
    }
    const h = this.v2 ? HEADER_V2 : HEADER_V1;
    const hostPort = packet.readUInt16BE(h);
    const port = packet.readUInt16BE(h + 2);
    const seq = packet.readUInt32BE(h + 4);
    const ack = packet.readUInt32BE(h + 8);
    const flags = packet[h + 13] ?? 0;
    const window = packet.readUInt16BE(h + 14) << 8;
    if (flags === SYN) {
      const conn: LeanConn = { hostPort, port, sndNext: ISN, rcvNext: (seq + 1) >>> 0, ackSent: 0, hostAck: ISN, hostWindow: window, offset: 0, inFlight: [], free: [], established: false };
      if (port !== SOURCE_PORT && port !== DISCARD_PORT) {
        this.control.push(this.header(Buffer.allocUnsafe(HEADER_V2 + TCP_HEADER), conn, RST | ACK, 0));
        return;
      }
      this.conns.set(hostPort, conn);
      this.control.push(this.header(Buffer.allocUnsafe(HEADER_V2 + TCP_HEADER), conn, SYN | ACK, 0));
      conn.sndNext = (ISN + 1) >>> 0;
      conn.hostAck = conn.sndNext;
      return;
    }
    const conn = this.conns.get(hostPort);
    if (conn === undefined) return;
    if ((flags & (RST | FIN)) !== 0) {
      this.conns.delete(hostPort);
      this.dirty.delete(conn);
      return;
    }
    conn.established = true;
    conn.hostAck = ack;
    conn.hostWindow = window;
    const length = packet.length - h - TCP_HEADER;
    if (length > 0) {
      this.dataPacketsIn++;
      this.discardBytes += length;
      conn.rcvNext = (conn.rcvNext + length) >>> 0;
    }
    // Buffers the host has acknowledged entirely go back to the pool.
    const inFlight = conn.inFlight;
    while (inFlight.length > 0 && ((ack - (inFlight[0]?.end ?? ack)) | 0) >= 0) {
      const done = inFlight.shift();
      if (done !== undefined) conn.free.push(done.buf);
    }
    this.dirty.add(conn);
  }

  /** Write the v2 mux + TCP header for `conn` into `buf`; returns `buf`. */
  private header(buf: Buffer, conn: LeanConn, flags: number, payload: number): Buffer {
    const length = HEADER_V2 + TCP_HEADER + payload;
    buf.writeUInt32BE(TCP, 0);
    buf.writeUInt32BE(length, 4);
    buf.writeUInt32BE(MAGIC, 8);
    buf.writeUInt16BE(this.txSeq, 12);
    buf.writeUInt16BE(0, 14);
    this.txSeq = (this.txSeq + 1) & 0xffff;
    buf.writeUInt16BE(conn.port, 16);
    buf.writeUInt16BE(conn.hostPort, 18);
    buf.writeUInt32BE(conn.sndNext, 20);
    buf.writeUInt32BE(conn.rcvNext, 24);
    buf[28] = 0x50;
    buf[29] = flags;
    buf.writeUInt16BE(WINDOW >>> 8, 30);
    buf.writeUInt32BE(0, 32);
    conn.ackSent = conn.rcvNext;
    return length === buf.length ? buf : buf.subarray(0, length);
  }

  /** A method, not a field read: daemon callbacks may close the transport under the caller. */
  private isClosed(): boolean {
    return this.closed;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.runBound);
  }

  /** One "USB turn": take the host's packets, then deliver what the phone owes, in order. */
  private run(): void {
    this.scheduled = false;
    const sink = this.sink;
    if (this.closed || sink === undefined) return;
    // Process CPU time (getrusage), not wall time: a preempted phone must not count as busy.
    const timed = Math.random() * TIME_EVERY < 1;
    const cpu0 = timed ? process.cpuUsage() : undefined;
    const inbox = this.inbox;
    this.inbox = [];
    for (const packet of inbox) this.take(packet);
    this.undelivered = 0;
    const out = this.control.splice(0);
    for (const conn of this.dirty) {
      if (conn.port === SOURCE_PORT && conn.established) this.fill(conn, out);
      else if (conn.rcvNext !== conn.ackSent) out.push(this.header(Buffer.allocUnsafe(HEADER_V2 + TCP_HEADER), conn, ACK, 0));
    }
    this.dirty.clear();
    const drain = this.needDrain;
    this.needDrain = false;
    if (cpu0 !== undefined) {
      const cpu = process.cpuUsage(cpu0);
      this.phoneSeconds += (TIME_EVERY * (cpu.user + cpu.system)) / 1e6;
    }
    for (const transfer of out) {
      if (this.isClosed()) return; // the daemon may close us from inside onData
      sink.onData(transfer);
    }
    if (drain && !this.isClosed()) sink.onDrain();
  }

  /** Source: packets of the stream up to the host's window. */
  private fill(conn: LeanConn, out: Buffer[]): void {
    for (;;) {
      const room = conn.hostWindow - ((conn.sndNext - conn.hostAck) | 0);
      if (room <= 0) return;
      const n = Math.min(room, MAX_PAYLOAD);
      const buf = conn.free.pop() ?? Buffer.allocUnsafe(TRANSFER);
      const start = conn.offset % PERIOD;
      PATTERN.copy(buf, HEADER_V2 + TCP_HEADER, start, start + n);
      const packet = this.header(buf, conn, ACK, n);
      conn.offset += n;
      conn.sndNext = (conn.sndNext + n) >>> 0;
      conn.inFlight.push({ buf, end: conn.sndNext });
      out.push(packet);
    }
  }
}
