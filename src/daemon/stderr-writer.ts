/**
 * Log lines to a descriptor that may stop taking them (a pipe into a stalled process, a log
 * consumer that hangs), written on the calling thread: one write(2) per line while the reader
 * keeps up, no thread-pool round trip (an asynchronous fs.write costs a worker wake-up, a
 * completion wake-up and a dozen system calls per line, on every Connect at info level).
 *
 *   writing ──write(2) takes all──▶ writing
 *   writing ──EAGAIN, ENOSPC or a short write──▶ backlog   (the rest queued; a timer retries)
 *   backlog ──line fits under the cap──▶ backlog      (queued behind the rest, order kept)
 *   backlog ──line does not fit──▶ backlog            (dropped; onDrop counts it)
 *   backlog ──retry writes the whole queue──▶ writing
 *   any ──EPIPE, EBADF…──▶ closed                     (the reader is gone: lines go nowhere)
 *
 * The descriptor must be non-blocking (or a file, which never stalls): with a blocking pipe a
 * stalled reader would stop the thread in write(2). logging.ts decides which descriptors qualify.
 */
import { writeSync } from 'node:fs';

/** How often a backlog is retried. */
export const RETRY_MS = 20;

export interface StderrWriterOptions {
  readonly fd: number;
  /** Bytes held for a slow reader; a line that would go over is dropped. */
  readonly maxQueuedBytes: number;
  /** Called once per dropped line. */
  readonly onDrop: () => void;
  /** write(2) seam for tests: bytes written, or throws with `code`. */
  readonly write?: (fd: number, data: Buffer | string) => number;
}

type State = 'writing' | 'backlog' | 'closed';

export class StderrWriter {
  readonly #fd: number;
  readonly #max: number;
  readonly #onDrop: () => void;
  readonly #write: (fd: number, data: Buffer | string) => number;
  #state: State = 'writing';
  #queue: Buffer[] = [];
  #queuedBytes = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: StderrWriterOptions) {
    this.#fd = options.fd;
    this.#max = options.maxQueuedBytes;
    this.#onDrop = options.onDrop;
    this.#write = options.write ?? ((fd, data) => (typeof data === 'string' ? writeSync(fd, data) : writeSync(fd, data)));
  }

  /** Bytes waiting for the reader. */
  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  write(line: string): void {
    if (this.#state === 'closed') return;
    if (this.#state === 'backlog') {
      this.#enqueue(Buffer.from(line));
      return;
    }
    const written = this.#tryWrite(line);
    if (written === undefined) return;
    const bytes = Buffer.byteLength(line);
    if (written === bytes) return;
    this.#state = 'backlog';
    // The rest of a line already begun is always kept, whatever the bound: half a line is garbage.
    const rest = Buffer.from(line).subarray(written);
    this.#queue.push(rest);
    this.#queuedBytes += rest.length;
    this.#timer = setTimeout(() => { this.#retry(); }, RETRY_MS).unref();
  }

  /**
   * Write what is queued before `deadlineMs` (a Date.now() value) passes, waiting out EAGAIN:
   * for exit, when no timer will run again. What is still queued then is lost.
   */
  flushSync(deadlineMs: number): void {
    clearTimeout(this.#timer);
    const pause = new Int32Array(new SharedArrayBuffer(4));
    while (this.#state === 'backlog' && !this.#drain() && Date.now() < deadlineMs) {
      Atomics.wait(pause, 0, 0, RETRY_MS);
    }
  }

  #enqueue(chunk: Buffer): void {
    if (this.#queuedBytes + chunk.length > this.#max) {
      this.#onDrop();
      return;
    }
    this.#queue.push(chunk);
    this.#queuedBytes += chunk.length;
  }

  #retry(): void {
    this.#timer = undefined;
    if (this.#state === 'backlog' && !this.#drain()) this.#timer = setTimeout(() => { this.#retry(); }, RETRY_MS).unref();
  }

  /** Write the queue; true once it is empty (or the reader is gone). */
  #drain(): boolean {
    const all = this.#queue.length === 1 ? this.#queue[0] ?? Buffer.alloc(0) : Buffer.concat(this.#queue);
    const written = this.#tryWrite(all);
    if (written === undefined) return true;
    if (written === all.length) {
      this.#queue = [];
      this.#queuedBytes = 0;
      this.#state = 'writing';
      return true;
    }
    const rest = all.subarray(written);
    this.#queue = [rest];
    this.#queuedBytes = rest.length;
    return false;
  }

  /** Bytes written (0 on EAGAIN), or undefined once the descriptor is unusable. */
  #tryWrite(data: Buffer | string): number | undefined {
    try {
      return this.#write(this.#fd, data);
    } catch (err) {
      // A full pipe, or a full disk (stderr a file): held and retried, as room may come back.
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN' || code === 'ENOSPC' || code === 'EDQUOT') return 0;
      // EPIPE (the reader went away), EBADF (stderr closed): there is nowhere to say so.
      this.#state = 'closed';
      this.#queue = [];
      this.#queuedBytes = 0;
      clearTimeout(this.#timer);
      return undefined;
    }
  }
}
