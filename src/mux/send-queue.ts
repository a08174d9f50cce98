/**
 * The send side of one mux connection: client bytes accepted by `write` and not yet sent, kept as
 * views (the one copy happens when the packet is encoded), and the rules that size the next
 * segment. This is the one place those rules live.
 *
 * Towards the device every segment is a USB OUT transfer, a device ACK, a fresh buffer and a copy,
 * so a bulk stream should send full segments, while request/response traffic must never wait:
 *
 *   1. Small writes go at once: a queue shorter than a segment goes out as soon as window and
 *      transport allow.
 *   2. Silly-window avoidance (RFC 1122 §4.2.3.4): while bytes are in flight, a segment the window
 *      would cut below min(max payload, window / 2) waits for the device's next ACK.
 *   3. A bulk write (a segment's worth or more queued) sends its full segments at once and leaves a
 *      short tail for the end of the event-loop turn (`fullOnly`), where the next client read of
 *      the same turn can fill it.
 *   4. The held bulk tail (Nagle, RFC 896, for a stream known to go on): when the latest write said
 *      more follows at once (`more`: the client's read filled its buffer), a tail shorter than a
 *      segment waits while bytes are in flight, for the next write to join it. The device's ACK of
 *      everything sends it alone, and so does TAIL_HOLD_MS without either (a phone that delays its
 *      ACKs). A write without `more` sends its tail at once. A held tail never holds the writer
 *      back (`blocked`).
 *
 * The queue decides sizes; the connection owns the window counters and does the sending.
 */
import { ByteQueue } from '../byte-queue.js';
import { TAIL_HOLD_MS } from './constants.js';

export class SendQueue {
  private readonly bytes = new ByteQueue();
  /** The latest write said more follows at once (rule 4). */
  private bulk = false;
  /** When the current hold of a bulk tail began (Date.now()); undefined while nothing is held. */
  private holdStartedAt: number | undefined;
  private holdTimer: NodeJS.Timeout | undefined;
  private holdTimerArmed = false;

  /**
   * @param maxPayload largest payload per segment, bytes
   * @param onHoldExpired a tail held for TAIL_HOLD_MS may go now (it is no longer held)
   */
  constructor(
    private readonly maxPayload: number,
    private readonly onHoldExpired: () => void,
  ) {}

  /** Bytes queued. */
  get length(): number {
    return this.bytes.length;
  }

  /** The writer must wait: bytes are queued that are not a held bulk tail. */
  get blocked(): boolean {
    const length = this.bytes.length;
    return length > 0 && !(this.bulk && length < this.maxPayload);
  }

  /** Queue a write. Returns true when it is a bulk write: a segment's worth or more queued (rule 3). */
  push(chunk: Buffer, more: boolean): boolean {
    this.bytes.push(chunk);
    this.bulk = more;
    return this.bytes.length >= this.maxPayload;
  }

  /**
   * Payload bytes for the next segment, or 0 to wait. `peerWindow`: what the device can take beyond
   * its ack; `inFlight`: our bytes it has not acked. With `fullOnly` (rule 3) a tail that fits the
   * room with room to spare waits too. May start the hold of a bulk tail (rule 4).
   */
  nextSegment(peerWindow: number, inFlight: number, fullOnly: boolean): number {
    const length = this.bytes.length;
    const room = Math.min(peerWindow - inFlight, this.maxPayload);
    if (length === 0 || room <= 0) return 0;
    if (room >= length) {
      if (this.bulk && length < this.maxPayload && inFlight > 0) {
        this.hold();
        return 0;
      }
      return fullOnly && length < room ? 0 : length;
    }
    const useful = Math.min(this.maxPayload, Math.max(1, peerWindow >>> 1));
    return room < useful && inFlight > 0 ? 0 : room;
  }

  /** After a bulk write: its short tail fits the room with room to spare, so it waits for the turn's end (rule 3). */
  hasShortTail(peerWindow: number, inFlight: number): boolean {
    const length = this.bytes.length;
    return length > 0 && length < Math.min(peerWindow - inFlight, this.maxPayload);
  }

  /** Remove the first `n` queued bytes for a segment: one view, or a list of views. Ends any hold. */
  take(n: number): Buffer | Buffer[] {
    const payload = this.bytes.takeViews(n);
    this.holdStartedAt = undefined;
    if (this.bytes.length === 0) this.bulk = false;
    return payload;
  }

  /** Hold nothing back any more (the connection is being reset: its accepted tail goes first). */
  release(): void {
    this.bulk = false;
  }

  /** Drop everything (the connection ended) and stop the hold timer. */
  clear(): void {
    this.bytes.clear();
    this.bulk = false;
    this.holdStartedAt = undefined;
    if (this.holdTimer !== undefined) clearTimeout(this.holdTimer);
    this.holdTimer = undefined;
    this.holdTimerArmed = false;
  }

  /**
   * A bulk tail is held: note when the hold began, and make sure the timer looks at it within
   * TAIL_HOLD_MS. One timer per queue, armed at most once per period; a hold that ends (a segment
   * went out) only clears `holdStartedAt`, so there is no clearTimeout per hold.
   */
  private hold(): void {
    this.holdStartedAt ??= Date.now();
    if (this.holdTimerArmed) return;
    this.holdTimerArmed = true;
    if (this.holdTimer === undefined) {
      this.holdTimer = setTimeout(this.onHoldTimer, TAIL_HOLD_MS);
      this.holdTimer.unref();
    } else {
      this.holdTimer.refresh();
    }
  }

  /** A tail held for TAIL_HOLD_MS is released; a younger hold is looked at again later. */
  private readonly onHoldTimer = (): void => {
    this.holdTimerArmed = false;
    const since = this.holdStartedAt;
    if (since === undefined || this.bytes.length === 0) return;
    if (Date.now() - since < TAIL_HOLD_MS) {
      this.hold();
      return;
    }
    this.bulk = false;
    this.holdStartedAt = undefined;
    this.onHoldExpired();
  };
}
