import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../log.js';
import type { CloseReason, ConnectionSink } from '../devices/api.js';
import { ConnectionRefusedError, ConnectTimeoutError, DeviceGoneError } from '../devices/errors.js';
import { Connection } from './connection.js';
import type { ConnectionHost } from './connection.js';
import type { ChunkRecycler } from './transport.js';
import { END_QUIET_MAX_MS, END_QUIET_MS, TAIL_HOLD_MS, TcpFlag, TX_WINDOW } from './constants.js';
import { MuxProtocolError, SequenceGapError, WindowOverrunError } from './errors.js';
import type { TcpHeader } from './wire.js';

const { SYN, ACK, RST, FIN } = TcpFlag;

interface Sent {
  flags: number;
  seq: number;
  ack: number;
  len: number;
}

/**
 * A stub session: records segments, lets the test fill the transport (a send into a full transport
 * still goes, answers false and queues the connection for drainTurn, as MuxSession does) and run
 * the per-turn flush.
 */
class StubHost implements ConnectionHost {
  sent: Sent[] = [];
  busy = false;
  /** The next segment sent fills the transport. */
  busyOnNextSend = false;
  turns = new Set<Connection>();
  drains = new Set<Connection>();
  releasedCount = 0;
  send(conn: Connection, tcp: TcpHeader, payload: Buffer | readonly Buffer[] | undefined): boolean {
    let len = 0;
    if (payload !== undefined) len = Buffer.isBuffer(payload) ? payload.length : payload.reduce((n, p) => n + p.length, 0);
    expect([tcp.sport, tcp.dport, tcp.window]).toEqual([1, 7, TX_WINDOW]);
    this.sent.push({ flags: tcp.flags, seq: tcp.seq, ack: tcp.ack, len });
    if (this.busyOnNextSend) {
      this.busyOnNextSend = false;
      this.busy = true;
    }
    if (!this.busy) return true;
    this.drains.add(conn);
    return false;
  }
  wantsTurn(conn: Connection): void {
    this.turns.add(conn);
  }
  released(conn: Connection): void {
    this.releasedCount++;
    this.turns.delete(conn);
    this.drains.delete(conn);
  }
  flushTurns(): void {
    for (const c of this.turns) c.flushTurn();
    this.turns.clear();
  }
  /** The transport drained: round-robin drainTurn until it is full again or nobody wants a turn. */
  drain(): void {
    this.busy = false;
    for (const c of this.drains) {
      if (this.isBusy()) break;
      if (!c.drainTurn()) this.drains.delete(c);
    }
  }
  /** A method: drainTurn may fill the transport under the loop's narrowing. */
  private isBusy(): boolean {
    return this.busy;
  }
}

/** A sink that records what the connection hands it. */
class Recorder {
  data: Buffer[] = [];
  dones: (() => void)[] = [];
  closes: CloseReason[] = [];
  writable = 0;
  readonly sink: ConnectionSink = {
    onData: (payload, done) => {
      this.data.push(payload);
      this.dones.push(done);
    },
    onWritable: () => {
      this.writable++;
    },
    onClose: (reason) => {
      this.closes.push(reason);
    },
  };
}

function recorder(): Recorder {
  return new Recorder();
}

/** The device's seq: its SYN|ACK carries 1, so its first payload byte is 2. */
const DEVICE_ISN = 1;

function seg(flags: number, window = TX_WINDOW, ack = 1, seq = DEVICE_ISN): TcpHeader {
  return { sport: 7, dport: 1, seq, ack, flags, window };
}

/** Next device seq per connection, so data segments arrive in sequence as from a real phone. */
const deviceSeq = new WeakMap<Connection, number>();

/** One in-sequence data segment from the device. */
function data(conn: Connection, payload: Buffer, window = TX_WINDOW, ack = 1): void {
  const seq = deviceSeq.get(conn) ?? DEVICE_ISN + 1;
  deviceSeq.set(conn, (seq + payload.length) >>> 0);
  conn.onSegment(seg(ACK, window, ack, seq), payload);
}

const END_TIMEOUT_MS = 10_000;

/** `text` in memory of its own (Buffer.from would share Node's pool between payloads). */
function own(text: string): Buffer {
  const b = Buffer.allocUnsafeSlow(text.length);
  b.write(text, 'latin1');
  return b;
}

/** A ChunkRecycler that counts what the connection says about each payload's memory. */
class CountingRecycler implements ChunkRecycler {
  readonly counts = new Map<ArrayBufferLike, number>();
  readonly kept = new Set<ArrayBufferLike>();
  retain(view: Buffer): void {
    this.counts.set(view.buffer, (this.counts.get(view.buffer) ?? 0) + 1);
  }
  release(view: Buffer): void {
    const n = this.counts.get(view.buffer) ?? 0;
    if (this.kept.has(view.buffer)) return;
    expect(n).toBeGreaterThan(0);
    this.counts.set(view.buffer, n - 1);
  }
  keep(view: Buffer): void {
    this.kept.add(view.buffer);
  }
  retained(view: Buffer): number {
    return this.counts.get(view.buffer) ?? 0;
  }
}

function make(maxPayload = 1000, connectTimeoutMs = 10_000, recycler?: ChunkRecycler): { conn: Connection; host: StubHost; result: { conn?: Connection; err?: Error } } {
  const host = new StubHost();
  const result: { conn?: Connection; err?: Error } = {};
  const conn = new Connection(
    host,
    { deviceId: 1, localPort: 1, remotePort: 7, window: TX_WINDOW, maxPayload, ackDelayMs: 30, connectTimeoutMs, endTimeoutMs: END_TIMEOUT_MS, log: silentLogger(), recycler },
    { resolve: (c) => (result.conn = c), reject: (e) => (result.err = e) },
  );
  return { conn, host, result };
}

function established(maxPayload = 1000, peerWindow = TX_WINDOW, recycler?: ChunkRecycler): { conn: Connection; host: StubHost } {
  const { conn, host } = make(maxPayload, 10_000, recycler);
  conn.sendSyn();
  conn.onSegment(seg(SYN | ACK, peerWindow), Buffer.alloc(0));
  host.sent = [];
  return { conn, host };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('Connection handshake (table)', () => {
  it('sends SYN with seq 0 ack 0', () => {
    const { conn, host } = make();
    conn.sendSyn();
    conn.sendSyn();
    expect(host.sent).toEqual([{ flags: SYN, seq: 0, ack: 0, len: 0 }]);
  });

  it('SYN|ACK exactly → established, seq = ack = 1, bare ACK, resolved', () => {
    const { conn, host, result } = make();
    conn.sendSyn();
    conn.onSegment(seg(SYN | ACK), Buffer.alloc(0));
    expect(conn.currentState).toBe('established');
    expect(host.sent[1]).toEqual({ flags: ACK, seq: 1, ack: 1, len: 0 });
    expect(result.conn).toBe(conn);
  });

  it.each([
    ['RST', RST, false],
    ['RST|ACK', RST | ACK, false],
    ['ACK', ACK, true],
    ['SYN|ACK|PSH', SYN | ACK | TcpFlag.PSH, true],
    ['FIN', FIN, true],
  ])('%s while connecting → refused; RST back: %s', (_name, flags, rstBack) => {
    const { conn, host, result } = make();
    conn.sendSyn();
    conn.onSegment(seg(flags), Buffer.alloc(0));
    expect(conn.currentState).toBe('refused');
    expect(result.err).toBeInstanceOf(ConnectionRefusedError);
    expect(host.sent.slice(1).map((s) => s.flags)).toEqual(rstBack ? [RST] : []);
    expect(host.releasedCount).toBe(1);
  });

  it('connect timeout → RST and ConnectTimeoutError', () => {
    vi.useFakeTimers();
    const { conn, host, result } = make(1000, 50);
    conn.sendSyn();
    vi.advanceTimersByTime(49);
    expect(result.err).toBeUndefined();
    vi.advanceTimersByTime(1);
    expect(result.err).toBeInstanceOf(ConnectTimeoutError);
    expect((result.err as ConnectTimeoutError).timeoutMs).toBe(50);
    expect(conn.currentState).toBe('timeout');
    expect(host.sent.map((s) => s.flags)).toEqual([SYN, RST]);
  });

  it('timeout or reset before the SYN went out (session still in its handshake) → nothing on the wire', () => {
    vi.useFakeTimers();
    const a = make(1000, 50);
    vi.advanceTimersByTime(50);
    expect(a.result.err).toBeInstanceOf(ConnectTimeoutError);
    const b = make();
    b.conn.reset();
    expect(b.result.err).toBeInstanceOf(DeviceGoneError);
    b.conn.sendSyn();
    expect([a.host.sent, b.host.sent]).toEqual([[], []]);
  });

  it('device gone while connecting → DeviceGoneError, nothing on the wire', () => {
    const { conn, host, result } = make();
    conn.sendSyn();
    conn.deviceGone();
    expect(result.err).toBeInstanceOf(DeviceGoneError);
    expect(host.sent).toHaveLength(1);
  });
});

describe('Connection established (table)', () => {
  it.each([
    ['RST', RST, 'device-reset', []],
    ['FIN', FIN, 'device-reset', [RST]],
    ['FIN|ACK', FIN | ACK, 'device-reset', [RST]],
    ['PSH|ACK', TcpFlag.PSH | ACK, 'device-reset', [RST]],
  ])('%s → reset, onClose(%s), wire %j', (_name, flags, reason, wire) => {
    const { conn, host } = established();
    const r = recorder();
    conn.attach(r.sink);
    conn.onSegment(seg(flags), Buffer.alloc(0));
    expect(conn.currentState).toBe('reset');
    expect(r.closes).toEqual([reason]);
    expect(host.sent.map((s) => s.flags)).toEqual(wire);
  });

  it('delivers data as views, advances ack only on done, and coalesces ACKs (bare ACK from a quarter window)', () => {
    const { conn, host } = established();
    const r = recorder();
    conn.attach(r.sink);
    const packet = Buffer.from('xxxxhello world');
    data(conn, packet.subarray(4, 9));
    data(conn, packet.subarray(9));
    expect(r.data.map(String)).toEqual(['hello', ' world']);
    expect(r.data[0]!.buffer).toBe(packet.buffer);
    expect(host.sent).toEqual([]);
    expect(conn.unconsumedBytes).toBe(11);
    r.dones[0]!();
    r.dones[1]!();
    expect(host.turns.size).toBe(1);
    host.flushTurns();
    // 11 bytes are less than a quarter window: the flush stays quiet (the timer or a data segment acks)
    expect(host.sent).toEqual([]);
    expect(conn.unconsumedBytes).toBe(0);
    data(conn, Buffer.alloc(TX_WINDOW / 4 - 11));
    r.dones[2]!();
    host.flushTurns();
    expect(host.sent).toEqual([{ flags: ACK, seq: 1, ack: 1 + TX_WINDOW / 4, len: 0 }]);
    host.flushTurns();
    expect(host.sent).toHaveLength(1);
    expect(conn.unconsumedBytes).toBe(0);
  });

  it('with a recycler: a payload for a sink that lets go on done is retained until done; for any other sink it is kept', () => {
    const recycler = new CountingRecycler();
    const { conn } = established(1000, TX_WINDOW, recycler);
    const r = recorder();
    conn.attach({ ...r.sink, releasesOnDone: true });
    const a = own('aaaa');
    data(conn, a);
    expect(recycler.retained(a)).toBe(1);
    r.dones[0]!();
    expect(recycler.retained(a)).toBe(0);
    const other = established(1000, TX_WINDOW, recycler);
    const keeper = recorder();
    other.conn.attach(keeper.sink);
    const b = own('bbbb');
    data(other.conn, b);
    expect(recycler.kept.has(b.buffer)).toBe(true);
    keeper.dones[0]!();
    expect(recycler.retained(b)).toBe(0);
  });

  it('with a recycler: payload held before attach is retained, and released when the connection ends unattached or drops it', () => {
    const recycler = new CountingRecycler();
    const { conn } = established(1000, TX_WINDOW, recycler);
    const held = [own('one'), own('two')];
    for (const p of held) data(conn, p);
    expect(held.map((p) => recycler.retained(p))).toEqual([1, 1]);
    const r = recorder();
    // the sink resets the connection while taking the first held payload: the second is dropped
    conn.attach({ ...r.sink, releasesOnDone: true, onData: (payload, done) => { r.sink.onData(payload, done); conn.reset(); } });
    expect(r.data.map(String)).toEqual(['one']);
    expect(recycler.retained(held[1]!)).toBe(0);
    r.dones[0]!();
    expect(recycler.retained(held[0]!)).toBe(0);
  });

  it('a data segment carries the current ack so no separate ACK is needed', () => {
    const { conn, host } = established();
    const r = recorder();
    conn.attach(r.sink);
    data(conn, Buffer.alloc(10));
    r.dones[0]!();
    conn.write(Buffer.from('abc'));
    host.flushTurns();
    expect(host.sent).toEqual([{ flags: ACK, seq: 1, ack: 11, len: 3 }]);
  });

  it('the delayed-ACK timer is a safety net when no flush happens', () => {
    vi.useFakeTimers();
    const { conn, host } = established();
    const r = recorder();
    conn.attach(r.sink);
    data(conn, Buffer.alloc(10));
    r.dones[0]!();
    vi.advanceTimersByTime(29);
    expect(host.sent).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(host.sent).toEqual([{ flags: ACK, seq: 1, ack: 11, len: 0 }]);
    host.flushTurns();
    expect(host.sent).toHaveLength(1);
  });

  it('holds data that arrives before attach and delivers it in order, then a pending close', () => {
    const { conn } = established();
    data(conn, Buffer.from('one'));
    data(conn, Buffer.from('two'));
    conn.onSegment(seg(RST), Buffer.alloc(0));
    const r = recorder();
    conn.attach(r.sink);
    expect(r.data.map(String)).toEqual(['one', 'two']);
    expect(r.closes).toEqual(['device-reset']);
  });

  it('device payload out of sequence (bytes lost on the way) → SequenceGapError, nothing delivered; resetForViolation → RST, protocol-error', () => {
    const { conn, host } = established();
    const r = recorder();
    conn.attach(r.sink);
    data(conn, Buffer.from('abc'));
    expect(() => {
      conn.onSegment(seg(ACK, TX_WINDOW, 1, DEVICE_ISN + 1 + 3 + 5), Buffer.from('later'));
    }).toThrow(SequenceGapError);
    expect(r.data.map((b) => b.toString())).toEqual(['abc']);
    expect(host.sent).toEqual([]);
    conn.resetForViolation();
    conn.resetForViolation();
    expect(host.sent.map((x) => x.flags)).toEqual([RST]);
    expect(r.closes).toEqual(['protocol-error']);
  });

  it('window overrun → WindowOverrunError (rst-connection), nothing delivered', () => {
    const { conn, host } = established();
    const r = recorder();
    conn.attach(r.sink);
    data(conn, Buffer.alloc(TX_WINDOW));
    expect(r.closes).toEqual([]);
    let thrown: unknown;
    try {
      data(conn, Buffer.alloc(1));
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(WindowOverrunError);
    expect((thrown as WindowOverrunError).wire).toBe('rst-connection');
    expect(r.data).toHaveLength(1);
    expect(host.sent).toEqual([]);
  });

  it('write sends what the peer window allows, keeps the rest (no 48-byte sliver), flushes on ACK, then onWritable', () => {
    const { conn, host } = established(1000, 2048);
    const r = recorder();
    conn.attach(r.sink);
    expect(conn.write(Buffer.alloc(3000))).toBe(false);
    expect(host.sent.map((s) => [s.seq, s.len])).toEqual([
      [1, 1000],
      [1001, 1000],
    ]);
    expect(conn.pendingWriteBytes).toBe(1000);
    conn.onSegment(seg(ACK, 2048, 2001), Buffer.alloc(0));
    expect(host.sent.slice(2).map((s) => [s.seq, s.len])).toEqual([[2001, 1000]]);
    expect(r.writable).toBe(1);
  });

  it('silly-window avoidance: a segment the window would cut short waits for an ACK while bytes are in flight', () => {
    // Window 2500, payload 1000: two full segments, then 500 of room. With 1000 in flight the
    // 500 waits; an ACK of one segment reopens 1500 and a full segment goes.
    const { conn, host } = established(1000, 2500);
    conn.attach(recorder().sink);
    expect(conn.write(Buffer.alloc(4000))).toBe(false);
    expect(host.sent.map((s) => s.len)).toEqual([1000, 1000]);
    conn.onSegment(seg(ACK, 2500, 1001), Buffer.alloc(0));
    expect(host.sent.map((s) => s.len)).toEqual([1000, 1000, 1000]);
    // The last 1000 fit the room exactly once the next ACK comes: pending data is never held back.
    conn.onSegment(seg(ACK, 2500, 2001), Buffer.alloc(0));
    expect(host.sent.map((s) => s.len)).toEqual([1000, 1000, 1000, 1000]);
    expect(conn.pendingWriteBytes).toBe(0);
  });

  it('silly-window avoidance: a window smaller than a payload still moves (half-window segments; whole window when idle)', () => {
    const { conn, host } = established(1000, 600);
    conn.attach(recorder().sink);
    expect(conn.write(Buffer.alloc(2000))).toBe(false);
    expect(host.sent.map((s) => s.len)).toEqual([600]); // nothing in flight: the whole window goes
    conn.onSegment(seg(ACK, 600, 301), Buffer.alloc(0)); // 300 in flight, room 300 = half the window
    expect(host.sent.map((s) => s.len)).toEqual([600, 300]);
    conn.onSegment(seg(ACK, 600, 501), Buffer.alloc(0)); // 400 in flight, room 200 < 300: waits
    expect(host.sent.map((s) => s.len)).toEqual([600, 300]);
    conn.onSegment(seg(ACK, 600, 901), Buffer.alloc(0)); // all acked
    expect(host.sent.map((s) => s.len)).toEqual([600, 300, 600]);
  });

  it('silly-window avoidance never holds back a small write that fits the room', () => {
    const { conn, host } = established(1000, 2048);
    conn.attach(recorder().sink);
    expect(conn.write(Buffer.alloc(2000))).toBe(true);
    expect(conn.write(Buffer.alloc(40))).toBe(true); // 48 bytes of room, 40 pending: out at once
    expect(host.sent.map((s) => s.len)).toEqual([1000, 1000, 40]);
  });

  it('an ack beyond what we sent (device bug) does not stall sending', () => {
    const { conn, host } = established(1000, 2048);
    conn.attach(recorder().sink);
    conn.onSegment(seg(ACK, 2048, 500), Buffer.alloc(0));
    expect(conn.write(Buffer.alloc(10))).toBe(true);
    expect(host.sent.map((s) => s.len)).toEqual([10]);
  });

  it('a bulk write sends full segments at once and leaves its short tail for the turn flush, where a later write of the turn fills it', () => {
    const { conn, host } = established(1000);
    conn.attach(recorder().sink);
    expect(conn.write(Buffer.alloc(2500))).toBe(true); // the tail is ours to send: keep reading
    expect(host.sent.map((s) => [s.seq, s.len])).toEqual([
      [1, 1000],
      [1001, 1000],
    ]);
    expect(conn.pendingWriteBytes).toBe(500);
    expect(host.turns.has(conn)).toBe(true);
    expect(conn.write(Buffer.alloc(700))).toBe(true); // 500 + 700: one more full segment, tail 200
    host.flushTurns();
    expect(host.sent.map((s) => [s.seq, s.len])).toEqual([
      [1, 1000],
      [1001, 1000],
      [2001, 1000],
      [3001, 200],
    ]);
    expect(conn.pendingWriteBytes).toBe(0);
  });

  it('with more to follow, a bulk tail is held while bytes are in flight, until the device acks everything', () => {
    const { conn, host } = established(1000);
    conn.attach(recorder().sink);
    expect(conn.write(Buffer.alloc(2500), true)).toBe(true);
    expect(conn.write(Buffer.alloc(700), true)).toBe(true);
    host.flushTurns();
    // The 200-byte tail of the bulk stream is held while our bytes are in flight (Nagle)...
    expect(host.sent.map((s) => [s.seq, s.len])).toEqual([
      [1, 1000],
      [1001, 1000],
      [2001, 1000],
    ]);
    expect(conn.pendingWriteBytes).toBe(200);
    conn.onSegment(seg(ACK, TX_WINDOW, 2001), Buffer.alloc(0));
    expect(host.sent).toHaveLength(3); // ...a partial ACK does not release it...
    conn.onSegment(seg(ACK, TX_WINDOW, 3001), Buffer.alloc(0));
    expect(host.sent.slice(3).map((s) => [s.seq, s.len])).toEqual([[3001, 200]]); // ...the ACK of everything does
    expect(conn.pendingWriteBytes).toBe(0);
  });

  it('a held bulk tail goes out alone after TAIL_HOLD_MS when neither an ACK nor another write comes', () => {
    vi.useFakeTimers();
    const { conn, host } = established(1000);
    conn.attach(recorder().sink);
    conn.write(Buffer.alloc(1300), true);
    host.flushTurns();
    expect(host.sent.map((s) => s.len)).toEqual([1000]);
    vi.advanceTimersByTime(TAIL_HOLD_MS - 1);
    expect(host.sent.map((s) => s.len)).toEqual([1000]); // still held: an ACK or a read may come
    vi.advanceTimersByTime(1);
    expect(host.sent.map((s) => [s.seq, s.len])).toEqual([[1, 1000], [1001, 300]]);
    expect(conn.pendingWriteBytes).toBe(0);
  });

  it('the tail timer measures each hold on its own: a hold that began late is not cut short', () => {
    vi.useFakeTimers();
    const { conn, host } = established(1000);
    conn.attach(recorder().sink);
    conn.write(Buffer.alloc(1300), true); // hold 1 of 300 bytes begins at t=0
    host.flushTurns();
    vi.advanceTimersByTime(TAIL_HOLD_MS - 1);
    conn.write(Buffer.alloc(900), true); // 1200: a full segment goes, hold 2 of 200 bytes begins
    host.flushTurns();
    expect(host.sent.map((s) => s.len)).toEqual([1000, 1000]);
    vi.advanceTimersByTime(1); // the timer of hold 1 fires: hold 2 is 1 ms old, it stays
    expect(host.sent.map((s) => s.len)).toEqual([1000, 1000]);
    vi.advanceTimersByTime(2 * TAIL_HOLD_MS);
    expect(host.sent.map((s) => s.len)).toEqual([1000, 1000, 200]);
  });

  it('a held bulk tail joins the next write into a full segment', () => {
    const { conn, host } = established(1000);
    conn.attach(recorder().sink);
    expect(conn.write(Buffer.alloc(1300), true)).toBe(true);
    host.flushTurns();
    expect(conn.write(Buffer.alloc(200), true)).toBe(true); // a small write joins the held tail: 500
    expect(conn.write(Buffer.alloc(1300), true)).toBe(true); // 1800: one full segment, tail 800
    host.flushTurns();
    expect(host.sent.map((s) => s.len)).toEqual([1000, 1000]);
    expect(conn.pendingWriteBytes).toBe(800);
    expect(conn.write(Buffer.alloc(100))).toBe(true); // the client ran dry: 900 go at once
    expect(host.sent.map((s) => s.len)).toEqual([1000, 1000, 900]);
  });

  it('reset() sends a held bulk tail before its RST', () => {
    const { conn, host } = established(1000);
    conn.attach(recorder().sink);
    conn.write(Buffer.alloc(1300), true);
    host.flushTurns();
    conn.reset();
    expect(host.sent.map((s) => [s.flags, s.len])).toEqual([
      [ACK, 1000],
      [ACK, 300],
      [RST, 0],
    ]);
  });

  it('a bulk write that fills the transport keeps its tail for drainTurn, and the writer waits', () => {
    const { conn, host } = established(1000);
    const r = recorder();
    conn.attach(r.sink);
    host.busyOnNextSend = true;
    expect(conn.write(Buffer.alloc(1300))).toBe(false);
    expect(host.sent.map((s) => s.len)).toEqual([1000]);
    expect(host.drains.has(conn)).toBe(true);
    expect(host.turns.has(conn)).toBe(false); // no deferred tail: it waits for the drain
    expect(conn.write(Buffer.alloc(100))).toBe(false); // nothing more goes into a full transport
    expect(host.sent.map((s) => s.len)).toEqual([1000]);
    host.drain();
    expect(host.sent.map((s) => s.len)).toEqual([1000, 400]);
    expect(host.drains.has(conn)).toBe(false);
    expect(r.writable).toBe(1);
  });

  it('packs several small pending writes into one segment', () => {
    const { conn, host } = established(1000, 0);
    conn.attach(recorder().sink);
    conn.write(Buffer.from('ab'));
    conn.write(Buffer.from('cd'));
    conn.write(Buffer.from('ef'));
    expect(host.sent).toEqual([]);
    conn.onSegment(seg(ACK, 256, 1), Buffer.alloc(0));
    expect(host.sent).toEqual([{ flags: ACK, seq: 1, ack: 1, len: 6 }]);
  });

  it('a transport another connection filled takes one segment; the rest waits for drainTurn, one segment per turn', () => {
    const { conn, host } = established(100);
    const r = recorder();
    conn.attach(r.sink);
    host.busy = true;
    expect(conn.write(Buffer.alloc(250))).toBe(false);
    expect(host.sent.map((s) => s.len)).toEqual([100]);
    expect(host.drains.has(conn)).toBe(true);
    host.busy = false;
    expect(conn.drainTurn()).toBe(true);
    expect(r.writable).toBe(0);
    expect(conn.drainTurn()).toBe(false);
    expect(host.sent.map((s) => s.len)).toEqual([100, 100, 50]);
    expect(r.writable).toBe(1);
  });

  it('a drainTurn whose segment fills the transport again keeps its place in the drain queue', () => {
    const { conn, host } = established(100);
    conn.attach(recorder().sink);
    host.busy = true;
    expect(conn.write(Buffer.alloc(250))).toBe(false);
    host.busy = false;
    host.busyOnNextSend = true;
    expect(conn.drainTurn()).toBe(true);
    expect(host.drains.has(conn)).toBe(true);
    expect(host.sent.map((s) => s.len)).toEqual([100, 100]);
  });

  it('with more to follow, a full transport drains full segments and holds the short tail while bytes are in flight', () => {
    const { conn, host } = established(100);
    const r = recorder();
    conn.attach(r.sink);
    host.busy = true;
    expect(conn.write(Buffer.alloc(250), true)).toBe(false);
    expect(host.sent.map((s) => s.len)).toEqual([100]);
    host.busy = false;
    expect(conn.drainTurn()).toBe(false); // the 50-byte tail is held (200 in flight), not the client
    expect(host.sent.map((s) => s.len)).toEqual([100, 100]);
    expect(r.writable).toBe(1);
    conn.onSegment(seg(ACK, TX_WINDOW, 201), Buffer.alloc(0));
    expect(host.sent.map((s) => s.len)).toEqual([100, 100, 50]);
  });

  it('a window update whose own send fills the transport still owes onWritable through drain', () => {
    // Regression: the client socket stayed paused for good (found with 8 parallel iproxy echoes).
    const { conn, host } = established(1000, 1000);
    const r = recorder();
    conn.attach(r.sink);
    expect(conn.write(Buffer.alloc(1500))).toBe(false);
    expect(host.drains.has(conn)).toBe(false);
    host.busyOnNextSend = true;
    conn.onSegment(seg(ACK, 1000, 1001), Buffer.alloc(0));
    expect(conn.pendingWriteBytes).toBe(0);
    expect(r.writable).toBe(0);
    expect(host.drains.has(conn)).toBe(true);
    host.drain();
    expect(r.writable).toBe(1);
  });

  it('reset() sends RST once and closes local-reset once; writes after are refused', () => {
    const { conn, host } = established();
    const r = recorder();
    conn.attach(r.sink);
    conn.reset();
    conn.reset();
    expect(host.sent.map((s) => s.flags)).toEqual([RST]);
    expect(r.closes).toEqual(['local-reset']);
    expect(conn.write(Buffer.from('x'))).toBe(false);
    expect(host.sent).toHaveLength(1);
  });

  it('device gone → closed, device-gone, no RST', () => {
    const { conn, host } = established();
    const r = recorder();
    conn.attach(r.sink);
    conn.deviceGone();
    conn.deviceGone();
    expect(r.closes).toEqual(['device-gone']);
    expect(host.sent).toEqual([]);
  });
});

describe('Connection end(): finish, then close', () => {
  /** The payload bytes and flags sent so far, then forgotten. */
  const take = (host: StubHost): Sent[] => host.sent.splice(0);

  it('nothing pending and a quiet device: RST at once, local-end; writes after are refused', () => {
    const { conn, host } = established();
    const r = recorder();
    conn.attach(r.sink);
    conn.end();
    conn.end();
    expect(take(host).map((s) => s.flags)).toEqual([RST]);
    expect(r.closes).toEqual(['local-end']);
    expect(conn.currentState).toBe('reset');
    expect(conn.write(Buffer.from('x'))).toBe(false);
    expect(host.sent).toEqual([]);
  });

  it('window-limited bytes still go out as the device acks; the RST follows the ack of the last byte', () => {
    const { conn, host } = established(1000, 2000);
    const r = recorder();
    conn.attach(r.sink);
    expect(conn.write(Buffer.alloc(5000))).toBe(false);
    expect(take(host).map((s) => s.len)).toEqual([1000, 1000]);
    conn.end();
    expect(conn.currentState).toBe('finishing');
    expect(host.sent).toEqual([]); // the window is full: nothing more yet, and no RST
    conn.onSegment(seg(ACK, 2000, 2001), Buffer.alloc(0));
    expect(take(host).map((s) => [s.flags, s.seq, s.len])).toEqual([[ACK, 2001, 1000], [ACK, 3001, 1000]]);
    conn.onSegment(seg(ACK, 2000, 4001), Buffer.alloc(0));
    expect(take(host).map((s) => [s.flags, s.seq, s.len])).toEqual([[ACK, 4001, 1000]]);
    expect(r.closes).toEqual([]);
    conn.onSegment(seg(ACK, 2000, 4501), Buffer.alloc(0)); // not everything yet
    expect(host.sent).toEqual([]);
    conn.onSegment(seg(ACK, 2000, 5001), Buffer.alloc(0));
    expect(take(host).map((s) => [s.flags, s.seq])).toEqual([[RST, 5001]]);
    expect(r.closes).toEqual(['local-end']);
    expect(r.writable).toBe(0); // the writer is done: no onWritable after end()
  });

  it('a held bulk tail goes out at once', () => {
    const { conn, host } = established(1000);
    conn.attach(recorder().sink);
    conn.write(Buffer.alloc(2500), true);
    host.flushTurns();
    expect(take(host).map((s) => s.len)).toEqual([1000, 1000]); // the 500-byte tail is held (rule 4)
    conn.end();
    expect(take(host).map((s) => s.len)).toEqual([500]);
    conn.onSegment(seg(ACK, TX_WINDOW, 2501), Buffer.alloc(0));
    expect(take(host).map((s) => s.flags)).toEqual([RST]);
  });

  it('a device that stops acknowledging is reset after endTimeoutMs without progress; each ack restarts the wait', () => {
    vi.useFakeTimers();
    const { conn, host } = established(1000, 3000);
    const r = recorder();
    conn.attach(r.sink);
    conn.write(Buffer.alloc(3000));
    conn.end();
    take(host);
    vi.advanceTimersByTime(END_TIMEOUT_MS - 1);
    conn.onSegment(seg(ACK, 3000, 1001), Buffer.alloc(0)); // progress
    vi.advanceTimersByTime(END_TIMEOUT_MS - 1);
    expect(host.sent).toEqual([]);
    expect(r.closes).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(take(host).map((s) => s.flags)).toEqual([RST]);
    expect(r.closes).toEqual(['local-end']);
  });

  it('the device still sending at end(): its data reaches the sink, and the RST waits until it had our whole window and sent nothing for END_QUIET_MS', () => {
    vi.useFakeTimers();
    const { conn, host } = established(1000);
    const r = recorder();
    conn.attach(r.sink);
    data(conn, Buffer.alloc(300, 1)); // a reply under way
    conn.write(Buffer.alloc(10));
    conn.end();
    take(host);
    data(conn, Buffer.alloc(200, 2), TX_WINDOW, 11); // acks our last byte, and more data comes
    expect(r.data.map((b) => b.length)).toEqual([300, 200]);
    expect(host.sent.filter((s) => s.flags === RST)).toEqual([]);
    vi.advanceTimersByTime(END_QUIET_MS * 3); // unconsumed data keeps our window from being wide open
    expect(host.sent.filter((s) => s.flags === RST)).toEqual([]);
    for (const done of r.dones) done();
    host.flushTurns();
    vi.advanceTimersByTime(30); // the delayed-ACK timer carries the ack for the last 500 bytes
    expect(host.sent.at(-1)).toMatchObject({ flags: ACK, ack: 501 });
    vi.advanceTimersByTime(2 * END_QUIET_MS);
    expect(host.sent.at(-1)?.flags).toBe(RST);
    expect(r.closes).toEqual(['local-end']);
  });

  it('a device that streams on after end() is reset END_QUIET_MAX_MS after it acknowledged our last byte', () => {
    vi.useFakeTimers();
    const { conn, host } = established(1000);
    const r = recorder();
    conn.attach(r.sink);
    data(conn, Buffer.alloc(100));
    conn.end(); // nothing of ours pending; the device is sending
    expect(r.closes).toEqual([]);
    for (let t = 0; t < END_QUIET_MAX_MS; t += 50) {
      vi.advanceTimersByTime(50);
      for (const done of r.dones.splice(0)) done();
      if (r.closes.length === 0) data(conn, Buffer.alloc(100));
    }
    vi.advanceTimersByTime(END_QUIET_MS);
    expect(r.closes).toEqual(['local-end']);
    expect(host.sent.at(-1)?.flags).toBe(RST);
  });

  it('end(true), nobody reads any more: a device still sending does not hold the RST, also after an earlier end()', () => {
    vi.useFakeTimers();
    const a = established(1000);
    const ra = recorder();
    a.conn.attach(ra.sink);
    data(a.conn, Buffer.alloc(100));
    a.conn.end(true);
    expect(ra.closes).toEqual(['local-end']);

    const b = established(1000);
    const rb = recorder();
    b.conn.attach(rb.sink);
    data(b.conn, Buffer.alloc(100));
    b.conn.write(Buffer.alloc(10));
    b.conn.end();
    data(b.conn, Buffer.alloc(100), TX_WINDOW, 11); // our last byte acked; the device is still sending
    expect(rb.closes).toEqual([]);
    b.conn.end(true); // the client's socket closed
    expect(rb.closes).toEqual(['local-end']);
    expect(b.host.sent.at(-1)?.flags).toBe(RST);
  });

  it('reset() while finishing aborts (local-reset); a device RST while finishing is device-reset, no RST back', () => {
    const a = established(1000, 1000);
    const ra = recorder();
    a.conn.attach(ra.sink);
    a.conn.write(Buffer.alloc(3000));
    a.conn.end();
    a.conn.reset();
    expect(ra.closes).toEqual(['local-reset']);
    expect(a.host.sent.at(-1)?.flags).toBe(RST);

    const b = established(1000, 1000);
    const rb = recorder();
    b.conn.attach(rb.sink);
    b.conn.write(Buffer.alloc(3000));
    b.conn.end();
    take(b.host);
    b.conn.onSegment(seg(RST), Buffer.alloc(0));
    expect(rb.closes).toEqual(['device-reset']);
    expect(b.host.sent).toEqual([]);
  });

  it('end() before the handshake is a reset', () => {
    const { conn, host, result } = make();
    conn.sendSyn();
    conn.end();
    expect(host.sent.map((s) => s.flags)).toEqual([SYN, RST]);
    expect(result.err).toBeInstanceOf(DeviceGoneError);
  });
});

describe('Connection properties', () => {
  const segmentArb = fc.record({
    flags: fc.oneof(fc.constantFrom(ACK, ACK, ACK, SYN | ACK, RST, FIN, FIN | ACK), fc.integer({ min: 0, max: 0x3f })),
    len: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 70000 })),
    window: fc.integer({ min: 0, max: 0xffff }).map((f) => f * 256),
    ack: fc.integer({ min: 0, max: 0xffffffff }),
    /** Mostly in sequence, as from a real phone; sometimes a stray seq (a lost packet). */
    inSequence: fc.oneof(fc.constant(true), fc.constant(true), fc.constant(true), fc.constant(false)),
  });
  const actionArb = fc.oneof(
    segmentArb.map((s) => ({ kind: 'segment' as const, ...s })),
    fc.record({ kind: fc.constant('done' as const) }),
    fc.record({ kind: fc.constant('write' as const), len: fc.integer({ min: 0, max: 5000 }) }),
    fc.record({ kind: fc.constant('attach' as const) }),
    fc.record({ kind: fc.constant('reset' as const) }),
    fc.record({ kind: fc.constant('end' as const) }),
    fc.record({ kind: fc.constant('gone' as const) }),
    fc.record({ kind: fc.constant('busy' as const), on: fc.boolean() }),
    fc.record({ kind: fc.constant('drain' as const) }),
    fc.record({ kind: fc.constant('flush' as const) }),
  );

  it('random sequences never throw, never exceed the window, and close exactly once', () => {
    fc.assert(
      fc.property(fc.array(actionArb, { maxLength: 60 }), (actions) => {
        const { conn, host, result } = make(1000);
        conn.sendSyn();
        const r = recorder();
        let attached = false;
        let doneCount = 0;
        let consumedBytes = 0;
        for (const action of actions) {
          switch (action.kind) {
            case 'segment':
              try {
                if (action.inSequence && action.flags === ACK && action.len > 0) data(conn, Buffer.alloc(action.len), action.window, action.ack);
                else conn.onSegment(seg(action.flags, action.window, action.ack), Buffer.alloc(action.len));
              } catch (err) {
                // what the session does with a violation (MuxSession.onViolation)
                if (!(err instanceof MuxProtocolError)) throw err;
                conn.resetForViolation();
              }
              break;
            case 'done': {
              // dones are called in delivery order, as a socket's write callbacks are
              const done = r.dones[doneCount];
              if (done !== undefined) {
                consumedBytes += r.data[doneCount]!.length;
                doneCount++;
                done();
              }
              break;
            }
            case 'write':
              conn.write(Buffer.alloc(action.len));
              break;
            case 'attach':
              if (!attached) conn.attach(r.sink);
              attached = true;
              break;
            case 'reset':
              conn.reset();
              break;
            case 'end':
              conn.end();
              break;
            case 'gone':
              conn.deviceGone();
              break;
            case 'busy':
              host.busy = action.on;
              break;
            case 'drain':
              host.drain();
              break;
            case 'flush':
              host.flushTurns();
              break;
          }
          const delivered = r.data.reduce((n, b) => n + b.length, 0);
          expect(delivered - consumedBytes).toBeLessThanOrEqual(TX_WINDOW);
          expect(conn.unconsumedBytes).toBeLessThanOrEqual(TX_WINDOW);
          expect(conn.unconsumedBytes).toBeGreaterThanOrEqual(0);
        }
        if (!attached) conn.attach(r.sink);
        conn.deviceGone();
        conn.reset();
        // a connection that was handed out closes exactly once; one that never opened never closes
        expect(r.closes).toHaveLength(result.conn === undefined ? 0 : 1);
        if (result.conn === undefined) expect(result.err).toBeInstanceOf(Error);
      }),
      { numRuns: 300 },
    );
  });

  it('a device that acks what it gets receives every written byte, in order, never a window-cut segment while bytes are in flight; after end() the RST comes last', () => {
    const stepArb = fc.oneof(
      fc.record({ kind: fc.constant('write' as const), len: fc.integer({ min: 1, max: 5000 }), more: fc.boolean() }),
      fc.record({ kind: fc.constant('ack' as const), upTo: fc.integer({ min: 0, max: 3 }) }),
      fc.record({ kind: fc.constant('busy' as const), on: fc.boolean() }),
      fc.record({ kind: fc.constant('drain' as const) }),
      fc.record({ kind: fc.constant('flush' as const) }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 30 }).map((n) => n * 256), fc.array(stepArb, { maxLength: 80 }), (window, steps) => {
        const maxPayload = 1000;
        const { conn, host } = established(maxPayload, window);
        const r = recorder();
        conn.attach(r.sink);
        let written = 0;
        let sentUpTo = 1; // next seq we expect on the wire
        let acked = 1;
        const check = (): void => {
          for (const sent of host.sent.splice(0)) {
            if (sent.len === 0) continue;
            expect(sent.seq).toBe(sentUpTo); // in order, no gap, no repeat
            const inFlightBefore = sentUpTo - acked;
            expect(inFlightBefore + sent.len).toBeLessThanOrEqual(window);
            expect(sent.len).toBeLessThanOrEqual(maxPayload);
            // Silly-window avoidance: a short segment sent with bytes in flight is all that was pending.
            if (inFlightBefore > 0 && sent.len < Math.min(maxPayload, window >>> 1)) expect(sent.seq + sent.len - 1).toBe(written);
            sentUpTo += sent.len;
          }
        };
        /** The device acks all but the newest `keep` segments' worth of bytes in flight. */
        const ack = (keep: number): void => {
          const target = Math.max(acked, sentUpTo - keep * maxPayload);
          if (target === acked) return;
          acked = target;
          conn.onSegment(seg(ACK, window, acked), Buffer.alloc(0));
          check();
        };
        for (const step of steps) {
          if (step.kind === 'write') {
            conn.write(Buffer.alloc(step.len), step.more);
            written += step.len;
          } else if (step.kind === 'ack') ack(step.upTo);
          else if (step.kind === 'busy') host.busy = step.on;
          else if (step.kind === 'drain') host.drain();
          else host.flushTurns();
          check();
        }
        // The client ends: the transport drains, turns flush, the device acks everything it got.
        const seen: Sent[] = [];
        const record = host.sent;
        conn.end();
        for (let i = 0; i < 10_000 && sentUpTo - 1 < written; i++) {
          host.drain();
          host.flushTurns();
          seen.push(...record.filter((x) => x.flags === RST));
          check();
          ack(0);
        }
        expect(sentUpTo - 1).toBe(written);
        expect(conn.pendingWriteBytes).toBe(0);
        expect(seen).toEqual([]); // no RST while any byte was unsent or unacked
        ack(0);
        // The ack of the last byte brought the RST (check() skipped it: no payload).
        expect(r.closes).toEqual(['local-end']);
        expect(conn.currentState).toBe('reset');
      }),
      { numRuns: 300 },
    );
  });
});
