import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { RETRY_MS, StderrWriter } from './stderr-writer.js';

/** A pipe that takes `room` bytes at a time (0: EAGAIN) and records what it took. */
class FakePipe {
  taken: Buffer[] = [];
  room = Infinity;
  error: string | undefined;
  calls = 0;
  write = (_fd: number, data: Buffer | string): number => {
    this.calls++;
    if (this.error !== undefined) throw Object.assign(new Error(this.error), { code: this.error });
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    if (this.room === 0) throw Object.assign(new Error('EAGAIN'), { code: 'EAGAIN' });
    const n = Math.min(buf.length, this.room);
    this.taken.push(Buffer.from(buf.subarray(0, n)));
    if (this.room !== Infinity) this.room -= n;
    return n;
  };
  text(): string {
    return Buffer.concat(this.taken).toString();
  }
}

function make(pipe: FakePipe, maxQueuedBytes = 1024): { writer: StderrWriter; drops: () => number } {
  let drops = 0;
  const writer = new StderrWriter({ fd: 2, maxQueuedBytes, onDrop: () => drops++, write: pipe.write });
  return { writer, drops: () => drops };
}

describe('StderrWriter', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('writes each line at once, one write(2) per line, while the reader keeps up', () => {
    const pipe = new FakePipe();
    const { writer } = make(pipe);
    writer.write('a\n');
    writer.write('bé\n');
    expect(pipe.text()).toBe('a\nbé\n');
    expect(pipe.calls).toBe(2);
    expect(writer.queuedBytes).toBe(0);
  });

  it('queues after EAGAIN, keeps the order, and drains on a retry once the reader is back', () => {
    const pipe = new FakePipe();
    const { writer, drops } = make(pipe);
    pipe.room = 0;
    writer.write('one\n');
    writer.write('two\n');
    expect(pipe.text()).toBe('');
    expect(writer.queuedBytes).toBe(8);
    pipe.room = Infinity;
    vi.advanceTimersByTime(RETRY_MS);
    expect(pipe.text()).toBe('one\ntwo\n');
    writer.write('three\n');
    expect(pipe.text()).toBe('one\ntwo\nthree\n');
    expect(drops()).toBe(0);
  });

  it('queues the rest of a short write before any later line', () => {
    const pipe = new FakePipe();
    const { writer } = make(pipe);
    pipe.room = 3;
    writer.write('abcdef\n');
    writer.write('gh\n');
    expect(pipe.text()).toBe('abc');
    pipe.room = Infinity;
    vi.advanceTimersByTime(RETRY_MS);
    expect(pipe.text()).toBe('abcdef\ngh\n');
  });

  it('drops and counts the lines that would go over the bound, and keeps retrying', () => {
    const pipe = new FakePipe();
    const { writer, drops } = make(pipe, 10);
    pipe.room = 0;
    for (let i = 0; i < 5; i++) writer.write('1234\n');
    expect(writer.queuedBytes).toBe(10);
    expect(drops()).toBe(3);
    vi.advanceTimersByTime(RETRY_MS * 5);
    expect(pipe.text()).toBe('');
    pipe.room = Infinity;
    vi.advanceTimersByTime(RETRY_MS);
    expect(pipe.text()).toBe('1234\n1234\n');
  });

  it('holds lines while the disk is full (ENOSPC), and writes them once there is room', () => {
    const pipe = new FakePipe();
    const { writer } = make(pipe);
    pipe.error = 'ENOSPC';
    writer.write('kept\n');
    vi.advanceTimersByTime(RETRY_MS * 3);
    expect(writer.queuedBytes).toBe(5);
    pipe.error = undefined;
    vi.advanceTimersByTime(RETRY_MS);
    expect(pipe.text()).toBe('kept\n');
  });

  it('goes quiet when the reader is gone (EPIPE): no throw, nothing kept', () => {
    const pipe = new FakePipe();
    const { writer } = make(pipe);
    pipe.room = 0;
    writer.write('held\n');
    pipe.error = 'EPIPE';
    vi.advanceTimersByTime(RETRY_MS);
    expect(writer.queuedBytes).toBe(0);
    const calls = pipe.calls;
    writer.write('after\n');
    expect(pipe.calls).toBe(calls);
  });

  it('flushSync writes the backlog, or gives up at the deadline', () => {
    vi.useRealTimers();
    const pipe = new FakePipe();
    const { writer } = make(pipe);
    pipe.room = 0;
    writer.write('last words\n');
    const t0 = Date.now();
    writer.flushSync(Date.now() + 3 * RETRY_MS);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2 * RETRY_MS);
    expect(pipe.text()).toBe('');
    pipe.room = Infinity;
    writer.flushSync(Date.now() + 1000);
    expect(pipe.text()).toBe('last words\n');
  });

  it('what reaches the reader is the lines not dropped, in order, whatever the pipe takes', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ line: fc.string({ maxLength: 40 }).map((s) => `${s}\n`), room: fc.oneof(fc.constant(0), fc.nat(64), fc.constant(Infinity)), tick: fc.boolean() }), { maxLength: 60 }),
        fc.nat(200),
        (steps, max) => {
          const pipe = new FakePipe();
          const kept: string[] = [];
          let drops = 0;
          const writer = new StderrWriter({ fd: 2, maxQueuedBytes: max, onDrop: () => { drops++; }, write: pipe.write });
          for (const step of steps) {
            pipe.room = step.room;
            const before = drops;
            writer.write(step.line);
            if (drops === before) kept.push(step.line);
            if (step.tick) vi.advanceTimersByTime(RETRY_MS);
          }
          pipe.room = Infinity;
          vi.advanceTimersByTime(RETRY_MS);
          expect(writer.queuedBytes).toBe(0);
          expect(pipe.text()).toBe(kept.join(''));
        },
      ),
    );
  });
});
