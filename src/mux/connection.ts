/**
 * One TCP-like connection to a device port (docs/usbmux-protocol.md §2.7–2.9). The session owns
 * the port pair and the wire; the connection owns its counters, its state and its sink. Its parent's
 * capabilities are injected as a `ConnectionHost` (yamux style): it never imports the session.
 *
 *                 SYN|ACK exactly: seq = ack = 1, bare ACK
 *   syn-sent ──────────────────────────────────────────────▶ established
 *     │  │                                                    │      │
 *     │  │ anything else (RST back unless it was RST)         │      │ transport gone (nothing sent)
 *     │  ▼                                                    │      ▼
 *     │ refused                                               │    closed
 *     │                                                       │
 *     │ connect timer (RST)     device RST (no RST back); FIN or other flags,
 *     ▼                         window overrun, reset() (RST from us)
 *   timeout                                                   ▼
 *                                                           reset
 *
 *   (syn-sent → closed as well when the device goes away while connecting.)
 *
 * There is no FIN in this protocol: connections end with RST. Data from the device is delivered as
 * views; our ack advances only when the sink calls `done` (consumed), and the window-opening ACK is
 * coalesced by the session (one flush per event-loop turn). The flush sends a bare ACK only once a
 * quarter of our window (ACK_EVERY_WINDOW_FRACTION) has been consumed since the last ack we sent:
 * the device then still has ≥ 3/4 of the window open, so it never waits on us, and smaller amounts
 * ride on our next data segment (request/response traffic) or the `ackDelayMs` safety-net timer.
 * Every bare ACK is a USB OUT transfer; this halves them on bulk transfers towards the host.
 *
 * Towards the device, a write smaller than a segment goes out at once (request/response traffic).
 * A bulk write (a segment's worth or more pending) sends full segments at once and leaves a short
 * tail for the same per-turn flush, so the next client read of that turn can fill it. Two rules
 * keep segments full on a bulk stream (every segment is a USB OUT transfer, a device ACK, a fresh
 * buffer and a copy):
 *   - silly-window avoidance (RFC 1122 §4.2.3.4): while bytes are in flight, a segment the window
 *     would cut below min(max payload, window / 2) waits for the device's next ACK;
 *   - Nagle for streams known to go on (RFC 896): when the writer says more follows at once
 *     (`write(chunk, more)`: the tunnel's read filled Node's 64 KiB buffer), a short tail waits
 *     while bytes are in flight for the next read to join it, at most about TAIL_HOLD_MS (5 ms)
 *     when neither the read nor the device's ACK comes. A read that emptied the socket sends its
 *     tail at once, so request/response traffic never waits on an ACK.
 * With the phone's 128 KiB window, 64 KiB socket reads then make 48 KiB packets, not 48 + 16 KiB
 * pairs and 32 KiB window remnants (USB bench: 34 → 21.7 OUT transfers per MiB).
 */
import type { Logger } from '../log.js';
import type { CloseReason, ConnectionSink, MuxConnection } from './api.js';
import { ACK_EVERY_WINDOW_FRACTION, TAIL_HOLD_MS, TcpFlag } from './constants.js';
import { ConnectionRefusedError, ConnectTimeoutError, DeviceGoneError, SequenceGapError, WindowOverrunError } from './errors.js';
import type { TcpHeader } from './wire.js';
import { formatTcpFlags } from './wire.js';

export type ConnectionState = 'syn-sent' | 'established' | 'closed' | 'reset' | 'refused' | 'timeout';

/** What a connection may ask of its session. */
export interface ConnectionHost {
  /** Encode and send one TCP segment from `conn` (control segments go even when busy). */
  sendSegment(conn: Connection, flags: number, payload: Buffer | readonly Buffer[] | undefined): void;
  /** True while the transport is above its high-water mark: data waits for `wantsDrain`. */
  isBusy(): boolean;
  /** `conn` owes the device an ACK or has a deferred data tail; the session calls `flushAck` once this event-loop turn. */
  ackOwed(conn: Connection): void;
  /** `conn` has data (or a writable notice) waiting for the transport to drain. */
  wantsDrain(conn: Connection): void;
  /** `conn` has ended; forget its port pair. */
  released(conn: Connection): void;
}

export interface ConnectionOptions {
  readonly deviceId: number;
  readonly localPort: number;
  readonly remotePort: number;
  /** Receive window we advertise, in bytes (TX_WINDOW). */
  readonly window: number;
  /** Largest payload per segment, in bytes (transport.maxPacketSize − 36). */
  readonly maxPayload: number;
  /** Safety-net delayed-ACK timer, in ms (ACK_TIMEOUT_MS). */
  readonly ackDelayMs: number;
  /** Child logger bound to `{ dev, sport, dport }`. */
  readonly log: Logger;
}

/** How the session learns the outcome of the handshake (control plane: closures are fine here). */
export interface ConnectWaiter {
  resolve(conn: Connection): void;
  reject(err: Error): void;
}

export class Connection implements MuxConnection {
  readonly localPort: number;
  readonly remotePort: number;
  readonly deviceId: number;
  private state: ConnectionState = 'syn-sent';

  /** u32: our next sequence number. 0 for the SYN, 1 after SYN|ACK, then + each payload sent. */
  private seqOut = 0;
  /** u32: our ack number = 1 + bytes the sink has consumed. Moved only by `done`. */
  private ackOut = 0;
  /** u32: the ack value carried by the last segment we sent (an ACK is owed while ≠ txAck). */
  private ackSent = 0;
  /** u32: how much of our data the device has acknowledged; from every incoming segment. */
  private rxAck = 0;
  /**
   * u32: the device sequence number the next payload must carry (its SYN|ACK seq + 1, then + each
   * payload). usbmuxd ignores the device's seq; we check it so that payload lost between the phone
   * and us (a packet swallowed by a lying length field, say) resets the connection instead of
   * silently leaving a hole in the client's byte stream.
   */
  private rxSeqExpected = 0;
  /** Bytes the device can take beyond rxAck (window field << 8); from every incoming segment. */
  private peerWindow = 0;
  /** Bytes delivered to the sink (or held for it) and not yet consumed; ≤ our window. */
  private unconsumed = 0;
  /**
   * Lengths of delivered payloads awaiting `done`, oldest first. Each `done` call releases the
   * oldest one: exact when the calls come in delivery order (socket write callbacks do), and the
   * running total is exact in any order. One call per `onData` is the sink's side of the contract.
   */
  private readonly consumeQueue: number[] = [];
  /** Device payload received before `attach`. */
  private held: Buffer[] = [];
  /** Client bytes not yet sent, as views; oldest first. */
  private pending: Buffer[] = [];
  /** Sum of `pending` lengths, in bytes. */
  private pendingBytes = 0;
  /** `write` returned false and the sink is owed `onWritable`. */
  private wantWritable = false;
  /** Already in the session's per-turn flush set (an owed ACK or a deferred tail). */
  private ackQueued = false;
  /** `write` left a short tail of a bulk write for this turn's flush (`flushAck`). */
  private tailDeferred = false;
  /**
   * The latest write said more bytes follow at once (`write(chunk, more)`: the client's read filled
   * its buffer). A pending tail shorter than a segment then waits while our bytes are in flight
   * (Nagle, RFC 896, limited to a stream that is known to go on): the next read joins it into a
   * full segment, or the device's ACK of everything sends it alone, or after TAIL_HOLD_MS its
   * timer does (a phone that delays ACKs). It does not hold the client
   * back (`blocked`). A write without `more` (the client's data ran out) sends it at once.
   */
  private bulkTail = false;
  /** When the current hold of a bulk tail began (Date.now()); undefined while nothing is held. */
  private holdStartedAt: number | undefined;
  private tailTimer: NodeJS.Timeout | undefined;
  private tailTimerArmed = false;
  private sink: ConnectionSink | undefined;
  /** Set when the connection ended before it had a sink; delivered by `attach`. */
  private closeReason: CloseReason | undefined;
  private closeDelivered = false;
  private ackTimer: NodeJS.Timeout | undefined;
  private ackTimerArmed = false;
  private connectTimer: NodeJS.Timeout | undefined;
  private connectTimeoutMs = 0;
  private waiter: ConnectWaiter | undefined;
  private synSent = false;

  readonly window: number;
  /** Consumed-but-unacked bytes at which the per-turn flush sends a bare ACK (window / 4). */
  private readonly ackThreshold: number;
  private readonly maxPayload: number;
  private readonly ackDelayMs: number;
  private readonly log: Logger;

  constructor(
    private readonly host: ConnectionHost,
    options: ConnectionOptions,
    waiter: ConnectWaiter,
  ) {
    this.deviceId = options.deviceId;
    this.localPort = options.localPort;
    this.remotePort = options.remotePort;
    this.window = options.window;
    this.ackThreshold = Math.floor(options.window / ACK_EVERY_WINDOW_FRACTION);
    this.maxPayload = options.maxPayload;
    this.ackDelayMs = options.ackDelayMs;
    this.log = options.log;
    this.waiter = waiter;
  }

  /** A method, not a field read: callees may change the state under the caller's narrowing. */
  private isEstablished(): boolean {
    return this.state === 'established';
  }

  /** Sequence number for the next segment we send (read by the session's encoder). */
  get txSeq(): number {
    return this.seqOut;
  }

  /** Ack number for the next segment we send (read by the session's encoder). */
  get txAck(): number {
    return this.ackOut;
  }

  get currentState(): ConnectionState {
    return this.state;
  }

  /** Bytes delivered to (or held for) the sink and not yet consumed. */
  get unconsumedBytes(): number {
    return this.unconsumed;
  }

  /** Client bytes accepted by `write` and not yet sent. */
  get pendingWriteBytes(): number {
    return this.pendingBytes;
  }

  /** Arm the connect timer; the SYN goes out with `sendSyn` once the session is active. */
  armConnectTimer(timeoutMs: number): void {
    this.connectTimeoutMs = timeoutMs;
    this.connectTimer = setTimeout(this.onConnectTimeout, timeoutMs);
    this.connectTimer.unref();
  }

  /** Send our SYN: seq 0, ack 0, our window. */
  sendSyn(): void {
    if (this.state !== 'syn-sent' || this.synSent) return;
    this.synSent = true;
    this.host.sendSegment(this, TcpFlag.SYN, undefined);
  }

  /** Our bytes the device has not acknowledged yet. */
  private inFlight(): number {
    // Signed u32 distance: an ack beyond what we sent (a device bug) counts as nothing in flight
    // rather than as 4 GiB in flight, which would stall the connection for good.
    return Math.max(0, (this.seqOut - this.rxAck) | 0);
  }

  /** Bytes we may send now: peer window minus bytes in flight, capped by the max payload. */
  sendable(): number {
    const room = this.peerWindow - this.inFlight();
    return room <= 0 ? 0 : Math.min(room, this.maxPayload);
  }

  /**
   * Size of the next segment, or 0 to wait. Sender-side silly-window avoidance (RFC 1122
   * §4.2.3.4): while bytes are in flight, a segment the window would cut short of both the
   * pending data and a useful size (a full payload, or half the window when that is smaller) waits
   * for the device's next ACK, which reopens the window and re-pumps us. With the phone's
   * 128 KiB window and 48 KiB payloads, the third segment would otherwise go out as 32 KiB and
   * every later one at whatever the last ACK freed: a USB OUT transfer and a device ACK each.
   */
  private nextSegmentSize(): number {
    const room = this.sendable();
    if (room === 0) return 0;
    if (room >= this.pendingBytes) {
      if (!this.bulkTail || this.pendingBytes >= this.maxPayload || this.inFlight() === 0) return this.pendingBytes;
      this.holdTail();
      return 0;
    }
    const useful = Math.min(this.maxPayload, Math.max(1, this.peerWindow >>> 1));
    return room < useful && this.inFlight() > 0 ? 0 : room;
  }

  /** The session tells us the ack value it just put on the wire for us. */
  noteSent(payloadLength: number): void {
    this.ackSent = this.ackOut;
    this.seqOut = (this.seqOut + payloadLength) >>> 0;
  }

  // ── device → host ────────────────────────────────────────────────────────────────────────

  /** One TCP segment from the device for this port pair; `payload` is a view. */
  onSegment(tcp: TcpHeader, payload: Buffer): void {
    // Every segment updates these before the state is looked at (§2.7).
    this.rxAck = tcp.ack;
    this.peerWindow = tcp.window;
    switch (this.state) {
      case 'syn-sent':
        this.rxSeqExpected = (tcp.seq + 1) >>> 0;
        this.onHandshakeReply(tcp.flags);
        return;
      case 'established':
        if (tcp.flags === TcpFlag.ACK) {
          if (payload.length > 0) {
            if (tcp.seq !== this.rxSeqExpected) {
              this.onSequenceGap(tcp.seq);
              return;
            }
            this.rxSeqExpected = (this.rxSeqExpected + payload.length) >>> 0;
            this.receive(payload);
          }
          if (this.isEstablished()) this.onWindowUpdate(); // receive() may have reset us
          return;
        }
        if ((tcp.flags & TcpFlag.RST) === 0) {
          // FIN or any other combination ends the connection, as in usbmuxd: RST from us.
          this.log.debug({ flags: formatTcpFlags(tcp.flags) }, 'unexpected flags from device; resetting');
          this.host.sendSegment(this, TcpFlag.RST, undefined);
        } else {
          this.log.debug('device reset the connection');
        }
        this.finish('reset', 'device-reset');
        return;
      case 'closed':
      case 'reset':
      case 'refused':
      case 'timeout':
        return;
    }
  }

  private onHandshakeReply(flags: number): void {
    if (flags === (TcpFlag.SYN | TcpFlag.ACK)) {
      // The device's own sequence number is not used (§2.7).
      this.seqOut = 1;
      this.ackOut = 1;
      this.state = 'established';
      this.clearConnectTimer();
      this.host.sendSegment(this, TcpFlag.ACK, undefined);
      this.log.debug('connected');
      const waiter = this.waiter;
      this.waiter = undefined;
      waiter?.resolve(this);
      return;
    }
    if ((flags & TcpFlag.RST) === 0) this.host.sendSegment(this, TcpFlag.RST, undefined);
    this.log.debug({ flags: formatTcpFlags(flags) }, 'connection refused');
    this.failConnect('refused', new ConnectionRefusedError(this.remotePort));
  }

  /** Device payload out of sequence: bytes went missing on the way, so the stream cannot go on. */
  private onSequenceGap(seq: number): void {
    const err = new SequenceGapError(this.rxSeqExpected, seq);
    this.log.warn({ err }, 'device data out of sequence; resetting');
    this.host.sendSegment(this, TcpFlag.RST, undefined);
    this.finish('reset', 'protocol-error');
  }

  private receive(payload: Buffer): void {
    const length = payload.length;
    if (this.unconsumed + length > this.window) {
      const err = new WindowOverrunError(this.unconsumed, length, this.window);
      this.log.warn({ err }, 'device overran our window; resetting');
      this.host.sendSegment(this, TcpFlag.RST, undefined);
      this.finish('reset', 'protocol-error');
      return;
    }
    this.unconsumed += length;
    const sink = this.sink;
    if (sink === undefined) {
      this.held.push(payload);
      return;
    }
    this.consumeQueue.push(length);
    sink.onData(payload, this.onConsumed);
  }

  /** The `done` callback handed with every payload: one function per connection, not per packet. */
  private readonly onConsumed = (): void => {
    const length = this.consumeQueue.shift();
    if (length === undefined) return;
    this.unconsumed -= length;
    if (this.state !== 'established') return;
    this.ackOut = (this.ackOut + length) >>> 0;
    this.queueTurn();
    if (!this.ackTimerArmed) {
      this.ackTimerArmed = true;
      if (this.ackTimer === undefined) {
        this.ackTimer = setTimeout(this.onAckTimer, this.ackDelayMs);
        this.ackTimer.unref();
      } else {
        this.ackTimer.refresh();
      }
    }
  };

  /** Pending bytes the client must wait for: any, except a bulk stream's held tail. */
  private blocked(): boolean {
    return this.pendingBytes > 0 && !(this.bulkTail && this.pendingBytes < this.maxPayload);
  }

  /** Ask for this turn's flush (`flushAck`), once. */
  private queueTurn(): void {
    if (this.ackQueued) return;
    this.ackQueued = true;
    this.host.ackOwed(this);
  }

  /**
   * Called by the session's once-per-turn flush: first a deferred short tail of client data (it
   * carries our ack), then the owed ACK unless data carried it, or it is less than a quarter window
   * (the safety-net timer armed in onConsumed covers that).
   */
  flushAck(): void {
    this.ackQueued = false;
    if (this.tailDeferred && this.state === 'established') {
      this.pump(Number.POSITIVE_INFINITY, false);
      if (this.host.isBusy() && this.pendingBytes > 0) this.host.wantsDrain(this);
    }
    if (this.state === 'established' && this.ackOut !== this.ackSent) {
      if (((this.ackOut - this.ackSent) >>> 0) < this.ackThreshold) return;
      this.host.sendSegment(this, TcpFlag.ACK, undefined);
    }
  }

  /**
   * The bulk tail is held (Nagle): note when the hold began and make sure a timer looks at it
   * within TAIL_HOLD_MS. One timer per connection, armed at most once per period; a hold that
   * ends (a segment went out) just clears `holdStartedAt`, so no clearTimeout per hold.
   */
  private holdTail(): void {
    this.holdStartedAt ??= Date.now();
    if (this.tailTimerArmed) return;
    this.tailTimerArmed = true;
    if (this.tailTimer === undefined) {
      this.tailTimer = setTimeout(this.onTailTimer, TAIL_HOLD_MS);
      this.tailTimer.unref();
    } else {
      this.tailTimer.refresh();
    }
  }

  /** A tail held for TAIL_HOLD_MS goes out alone; a younger hold is looked at again later. */
  private readonly onTailTimer = (): void => {
    this.tailTimerArmed = false;
    const since = this.holdStartedAt;
    if (since === undefined || this.state !== 'established' || this.pendingBytes === 0) return;
    if (Date.now() - since < TAIL_HOLD_MS) {
      this.holdTail();
      return;
    }
    this.log.debug({ pending: this.pendingBytes }, 'held bulk tail sent by its timer (no ACK, no further read)');
    this.bulkTail = false;
    this.pump(Number.POSITIVE_INFINITY, false);
    if (this.host.isBusy() && this.pendingBytes > 0) this.host.wantsDrain(this);
  };

  /** Safety net: if the coalesced flush has not carried the ACK out yet, send it now. */
  private readonly onAckTimer = (): void => {
    this.ackTimerArmed = false;
    if (this.state === 'established' && this.ackOut !== this.ackSent) {
      this.log.debug('delayed-ACK timer sent an owed ACK');
      this.host.sendSegment(this, TcpFlag.ACK, undefined);
    }
  };

  // ── host → device ────────────────────────────────────────────────────────────────────────

  write(chunk: Buffer, more = false): boolean {
    if (this.state !== 'established') return false; // ended: the bytes are dropped with the connection
    if (chunk.length > 0) {
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
      this.bulkTail = more;
      if (this.pendingBytes < this.maxPayload) {
        // Small write: out at once (interactive traffic), unless more follows at once.
        this.pump(Number.POSITIVE_INFINITY, false);
      } else {
        // Bulk: full segments now; a short tail waits for this turn's flush, where the next read
        // of the same turn may fill it, and past it while our bytes are in flight if more follows
        // (`bulkTail`; bench/results/2026-11-26-full-segments.md: USB OUT transfers per MiB 34 → 21.7).
        this.pump(Number.POSITIVE_INFINITY, true);
        if (this.pendingBytes > 0 && !this.host.isBusy() && this.sendable() > this.pendingBytes) {
          this.tailDeferred = true;
          this.queueTurn();
          return true;
        }
      }
    }
    if (!this.blocked() && !this.host.isBusy()) return true;
    this.wantWritable = true;
    if (this.host.isBusy()) this.host.wantsDrain(this);
    return false;
  }

  /** The device opened its window (or acked): send what now fits, then maybe `onWritable`. */
  private onWindowUpdate(): void {
    if (this.pendingBytes > 0 && !this.host.isBusy()) this.pump(Number.POSITIVE_INFINITY, false);
    if (this.host.isBusy()) {
      // Pending bytes, or an owed `onWritable`, now wait for the transport to drain. Forgetting the
      // owed notice here (when our own send just filled the transport) paused the client for good.
      if (this.pendingBytes > 0 || this.wantWritable) this.host.wantsDrain(this);
      return;
    }
    this.notifyWritable();
  }

  /**
   * One turn of the session's round-robin drain: at most one segment. Returns true while this
   * connection still wants turns (data that fits the window, or a writable notice on a busy pipe).
   */
  drainTurn(): boolean {
    if (this.state !== 'established') return false;
    this.pump(1, false);
    if (this.host.isBusy()) return this.pendingBytes > 0 || this.wantWritable;
    if (this.pendingBytes > 0 && this.nextSegmentSize() > 0) return true;
    this.notifyWritable();
    return false;
  }

  /**
   * Send up to `maxSegments` segments from `pending` while window and transport allow. With
   * `fullOnly`, stop at a tail shorter than a segment could be (max payload, or the window).
   */
  private pump(maxSegments: number, fullOnly: boolean): void {
    let sent = 0;
    this.tailDeferred = false;
    while (this.pendingBytes > 0 && sent < maxSegments && this.state === 'established' && !this.host.isBusy()) {
      const n = this.nextSegmentSize();
      if (n === 0) return;
      if (fullOnly && this.pendingBytes < this.sendable()) return;
      this.host.sendSegment(this, TcpFlag.ACK, this.takePending(n));
      this.holdStartedAt = undefined;
      if (this.pendingBytes === 0) this.bulkTail = false;
      sent++;
    }
  }

  /** Remove the first `n` pending bytes: one view when one chunk holds them, else a list of views. */
  private takePending(n: number): Buffer | Buffer[] {
    this.pendingBytes -= n;
    const first = this.pending[0];
    if (first !== undefined && first.length >= n) {
      if (first.length === n) this.pending.shift();
      else this.pending[0] = first.subarray(n);
      return first.length === n ? first : first.subarray(0, n);
    }
    const parts: Buffer[] = [];
    let left = n;
    while (left > 0) {
      const chunk = this.pending[0];
      if (chunk === undefined) break;
      if (chunk.length <= left) {
        parts.push(chunk);
        this.pending.shift();
        left -= chunk.length;
      } else {
        parts.push(chunk.subarray(0, left));
        this.pending[0] = chunk.subarray(left);
        left = 0;
      }
    }
    return parts;
  }

  private notifyWritable(): void {
    if (!this.wantWritable || this.blocked() || this.host.isBusy() || this.state !== 'established') return;
    this.wantWritable = false;
    this.sink?.onWritable();
  }

  // ── lifecycle ────────────────────────────────────────────────────────────────────────────

  attach(sink: ConnectionSink): void {
    if (this.sink !== undefined) throw new Error('MuxConnection.attach called twice');
    this.sink = sink;
    const held = this.held;
    this.held = [];
    for (const payload of held) {
      if (this.closeDelivered) break; // the sink reset us while taking held data
      this.consumeQueue.push(payload.length);
      sink.onData(payload, this.onConsumed);
    }
    if (this.closeReason !== undefined) this.deliverClose(this.closeReason);
  }

  reset(): void {
    switch (this.state) {
      case 'established':
        // A held bulk tail was accepted from the client: it goes before the RST (what the window
        // and a busy transport allow, as it would have without the hold).
        this.bulkTail = false;
        if (this.pendingBytes > 0) this.pump(Number.POSITIVE_INFINITY, false);
        this.host.sendSegment(this, TcpFlag.RST, undefined);
        this.finish('reset', 'local-reset');
        return;
      case 'syn-sent':
        if (this.synSent) this.host.sendSegment(this, TcpFlag.RST, undefined);
        this.failConnect('reset', new DeviceGoneError(this.deviceId));
        return;
      case 'closed':
      case 'reset':
      case 'refused':
      case 'timeout':
        return;
    }
  }

  /** The transport is gone: end without anything on the wire. */
  deviceGone(cause?: Error): void {
    switch (this.state) {
      case 'established':
        this.finish('closed', 'device-gone');
        return;
      case 'syn-sent':
        this.failConnect('closed', new DeviceGoneError(this.deviceId, cause === undefined ? undefined : { cause }));
        return;
      case 'closed':
      case 'reset':
      case 'refused':
      case 'timeout':
        return;
    }
  }

  private readonly onConnectTimeout = (): void => {
    this.connectTimer = undefined;
    if (this.state !== 'syn-sent') return;
    if (this.synSent) this.host.sendSegment(this, TcpFlag.RST, undefined);
    const timeoutMs = this.connectTimeoutMs;
    this.log.debug({ timeoutMs }, 'connect timed out');
    this.failConnect('timeout', new ConnectTimeoutError(this.remotePort, timeoutMs));
  };

  private failConnect(state: 'refused' | 'timeout' | 'closed' | 'reset', err: Error): void {
    this.state = state;
    this.clearTimers();
    this.host.released(this);
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.reject(err);
  }

  private finish(state: 'reset' | 'closed', reason: CloseReason): void {
    this.state = state;
    this.clearTimers();
    this.pending = [];
    this.pendingBytes = 0;
    this.bulkTail = false;
    this.host.released(this);
    if (this.sink === undefined) this.closeReason = reason;
    else this.deliverClose(reason);
  }

  private deliverClose(reason: CloseReason): void {
    if (this.closeDelivered) return;
    this.closeDelivered = true;
    this.held = [];
    this.log.debug({ reason }, 'connection closed');
    this.sink?.onClose(reason);
  }

  private clearConnectTimer(): void {
    if (this.connectTimer !== undefined) clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
  }

  private clearTimers(): void {
    this.clearConnectTimer();
    if (this.ackTimer !== undefined) clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    this.ackTimerArmed = false;
    if (this.tailTimer !== undefined) clearTimeout(this.tailTimer);
    this.tailTimer = undefined;
    this.tailTimerArmed = false;
    this.holdStartedAt = undefined;
  }
}
