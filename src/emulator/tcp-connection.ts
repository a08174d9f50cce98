/**
 * One device-side TCP connection of the emulated phone: sequence numbers, the host's window,
 * the phone's ACK policy, and the send queue of its service.
 *
 *      host SYN to a listening port
 *               |  phone sends SYN|ACK (seq = ISN, ack = host seq + 1)
 *               v
 *        [ SYN_RCVD ] --host ACK (maybe with data)--> [ ESTABLISHED ]
 *               |                                           |
 *               |  host RST / phone close() / link gone     |  host RST / phone close() /
 *               |  / unexpected flags (phone sends RST)     |  rstAfterBytes / link gone / unexpected flags
 *               v                                           v
 *        [ CLOSED ] <---------------------------------------+
 *
 * Flow control, phone → host: the phone never has more than the host's advertised window
 * (field << 8) in flight beyond the host's ack. A slow host consumer therefore throttles it.
 * Host → phone: the phone ACKs at once by default (piggybacked on data it sends in the same turn),
 * with a bare ACK per packet before its service replies (`ackEveryPacket`), after `ackDelayMs`, or
 * never (`withholdAcks`), and counts host data outside its own window.
 *
 * A service callback that throws is a crashed service: the phone resets that connection (RST) and
 * counts it in `serviceFailures`; the phone and its other connections carry on.
 *
 * Sequence arithmetic is modulo 2^32: `seqDiff(a, b)` is the signed distance a − b.
 */
import { TcpFlag } from './codec.js';
import type { TcpHeader } from './codec.js';
import type { FaultKnobs } from './options.js';
import type { Service, ServiceCloseReason, ServiceConnection } from './service.js';
import type { EmulatorStats } from './stats.js';

/** What a connection needs from the phone that owns it. */
export interface ConnectionOwner {
  readonly faults: FaultKnobs;
  readonly stats: EmulatorStats;
  /** Largest TCP payload per packet under the current header size and `maxPacket`. */
  maxPayload(): number;
  sendTcp(header: TcpHeader, payload: Buffer): void;
  /** The connection reached CLOSED; drop it from the table. */
  forget(conn: DeviceTcpConnection): void;
}

export type ConnectionState = 'SYN_RCVD' | 'ESTABLISHED' | 'CLOSED';

const EMPTY = Buffer.alloc(0);

export function seqDiff(a: number, b: number): number {
  return (a - b) | 0;
}

function seqAdd(a: number, n: number): number {
  return (a + n) >>> 0;
}

export class DeviceTcpConnection implements ServiceConnection {
  private stateValue: ConnectionState = 'SYN_RCVD';
  /** Next seq the phone will send. */
  private sndNext: number;
  /** Oldest byte the host has not acked yet. */
  private sndUna: number;
  /** Next host seq expected. */
  private rcvNext: number;
  /** Ack value and window of the last packet the phone sent (for window checks). */
  private lastAckSent: number;
  private lastWindowSent: number;
  /** The host's advertised window in bytes. */
  private hostWindow: number;
  private readonly queue: Buffer[] = [];
  private queuedBytesValue = 0;
  /** Payload bytes crossed in both directions (for rstAfterBytes). */
  private crossed = 0;
  private ackTimer: NodeJS.Timeout | undefined;
  private flushing = false;

  constructor(
    private readonly owner: ConnectionOwner,
    private readonly service: Service,
    readonly port: number,
    readonly hostPort: number,
    syn: TcpHeader,
    isn: number,
  ) {
    this.sndUna = isn >>> 0;
    this.sndNext = seqAdd(isn, 1); // the SYN takes one sequence number
    this.rcvNext = seqAdd(syn.seq, 1);
    this.lastAckSent = this.rcvNext;
    this.hostWindow = syn.window;
    this.lastWindowSent = owner.faults.window;
  }

  /** Answer the SYN with SYN|ACK and tell the service (call once, after registering). */
  start(): void {
    this.sendSegment(TcpFlag.SYN | TcpFlag.ACK, this.sndUna, EMPTY);
    this.owner.stats.connectionsOpened++;
    try {
      this.service.onOpen?.(this);
    } catch {
      this.serviceFailed();
      return;
    }
    this.flush();
  }

  get state(): ConnectionState {
    return this.stateValue;
  }

  get open(): boolean {
    return this.stateValue !== 'CLOSED';
  }

  get queuedBytes(): number {
    return this.queuedBytesValue;
  }

  /** Bytes sent and not yet acked by the host. */
  get inFlight(): number {
    return seqDiff(this.sndNext, this.sndUna);
  }

  get maxPayload(): number {
    return this.owner.maxPayload();
  }

  get sendRoom(): number {
    return Math.max(0, this.hostWindow - this.inFlight - this.queuedBytesValue);
  }

  /** The host's current ack and window, as the phone understood them. */
  get hostView(): { readonly ack: number; readonly window: number; readonly sndNext: number; readonly rcvNext: number } {
    return { ack: this.sndUna, window: this.hostWindow, sndNext: this.sndNext, rcvNext: this.rcvNext };
  }

  write(data: Buffer): void {
    if (!this.open || data.length === 0) return;
    this.queue.push(data);
    this.queuedBytesValue += data.length;
    this.flush();
  }

  close(): void {
    if (!this.open) return;
    if (this.owner.faults.finInsteadOfRst) {
      this.sendSegment(TcpFlag.FIN | TcpFlag.ACK, this.sndNext, EMPTY);
      this.owner.stats.finOut++;
    } else {
      this.sendSegment(TcpFlag.RST, this.sndNext, EMPTY);
      this.owner.stats.rstOut++;
    }
    this.finish('device-closed');
  }

  /** The link went away: no packet, just tell the service. */
  linkGone(): void {
    if (this.open) this.finish('link-gone');
  }

  /** A host packet for this connection. */
  onSegment(tcp: TcpHeader, payload: Buffer): void {
    if (!this.open) return;
    const stats = this.owner.stats;
    if ((tcp.flags & TcpFlag.RST) !== 0) {
      stats.rstIn++;
      this.finish('host-reset');
      return;
    }
    if ((tcp.flags & ~(TcpFlag.ACK | TcpFlag.PSH)) !== 0 || (tcp.flags & TcpFlag.ACK) === 0) {
      stats.unexpectedFlags++;
      this.close();
      return;
    }
    this.stateValue = 'ESTABLISHED';
    this.takeAck(tcp);
    if (payload.length > 0) {
      if (!this.takeData(tcp.seq, payload)) return;
    }
    this.flush();
    if (payload.length > 0) this.ackAfterData();
  }

  private takeAck(tcp: TcpHeader): void {
    this.hostWindow = tcp.window;
    const ahead = seqDiff(tcp.ack, this.sndUna);
    if (ahead < 0) return; // old ack: nothing new
    if (seqDiff(tcp.ack, this.sndNext) > 0) {
      this.owner.stats.hostBadAcks++;
      return;
    }
    this.sndUna = tcp.ack;
  }

  /** Returns false when the connection closed while taking the data. */
  private takeData(seq: number, payload: Buffer): boolean {
    const stats = this.owner.stats;
    if (seq !== this.rcvNext) stats.hostDataSeqErrors++;
    const windowEnd = seqAdd(this.lastAckSent, this.lastWindowSent);
    if (seqDiff(seqAdd(this.rcvNext, payload.length), windowEnd) > 0) stats.hostWindowViolations++;
    this.rcvNext = seqAdd(this.rcvNext, payload.length);
    stats.tcpBytesIn += payload.length;
    this.crossed += payload.length;
    const faults = this.owner.faults;
    if (faults.ackEveryPacket && faults.ackDelayMs <= 0 && !faults.withholdAcks) this.sendBareAck();
    try {
      this.service.onData(this, payload);
    } catch {
      this.serviceFailed();
      return false;
    }
    const limit = this.owner.faults.rstAfterBytes;
    if (this.open && limit > 0 && this.crossed >= limit) this.close();
    return this.open;
  }

  /** Ack policy after host data: at once (unless data already carried it), later, or never. */
  private ackAfterData(): void {
    if (!this.open || this.lastAckSent === this.rcvNext) return;
    const faults = this.owner.faults;
    if (faults.withholdAcks) return;
    if (faults.ackDelayMs <= 0) {
      this.sendBareAck();
      return;
    }
    this.ackTimer ??= setTimeout(() => {
      this.ackTimer = undefined;
      if (this.open && !this.owner.faults.withholdAcks && this.lastAckSent !== this.rcvNext) this.sendBareAck();
    }, faults.ackDelayMs);
  }

  private sendBareAck(): void {
    this.sendSegment(TcpFlag.ACK, this.sndNext, EMPTY);
    this.owner.stats.acksOut++;
  }

  /** Send what the host window allows; ask an endless source for more while room is left. */
  private flush(): void {
    // Nothing but the SYN|ACK goes out until the host has ACKed it.
    if (this.flushing || this.stateValue !== 'ESTABLISHED') return;
    this.flushing = true;
    try {
      for (;;) {
        this.drainQueue();
        if (!this.open || this.queuedBytesValue > 0 || this.sendRoom <= 0 || this.service.onWritable === undefined) break;
        const before = this.queuedBytesValue;
        try {
          this.service.onWritable(this);
        } catch {
          this.serviceFailed();
          break;
        }
        if (this.queuedBytesValue === before) break;
      }
    } finally {
      this.flushing = false;
    }
  }

  private drainQueue(): void {
    const limit = this.owner.faults.rstAfterBytes;
    while (this.open && this.queue.length > 0) {
      let size = Math.min(this.hostWindow - this.inFlight, this.owner.maxPayload());
      if (limit > 0) size = Math.min(size, limit - this.crossed);
      if (size <= 0) break;
      const head = this.queue[0];
      if (head === undefined) break;
      let chunk = head;
      if (head.length > size) {
        chunk = head.subarray(0, size);
        this.queue[0] = head.subarray(size);
      } else {
        this.queue.shift();
      }
      this.queuedBytesValue -= chunk.length;
      this.sendSegment(TcpFlag.ACK, this.sndNext, chunk);
      this.sndNext = seqAdd(this.sndNext, chunk.length);
      this.owner.stats.tcpBytesOut += chunk.length;
      this.crossed += chunk.length;
      if (limit > 0 && this.crossed >= limit) this.close();
    }
  }

  private sendSegment(flags: number, seq: number, payload: Buffer): void {
    const faults = this.owner.faults;
    // withholdAcks freezes the ack field: the host sees no progress at all.
    const ack = faults.withholdAcks && (flags & TcpFlag.SYN) === 0 ? this.lastAckSent : this.rcvNext;
    this.owner.sendTcp({ sport: this.port, dport: this.hostPort, seq, ack, flags, window: faults.window }, payload);
    this.lastAckSent = ack;
    this.lastWindowSent = faults.window;
    if (this.ackTimer !== undefined && ack === this.rcvNext) {
      clearTimeout(this.ackTimer);
      this.ackTimer = undefined;
    }
  }

  private finish(reason: ServiceCloseReason): void {
    this.stateValue = 'CLOSED';
    if (this.ackTimer !== undefined) clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    this.queue.length = 0;
    this.queuedBytesValue = 0;
    this.owner.forget(this);
    try {
      this.service.onClose?.(this, reason);
    } catch {
      this.owner.stats.serviceFailures++; // already closed: nothing more to reset
    }
  }

  /**
   * A service callback threw: the phone's side of a crashed service. The host sees RST, nothing
   * else is told; the phone and its other connections carry on. (try/catch at each call site, no
   * closure per packet.)
   */
  private serviceFailed(): void {
    this.owner.stats.serviceFailures++;
    this.close();
  }
}
