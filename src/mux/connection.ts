/**
 * One TCP-like connection to a device port (docs/usbmux-protocol.md §2.7–2.9). The session owns the
 * port pair and the wire; the connection owns its counters, its state, its send queue and its sink,
 * fills in the TCP header of every segment it sends and hands it to the session (`host.send`),
 * which answers whether the transport takes more. It never imports the session (yamux style).
 *
 *              session active          SYN|ACK exactly: seq = ack = 1, bare ACK
 *   pending ─────────────────▶ syn-sent ──────────────────────────────────────▶ established
 *     │                         │  anything else: refused (RST back unless it was RST)  │   │
 *     │                         │  connect timer: timeout (RST)                        │   │ end()
 *     │                         │  reset(): reset (RST); device gone: closed           │   ▼
 *     │ timer, reset(),         ▼                                                      │ finishing
 *     └─ device gone ─────▶   ended ◀───────────────────────────────────────────────────┴───┘
 *                                device RST: reset; FIN or other flags, a protocol violation
 *                                (the session's onViolation), reset(): reset (RST from us);
 *                                transport gone: closed (nothing sent);
 *                                finishing, when end-gate.ts says so: reset (RST from us), sink
 *                                hears local-end
 *
 * There is no FIN in this protocol: connections end with RST. So `end()` (the client finished
 * writing) cannot tell the device; the connection stays open both ways while its EndGate waits
 * for the device to acknowledge every byte `write` accepted (and to go quiet, if it was sending).
 * Data from the device is delivered as views; our ack advances only when the sink calls `done`
 * (consumed). The window-opening ACK waits for the session's once-per-turn flush (`flushTurn`),
 * which sends a bare ACK only once a quarter of our window (ACK_EVERY_WINDOW_FRACTION) has been
 * consumed since the last ack we sent: the device still has at least 3/4 of the window open then,
 * so it never waits on us, and smaller amounts ride on our next data segment or the `ackDelayMs`
 * safety-net timer. Towards the device, segment sizes follow the rules of send-queue.ts.
 */
import type { CloseReason, ConnectionSink, DeviceConnection } from '../devices/api.js';
import { ConnectionRefusedError, ConnectTimeoutError, DeviceGoneError } from '../devices/errors.js';
import type { Logger } from '../log.js';
import { ACK_EVERY_WINDOW_FRACTION, END_QUIET_MAX_MS, END_QUIET_MS, TcpFlag } from './constants.js';
import { EndGate } from './end-gate.js';
import type { EndReason } from './end-gate.js';
import { SequenceGapError, WindowOverrunError } from './errors.js';
import { SendQueue } from './send-queue.js';
import type { ChunkRecycler } from './transport.js';
import type { TcpHeader } from './wire.js';
import { formatTcpFlags } from './wire.js';

/** How a connection ended. */
type Outcome = 'closed' | 'reset' | 'refused' | 'timeout';
type Phase = 'pending' | 'syn-sent' | 'established' | 'finishing' | 'ended';
export type ConnectionState = Exclude<Phase, 'ended'> | Outcome;

/** What a connection may ask of its session. */
export interface ConnectionHost {
  /**
   * Encode and send one segment of `conn` with the TCP header it filled in. Returns whether the
   * transport takes more: after false, the session calls `conn.drainTurn()` once it has drained.
   */
  send(conn: Connection, tcp: TcpHeader, payload: Buffer | readonly Buffer[] | undefined): boolean;
  /** `conn` wants `flushTurn()` at the end of this event-loop turn (an owed ACK or a short tail). */
  wantsTurn(conn: Connection): void;
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
  /** Give up on the handshake after this many ms (ConnectTimeoutError). */
  readonly connectTimeoutMs: number;
  /** After end(), reset anyway once the device has acked nothing new for this many ms (END_ACK_TIMEOUT_MS). */
  readonly endTimeoutMs: number;
  /** Child logger bound to `{ dev, sport, dport }`. */
  readonly log: Logger;
  /** The transport's IN buffer reuse, if any: payloads are views of its buffers. */
  readonly recycler?: ChunkRecycler | undefined;
}

/** How the session learns the outcome of the handshake (control plane: closures are fine here). */
export interface ConnectWaiter {
  resolve(conn: Connection): void;
  reject(err: Error): void;
}

export class Connection implements DeviceConnection {
  readonly localPort: number;
  readonly remotePort: number;
  private phase: Phase = 'pending';
  private outcome: Outcome | undefined;

  /** u32: our next sequence number: 0 for the SYN, 1 after the handshake, then + each payload sent. */
  private txSeq = 0;
  /** u32: the ack we send: 1 + bytes the sink has consumed. Moved only by `done`. */
  private txAck = 0;
  /** u32: the ack the last segment we sent carried (an ACK is owed while it differs from txAck). */
  private txAckSent = 0;
  /** u32: how much of our data the device has acknowledged; from every incoming segment. */
  private rxAck = 0;
  /**
   * u32: the sequence number the device's next payload must carry (its SYN|ACK seq + 1, then + each
   * payload). usbmuxd ignores the device's seq; we check it so that payload lost between the phone
   * and us (a packet swallowed by a lying length field, say) resets the connection instead of
   * silently leaving a hole in the client's byte stream.
   */
  private rxSeq = 0;
  /** Bytes the device can take beyond rxAck (window field << 8); from every incoming segment. */
  private rxWindow = 0;
  /** Bytes delivered to the sink (or held for it) and not yet consumed; ≤ our window. */
  private unconsumed = 0;
  /**
   * Delivered payloads awaiting `done`, oldest first. Each `done` call releases the oldest one:
   * exact when the calls come in delivery order (socket write callbacks do), and the running total
   * is exact in any order. One call per `onData` is the sink's side of the contract.
   */
  private readonly consumeQueue: Buffer[] = [];
  /** Device payload received before `attach` (retained from the recycler, when there is one). */
  private held: Buffer[] = [];
  /** The transport's IN buffer reuse: payload views are retained until consumed (ChunkRecycler). */
  private readonly recycler: ChunkRecycler | undefined;
  /** Client bytes not yet sent, and the rules that size segments. */
  private readonly queue: SendQueue;
  /** Our last send found the transport full: no data until the session's `drainTurn`. */
  private stalled = false;
  /** `write` returned false and the sink is owed `onWritable`. */
  private wantWritable = false;
  /** Already in the session's per-turn set. */
  private turnQueued = false;
  /** `write` left a bulk write's short tail for this turn's flush (send-queue.ts rule 3). */
  private tailDeferred = false;
  private sink: ConnectionSink | undefined;
  /** Set when the connection ended before it had a sink; delivered by `attach`. */
  private closeReason: CloseReason | undefined;
  private closeDelivered = false;
  private ackTimer: NodeJS.Timeout | undefined;
  private ackTimerArmed = false;
  private connectTimer: NodeJS.Timeout | undefined;
  /** When the device's latest payload arrived (Date.now()); tells end() whether it is still sending. */
  private lastRxAt = 0;
  /** While finishing: when the RST may go (end-gate.ts). */
  private endGate: EndGate | undefined;
  private waiter: ConnectWaiter | undefined;
  /** The TCP header of our next segment: ports and window fixed, the rest filled per send. */
  private readonly header: TcpHeader;

  private readonly deviceId: number;
  /** The receive window we advertise, in bytes. */
  private readonly window: number;
  /** Consumed-but-unacked bytes at which the per-turn flush sends a bare ACK (window / 4). */
  private readonly ackThreshold: number;
  private readonly ackDelayMs: number;
  private readonly connectTimeoutMs: number;
  private readonly endTimeoutMs: number;
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
    this.header = { sport: options.localPort, dport: options.remotePort, seq: 0, ack: 0, flags: 0, window: options.window };
    this.ackThreshold = Math.floor(options.window / ACK_EVERY_WINDOW_FRACTION);
    this.queue = new SendQueue(options.maxPayload, this.onHoldExpired);
    this.ackDelayMs = options.ackDelayMs;
    this.connectTimeoutMs = options.connectTimeoutMs;
    this.endTimeoutMs = options.endTimeoutMs;
    this.log = options.log;
    this.recycler = options.recycler;
    this.waiter = waiter;
    this.connectTimer = setTimeout(this.onConnectTimeout, options.connectTimeoutMs);
    this.connectTimer.unref();
  }

  get currentState(): ConnectionState {
    return this.outcome ?? (this.phase === 'ended' ? 'closed' : this.phase);
  }

  /** Bytes delivered to (or held for) the sink and not yet consumed. */
  get unconsumedBytes(): number {
    return this.unconsumed;
  }

  /** Data flows: established, or finishing after end(). */
  private get open(): boolean {
    return this.phase === 'established' || this.phase === 'finishing';
  }

  /** Client bytes accepted by `write` and not yet sent. */
  get pendingWriteBytes(): number {
    return this.queue.length;
  }

  /** Send our SYN (seq 0, ack 0, our window); the session calls this once it is active. */
  sendSyn(): void {
    if (this.phase !== 'pending') return;
    this.phase = 'syn-sent';
    this.transmit(TcpFlag.SYN, undefined, 0);
  }

  /** One segment out through the session. False: the transport is full, data waits for drainTurn. */
  private transmit(flags: number, payload: Buffer | readonly Buffer[] | undefined, length: number): boolean {
    const header = this.header;
    header.seq = this.txSeq;
    header.ack = this.txAck;
    header.flags = flags;
    const more = this.host.send(this, header, payload);
    this.txAckSent = this.txAck;
    this.txSeq = (this.txSeq + length) >>> 0;
    if (!more) this.stalled = true;
    return more;
  }

  /** Our bytes the device has not acknowledged yet. */
  private inFlight(): number {
    // Signed u32 distance: an ack beyond what we sent (a device bug) counts as nothing in flight
    // rather than as 4 GiB in flight, which would stall the connection for good.
    return Math.max(0, (this.txSeq - this.rxAck) | 0);
  }

  // ── device → host ────────────────────────────────────────────────────────────────────────

  /**
   * One TCP segment from the device for this port pair; `payload` is a view. Throws
   * SequenceGapError or WindowOverrunError (nothing delivered); the session acts on it.
   */
  onSegment(tcp: TcpHeader, payload: Buffer): void {
    // Every segment updates these before the state is looked at (§2.7).
    if (tcp.ack !== this.rxAck) this.endGate?.noteAckProgress();
    this.rxAck = tcp.ack;
    this.rxWindow = tcp.window;
    switch (this.phase) {
      case 'pending':
        return; // the session dispatches TCP only once active, when every SYN has gone out
      case 'syn-sent':
        this.rxSeq = (tcp.seq + 1) >>> 0;
        this.onHandshakeReply(tcp.flags);
        return;
      case 'established':
      case 'finishing':
        if (tcp.flags !== TcpFlag.ACK) {
          this.onEndFromDevice(tcp.flags);
          return;
        }
        if (payload.length > 0) this.receive(tcp.seq, payload);
        // The device acked or opened its window: send what now fits, then maybe onWritable.
        if (this.queue.length > 0) this.pump(Number.POSITIVE_INFINITY, false);
        this.notifyWritable();
        this.endGate?.check();
        return;
      case 'ended':
        return;
    }
  }

  private onHandshakeReply(flags: number): void {
    if (flags === (TcpFlag.SYN | TcpFlag.ACK)) {
      // The device's own sequence number is not used (§2.7).
      this.txSeq = 1;
      this.txAck = 1;
      this.phase = 'established';
      this.clearConnectTimer();
      this.transmit(TcpFlag.ACK, undefined, 0);
      this.log.debug('connected');
      const waiter = this.waiter;
      this.waiter = undefined;
      waiter?.resolve(this);
      return;
    }
    if ((flags & TcpFlag.RST) === 0) this.transmit(TcpFlag.RST, undefined, 0);
    this.log.debug({ flags: formatTcpFlags(flags) }, 'connection refused');
    this.failConnect('refused', new ConnectionRefusedError(this.remotePort));
  }

  /** RST ends the connection; FIN or any other combination does too, as in usbmuxd, with RST from us. */
  private onEndFromDevice(flags: number): void {
    if ((flags & TcpFlag.RST) === 0) {
      this.log.debug({ flags: formatTcpFlags(flags) }, 'unexpected flags from device; resetting');
      this.transmit(TcpFlag.RST, undefined, 0);
    } else {
      this.log.debug('device reset the connection');
    }
    this.finish('reset', 'device-reset');
  }

  private receive(seq: number, payload: Buffer): void {
    const length = payload.length;
    if (seq !== this.rxSeq) throw new SequenceGapError(this.rxSeq, seq);
    if (this.unconsumed + length > this.window) throw new WindowOverrunError(this.unconsumed, length, this.window);
    this.rxSeq = (this.rxSeq + length) >>> 0;
    this.unconsumed += length;
    this.lastRxAt = Date.now();
    this.endGate?.noteData();
    const sink = this.sink;
    if (sink === undefined) {
      this.recycler?.retain(payload);
      this.held.push(payload);
      return;
    }
    this.deliver(sink, payload, false);
  }

  /**
   * One payload to the sink. With a recycler, its buffer stays out of reuse until the sink's
   * `done` (a sink that says it lets go of the bytes then), or for good (any other sink).
   */
  private deliver(sink: ConnectionSink, payload: Buffer, retained: boolean): void {
    const recycler = this.recycler;
    if (recycler !== undefined) {
      if (sink.releasesOnDone !== true) recycler.keep(payload);
      else if (!retained) recycler.retain(payload);
    }
    this.consumeQueue.push(payload);
    sink.onData(payload, this.onConsumed);
  }

  /** The session acts on a protocol violation of this connection: RST, and the sink hears protocol-error. */
  resetForViolation(): void {
    if (!this.open) return;
    this.transmit(TcpFlag.RST, undefined, 0);
    this.finish('reset', 'protocol-error');
  }

  /** The `done` callback handed with every payload: one function per connection, not per packet. */
  private readonly onConsumed = (): void => {
    const payload = this.consumeQueue.shift();
    if (payload === undefined) return;
    const length = payload.length;
    this.recycler?.release(payload);
    this.unconsumed -= length;
    if (!this.open) return;
    this.txAck = (this.txAck + length) >>> 0;
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

  /** Ask for this turn's flush (`flushTurn`), once. */
  private queueTurn(): void {
    if (this.turnQueued) return;
    this.turnQueued = true;
    this.host.wantsTurn(this);
  }

  /**
   * The session's once-per-turn flush: first a deferred short tail of client data (it carries our
   * ack), then the owed ACK unless data carried it or it is less than a quarter window (the
   * safety-net timer armed in onConsumed covers that).
   */
  flushTurn(): void {
    this.turnQueued = false;
    if (!this.open) return;
    if (this.tailDeferred) this.pump(Number.POSITIVE_INFINITY, false);
    if (((this.txAck - this.txAckSent) >>> 0) >= this.ackThreshold) this.transmit(TcpFlag.ACK, undefined, 0);
  }

  /** Safety net: if the coalesced flush has not carried the ACK out yet, send it now. */
  private readonly onAckTimer = (): void => {
    this.ackTimerArmed = false;
    if (this.open && this.txAck !== this.txAckSent) {
      this.log.debug('delayed-ACK timer sent an owed ACK');
      this.transmit(TcpFlag.ACK, undefined, 0);
    }
  };

  /** A bulk tail held for TAIL_HOLD_MS goes out alone (send-queue.ts rule 4). */
  private readonly onHoldExpired = (): void => {
    if (!this.open) return;
    this.log.debug({ pending: this.queue.length }, 'held bulk tail sent by its timer (no ACK, no further read)');
    this.pump(Number.POSITIVE_INFINITY, false);
  };

  // ── host → device ────────────────────────────────────────────────────────────────────────

  write(chunk: Buffer, more = false): boolean {
    // Ended: the bytes are dropped with the connection. Finishing: end() promised no more writes.
    if (this.phase !== 'established') return false;
    if (chunk.length > 0) {
      const bulk = this.queue.push(chunk, more);
      this.pump(Number.POSITIVE_INFINITY, bulk);
      if (bulk && !this.stalled && this.queue.hasShortTail(this.rxWindow, this.inFlight())) {
        this.tailDeferred = true;
        this.queueTurn();
        return true;
      }
    }
    if (!this.stalled && !this.queue.blocked) return true;
    this.wantWritable = true;
    return false;
  }

  /**
   * One turn of the session's round-robin drain: at most one segment. Returns true while this
   * connection still wants turns (the transport filled again, or data that fits the window).
   */
  drainTurn(): boolean {
    if (!this.open) return false;
    this.stalled = false;
    if (!this.pump(1, false)) return true;
    if (this.queue.length > 0 && this.queue.nextSegment(this.rxWindow, this.inFlight(), false) > 0) return true;
    this.notifyWritable();
    return false;
  }

  /**
   * Send up to `maxSegments` segments while window and transport allow (`fullOnly`: rule 3 of
   * send-queue.ts). Returns false when the transport is full.
   */
  private pump(maxSegments: number, fullOnly: boolean): boolean {
    this.tailDeferred = false;
    if (this.stalled) return false;
    for (let sent = 0; sent < maxSegments && this.open; sent++) {
      const n = this.queue.nextSegment(this.rxWindow, this.inFlight(), fullOnly);
      if (n === 0) break;
      if (!this.transmit(TcpFlag.ACK, this.queue.take(n), n)) return false;
    }
    return true;
  }

  private notifyWritable(): void {
    if (!this.wantWritable || this.stalled || this.queue.blocked || this.phase !== 'established') return;
    this.wantWritable = false;
    this.sink?.onWritable();
  }

  // ── lifecycle ────────────────────────────────────────────────────────────────────────────

  attach(sink: ConnectionSink): void {
    if (this.sink !== undefined) throw new Error('DeviceConnection.attach called twice');
    this.sink = sink;
    const held = this.held;
    this.held = [];
    for (let i = 0; i < held.length; i++) {
      const payload = held[i];
      if (payload === undefined) continue;
      if (this.closeDelivered) {
        // the sink reset us while taking held data: the rest is dropped
        for (let j = i; j < held.length; j++) this.releaseView(held[j]);
        break;
      }
      this.deliver(sink, payload, true);
    }
    if (this.closeReason !== undefined) this.deliverClose(this.closeReason);
  }

  /**
   * Finish, then close: every byte `write` accepted goes out (a held tail at once), the device keeps
   * sending to the sink, and once it has acknowledged the last of our bytes we send RST and the
   * sink hears `local-end`. A device that acknowledges nothing for endTimeoutMs is reset anyway.
   * `readerGone` (also after an earlier end()): nobody takes the device's bytes any more, so the
   * RST does not wait for the device to go quiet.
   */
  end(readerGone = false): void {
    switch (this.phase) {
      case 'established': {
        this.phase = 'finishing';
        this.wantWritable = false;
        const busy = this.unconsumed > 0 || this.txAck !== this.txAckSent || Date.now() - this.lastRxAt < END_QUIET_MS;
        const host = {
          allAcked: () => this.allAcked(),
          deviceSeq: () => this.rxSeq,
          windowOpen: () => this.unconsumed === 0 && this.txAck === this.txAckSent,
          close: (reason: EndReason) => { this.endGateClosed(reason); },
        };
        const gate = new EndGate(host, this.endTimeoutMs, readerGone, busy);
        this.endGate = gate;
        this.queue.release();
        if (this.queue.length > 0) this.pump(Number.POSITIVE_INFINITY, false);
        if (gate.start()) this.log.debug({ queued: this.queue.length, unacked: this.inFlight() }, 'finishing: waiting for the device to acknowledge our last bytes');
        return;
      }
      case 'pending':
      case 'syn-sent':
        this.reset(); // nothing was accepted before the handshake
        return;
      case 'finishing':
        if (readerGone) this.endGate?.readerGone();
        return;
      case 'ended':
        return;
    }
  }

  /** Every byte `write` accepted has been sent and acknowledged. */
  private allAcked(): boolean {
    return this.queue.length === 0 && this.inFlight() === 0;
  }

  /** The end gate's verdict: RST, and the sink hears local-end. */
  private endGateClosed(reason: EndReason): void {
    if (this.phase !== 'finishing') return;
    if (reason === 'ack-timeout') {
      this.log.warn(
        { unacked: this.inFlight(), unsent: this.queue.length, timeoutMs: this.endTimeoutMs },
        'device acknowledged nothing after the client ended; resetting with bytes unconfirmed',
      );
    } else if (reason === 'still-sending') {
      this.log.debug({ maxMs: END_QUIET_MAX_MS }, 'device still sending after the client ended; resetting');
    }
    this.transmit(TcpFlag.RST, undefined, 0);
    this.finish('reset', 'local-end');
  }

  reset(): void {
    switch (this.phase) {
      case 'established':
      case 'finishing':
        // A held bulk tail was accepted from the client: it goes before the RST (what the window
        // and the transport allow, as it would have without the hold).
        this.queue.release();
        if (this.queue.length > 0) this.pump(Number.POSITIVE_INFINITY, false);
        this.transmit(TcpFlag.RST, undefined, 0);
        this.finish('reset', 'local-reset');
        return;
      case 'syn-sent':
        this.transmit(TcpFlag.RST, undefined, 0);
        this.failConnect('reset', new DeviceGoneError(this.deviceId));
        return;
      case 'pending':
        this.failConnect('reset', new DeviceGoneError(this.deviceId));
        return;
      case 'ended':
        return;
    }
  }

  /** The transport is gone: end without anything on the wire. */
  deviceGone(cause?: Error): void {
    switch (this.phase) {
      case 'established':
      case 'finishing':
        this.finish('closed', 'device-gone');
        return;
      case 'pending':
      case 'syn-sent':
        this.failConnect('closed', new DeviceGoneError(this.deviceId, cause === undefined ? undefined : { cause }));
        return;
      case 'ended':
        return;
    }
  }

  private readonly onConnectTimeout = (): void => {
    this.connectTimer = undefined;
    if (this.phase !== 'pending' && this.phase !== 'syn-sent') return;
    if (this.phase === 'syn-sent') this.transmit(TcpFlag.RST, undefined, 0);
    this.log.debug({ timeoutMs: this.connectTimeoutMs }, 'connect timed out');
    this.failConnect('timeout', new ConnectTimeoutError(this.remotePort, this.connectTimeoutMs));
  };

  private failConnect(outcome: Outcome, err: Error): void {
    this.terminate(outcome);
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.reject(err);
  }

  private finish(outcome: 'reset' | 'closed', reason: CloseReason): void {
    this.terminate(outcome);
    if (this.sink === undefined) this.closeReason = reason;
    else this.deliverClose(reason);
  }

  private terminate(outcome: Outcome): void {
    this.phase = 'ended';
    this.outcome = outcome;
    this.queue.clear();
    this.clearConnectTimer();
    this.endGate?.stop();
    if (this.ackTimer !== undefined) clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    this.ackTimerArmed = false;
    this.host.released(this);
  }

  private releaseView(view: Buffer | undefined): void {
    if (view !== undefined) this.recycler?.release(view);
  }

  private deliverClose(reason: CloseReason): void {
    if (this.closeDelivered) return;
    this.closeDelivered = true;
    for (const view of this.held) this.releaseView(view);
    this.held = [];
    this.log.debug({ reason }, 'connection closed');
    this.sink?.onClose(reason);
  }

  private clearConnectTimer(): void {
    if (this.connectTimer !== undefined) clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
  }
}
