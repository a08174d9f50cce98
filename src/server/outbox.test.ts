import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Socket } from 'node:net';
import { Outbox, OutputBudget } from './outbox.js';
import type { Overflow } from './outbox.js';

/**
 * A socket whose kernel takes up to `room` bytes at once: a write that fits completes at the next
 * tick (writableLength 0 meanwhile, as Node's synchronous writes); one that does not stays pending
 * (counted in writableLength) until the client reads.
 */
class FakeSocket {
  destroyed = false;
  /** What the client has read, in order. */
  readonly delivered: Buffer[] = [];
  private readonly pending: { chunk: Buffer; cb: () => void }[] = [];
  private readonly ticks: (() => void)[] = [];

  constructor(private readonly room: number) {}

  get writableLength(): number {
    return this.pending.reduce((n, p) => n + p.chunk.length, 0);
  }

  /** Allow a write while another is in flight (the tunnel handoff flushes that way). */
  overlapAllowed = false;

  write(chunk: Buffer, cb: () => void): boolean {
    if (!this.overlapAllowed && this.pending.length + this.ticks.length > 0) throw new Error('a second write while one is in flight');
    if (this.pending.length === 0 && chunk.length <= this.room) {
      this.delivered.push(chunk);
      this.ticks.push(cb);
    } else {
      this.pending.push({ chunk, cb });
    }
    return true;
  }

  destroy(): void {
    this.destroyed = true;
  }

  /** The client reads everything pending. */
  read(): void {
    for (const p of this.pending.splice(0)) {
      this.delivered.push(p.chunk);
      this.ticks.push(p.cb);
    }
  }

  /** Run the write callbacks due. */
  tick(): void {
    for (const cb of this.ticks.splice(0)) cb();
  }
}

type Op = { kind: 'send'; client: number; size: number } | { kind: 'read'; client: number } | { kind: 'tick' };

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('send' as const), client: fc.nat(3), size: fc.integer({ min: 1, max: 3000 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('read' as const), client: fc.nat(3) }) },
  { weight: 3, arbitrary: fc.constant({ kind: 'tick' as const }) },
);

describe('Outbox and OutputBudget', () => {
  it('any sends, reads and ticks: each client gets its frames in order unless it was closed; the total stays within the budget; one write in flight per client', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), fc.integer({ min: 500, max: 4000 }), fc.integer({ min: 2000, max: 12_000 }), (ops, limit, max) => {
        const budget = new OutputBudget(max);
        const clients = [0, 1, 2, 3].map(() => {
          const socket = new FakeSocket(1000);
          const sent: Buffer[] = [];
          const overflows: Overflow[] = [];
          const outbox = new Outbox(socket as unknown as Socket, budget, (o) => {
            overflows.push(o);
            socket.destroy();
          });
          return { socket, sent, overflows, outbox };
        });
        let seq = 0;
        for (const o of ops) {
          if (o.kind === 'tick') {
            for (const c of clients) c.socket.tick();
            continue;
          }
          const c = clients[o.client];
          if (c === undefined) continue;
          if (o.kind === 'read') {
            c.socket.read();
            continue;
          }
          const frame = Buffer.alloc(o.size, seq++ & 0xff);
          const unreadBefore = c.outbox.unread;
          const ok = c.outbox.send(frame, limit);
          if (ok) c.sent.push(frame);
          else if (!c.socket.destroyed) throw new Error('refused without closing the client');
          // The client's own limit: refused only when it had something unread and would pass it.
          if (c.overflows.some((x) => x.kind === 'client')) expect(unreadBefore > 0 && unreadBefore + o.size > limit || c.socket.destroyed).toBe(true);
          expect(budget.bytes).toBeLessThanOrEqual(max);
          // An estimate from above: a kernel that read since the last write is seen at its callback.
          expect(budget.bytes).toBeGreaterThanOrEqual(clients.reduce((n, x) => n + (x.socket.destroyed ? 0 : x.outbox.unread), 0));
        }
        for (const c of clients) {
          expect(c.overflows.length).toBeLessThanOrEqual(1);
          if (c.socket.destroyed) continue;
          // Everything sent reaches the client once it reads and the writes complete, in order.
          for (let n = 0; n < 4; n++) {
            c.socket.read();
            c.socket.tick();
          }
          expect(Buffer.concat(c.socket.delivered).equals(Buffer.concat(c.sent))).toBe(true);
          expect(c.outbox.unread).toBe(0);
        }
        expect(budget.bytes).toBe(0);
      }),
    );
  });

  it('frames sent while a write is in flight go out as one write, after it', () => {
    const socket = new FakeSocket(10);
    const outbox = new Outbox(socket as unknown as Socket, new OutputBudget(1 << 20), () => undefined);
    outbox.send(Buffer.from('first-frame-too-big-for-the-kernel'), 1 << 20);
    outbox.send(Buffer.from('a'), 1 << 20);
    outbox.send(Buffer.from('b'), 1 << 20);
    expect(outbox.unread).toBe(36);
    socket.read();
    socket.tick();
    expect(socket.delivered.map(String)).toEqual(['first-frame-too-big-for-the-kernel', 'ab']);
  });

  it('close(flush) writes what is held, so tunnel bytes never overtake a reply; the budget forgets the client', () => {
    const socket = new FakeSocket(10);
    const budget = new OutputBudget(1 << 20);
    const outbox = new Outbox(socket as unknown as Socket, budget, () => undefined);
    socket.overlapAllowed = true;
    outbox.send(Buffer.from('a reply larger than the kernel'), 1 << 20);
    outbox.send(Buffer.from('result'), 1 << 20);
    outbox.close(true);
    expect(budget.bytes).toBe(0);
    socket.read();
    expect(socket.delivered.map(String)).toEqual(['a reply larger than the kernel', 'result']);
  });
});
