/**
 * What the daemon has written to command and listen clients and they have not read yet, bounded
 * per client and in total: a slow reader is closed, not buffered.
 *
 * One Outbox per client socket (until it becomes a tunnel, whose memory the mux window bounds):
 *
 *                         send()
 *   ┌──────────┐ ───────────────────────────▶ ┌────────────┐  send(): held here
 *   │   IDLE   │   write(frame), in flight    │  WRITING   │◀──┐
 *   │ unread 0 │ ◀─────────────────────────── │ one write  │───┘
 *   └──────────┘   written, nothing held      └────────────┘
 *                                                │    ▲  written, frames held: one write of them all
 *                                                └────┘
 *        any state ── overflow / evicted / close() ──▶ CLOSED (the socket is destroyed)
 *
 * One write at a time is in flight; frames sent meanwhile are held here and written as one buffer
 * when it completes (a listener that never reads would otherwise cost one write request, hundreds
 * of bytes, per notification). `unread` is the socket's writableLength plus what is held here.
 *
 * Limits: a frame is refused, and the client closed, when it would take the client's unread bytes
 * past its own limit, unless the client has nothing unread (a client that keeps up always gets its
 * reply, however large). The OutputBudget bounds the sum over all clients: when a write takes it
 * over, the clients holding the most unread bytes are closed until it fits (possibly this one).
 */
import type { Socket } from 'node:net';

/** The sum of every client's unread bytes, bounded. */
export class OutputBudget {
  readonly maxBytes: number;
  private total = 0;
  /** Unread bytes of each backlogged outbox, as last accounted. */
  private readonly members = new Map<Outbox, number>();

  constructor(maxBytes: number) {
    this.maxBytes = maxBytes;
  }

  /** Unread bytes over all clients, as last accounted (an estimate from above: kernels drain quietly). */
  get bytes(): number {
    return this.total;
  }

  /**
   * Keep the total within the budget after `who`'s unread bytes grew: the biggest holders are
   * closed until it fits. False when `who` itself had to go.
   */
  enforce(who: Outbox): boolean {
    while (this.total > this.maxBytes) {
      let biggest: Outbox | undefined;
      let most = -1;
      for (const [member, bytes] of this.members) {
        if (bytes > most) {
          most = bytes;
          biggest = member;
        }
      }
      if (biggest === undefined) return true;
      biggest.evict(this.total);
      if (biggest === who) return false;
    }
    return true;
  }

  account(who: Outbox, unread: number): void {
    this.total += unread - (this.members.get(who) ?? 0);
    if (unread > 0) this.members.set(who, unread);
    else this.members.delete(who);
  }
}

/** Why a frame was not sent: over the client's own limit, or evicted to keep the total budget. */
export type Overflow = { readonly kind: 'client'; readonly unread: number; readonly limit: number } | { readonly kind: 'budget'; readonly unread: number; readonly total: number };

export class Outbox {
  private readonly socket: Socket;
  private readonly budget: OutputBudget;
  private readonly onOverflow: (overflow: Overflow) => void;
  private held: Buffer[] = [];
  private heldBytes = 0;
  /** A write has not completed yet (its callback has not run). */
  private writing = false;
  private closed = false;
  private drainedCallback: (() => void) | undefined;

  /** `onOverflow` closes the client (once); the outbox is closed by then. */
  constructor(socket: Socket, budget: OutputBudget, onOverflow: (overflow: Overflow) => void) {
    this.socket = socket;
    this.budget = budget;
    this.onOverflow = onOverflow;
  }

  /** Bytes written or held for this client and not yet taken by its kernel socket. */
  get unread(): number {
    return this.socket.writableLength + this.heldBytes;
  }

  /**
   * Queue `frame` for the client. False when it was not sent: the client was over `limit` (or
   * evicted by the budget) and `onOverflow` has closed it, or the outbox is closed.
   */
  send(frame: Buffer, limit: number): boolean {
    if (this.closed || this.socket.destroyed) return false;
    const unread = this.unread;
    if (unread > 0 && unread + frame.length > limit) {
      this.overflow({ kind: 'client', unread, limit });
      return false;
    }
    if (this.writing) {
      this.held.push(frame);
      this.heldBytes += frame.length;
    } else {
      this.write(frame);
    }
    this.budget.account(this, this.unread);
    // Judged after the write: a frame the kernel took whole costs the budget nothing.
    return this.budget.enforce(this);
  }

  /** Call `callback` once nothing is unread (now, if nothing is). */
  whenDrained(callback: () => void): void {
    if (!this.writing && this.unread === 0) {
      callback();
      return;
    }
    this.drainedCallback = callback;
  }

  /**
   * Stop accounting: the socket closed, or it becomes a tunnel (`flush`: what is held is written
   * to the socket first, so tunnel bytes never overtake a reply).
   */
  close(flush = false): void {
    if (this.closed) return;
    this.closed = true;
    if (flush && this.held.length > 0 && !this.socket.destroyed) this.socket.write(this.takeHeld());
    this.held = [];
    this.heldBytes = 0;
    this.drainedCallback = undefined;
    this.budget.account(this, 0);
  }

  /** Closed by the budget to make room for another client's frame. */
  evict(total: number): void {
    this.overflow({ kind: 'budget', unread: this.unread, total });
  }

  private overflow(overflow: Overflow): void {
    this.close();
    this.onOverflow(overflow);
  }

  private write(chunk: Buffer): void {
    this.writing = true;
    this.socket.write(chunk, this.onWritten);
  }

  private readonly onWritten = (): void => {
    this.writing = false;
    if (this.closed) return;
    if (this.held.length > 0) {
      this.write(this.takeHeld());
      this.budget.account(this, this.unread);
      return;
    }
    this.budget.account(this, this.unread);
    const callback = this.drainedCallback;
    this.drainedCallback = undefined;
    callback?.();
  };

  private takeHeld(): Buffer {
    const out = this.held.length === 1 ? (this.held[0] ?? Buffer.alloc(0)) : Buffer.concat(this.held, this.heldBytes);
    this.held = [];
    this.heldBytes = 0;
    return out;
  }
}
