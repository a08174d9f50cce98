/**
 * A FIFO of bytes kept as the Buffers they arrived in plus a byte count (ws Receiver style), so
 * taking bytes off the front is a view when one chunk holds them and one copy only when they span
 * chunks. It is the one place that view-or-copy rule lives; the stream decoders build on it.
 *
 * Chunks are kept, not copied: a caller must not reuse a Buffer after pushing it. Each method's
 * common case (the first chunk holds the bytes) is a few lines; the rest is in private methods.
 */
export class ByteQueue {
  /** Buffered chunks, oldest first, none empty; the first may be a view past bytes already taken. */
  private chunks: Buffer[] = [];
  /** Sum of the chunks' lengths. */
  private bytes = 0;

  /** Bytes buffered. */
  get length(): number {
    return this.bytes;
  }

  /** Append a chunk (kept as is, not copied); an empty chunk is ignored. */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.bytes += chunk.length;
  }

  /** True when the first chunk holds the first `n` bytes, i.e. `take(n)` will not copy. */
  contiguous(n: number): boolean {
    if (n === 0) return true;
    const first = this.chunks[0];
    return first !== undefined && first.length >= n;
  }

  /**
   * Remove and return the first `n` bytes: a view when the first chunk holds them (the chunk itself
   * when it is exactly `n` long), else one copy into a fresh buffer of `n` bytes.
   * @throws RangeError when `n` is not an integer in 0..length.
   */
  take(n: number): Buffer {
    const first = this.chunks[0];
    if (first !== undefined && n > 0 && n <= first.length && Number.isInteger(n)) return this.takeFront(first, n);
    return this.takeCopy(n);
  }

  /**
   * Remove the first `n` bytes without copying: one view when the first chunk holds them, else
   * the views that make them up, in order.
   * @throws RangeError when `n` is not an integer in 0..length.
   */
  takeViews(n: number): Buffer | Buffer[] {
    const first = this.chunks[0];
    if (first !== undefined && n > 0 && n <= first.length && Number.isInteger(n)) return this.takeFront(first, n);
    return this.takeParts(n);
  }

  /** Every buffered chunk, in order; the queue is empty afterwards. */
  takeAll(): Buffer[] {
    const out = this.chunks;
    this.chunks = [];
    this.bytes = 0;
    return out;
  }

  /**
   * The big-endian u32 at `offset` into the buffered bytes, which may span chunks; nothing is removed.
   * @throws RangeError when `offset` is not an integer or fewer than `offset + 4` bytes are buffered.
   */
  peekUInt32BE(offset: number): number {
    const first = this.chunks[0];
    if (first !== undefined && offset >= 0 && offset + 4 <= first.length && Number.isInteger(offset)) return first.readUInt32BE(offset);
    return this.peekSpanning(offset);
  }

  /** Drop everything buffered. */
  clear(): void {
    this.chunks.length = 0;
    this.bytes = 0;
  }

  /** `n` bytes (0 < n ≤ first.length) off the front chunk `first`: the chunk itself or a view. */
  private takeFront(first: Buffer, n: number): Buffer {
    this.bytes -= n;
    if (n === first.length) {
      this.chunks.shift();
      return first;
    }
    this.chunks[0] = first.subarray(n);
    return first.subarray(0, n);
  }

  /** take() when the first chunk does not hold the bytes: one copy (or an empty buffer for 0). */
  private takeCopy(n: number): Buffer {
    this.checkTake(n);
    if (n === 0) return Buffer.alloc(0);
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    while (at < n) {
      const chunk = this.front();
      const use = Math.min(chunk.length, n - at);
      chunk.copy(out, at, 0, use);
      at += use;
      this.dropFront(chunk, use);
    }
    return out;
  }

  /** takeViews() when the first chunk does not hold the bytes: the views, in order. */
  private takeParts(n: number): Buffer | Buffer[] {
    this.checkTake(n);
    if (n === 0) return Buffer.alloc(0);
    const parts: Buffer[] = [];
    let left = n;
    while (left > 0) {
      const chunk = this.front();
      const use = Math.min(chunk.length, left);
      parts.push(use === chunk.length ? chunk : chunk.subarray(0, use));
      left -= use;
      this.dropFront(chunk, use);
    }
    return parts;
  }

  /** peekUInt32BE() when the first chunk does not hold the 4 bytes: byte by byte across chunks. */
  private peekSpanning(offset: number): number {
    if (!Number.isInteger(offset) || offset < 0 || offset + 4 > this.bytes) {
      throw new RangeError(`ByteQueue: cannot peek 4 bytes at ${offset} of ${this.bytes} buffered`);
    }
    let value = 0;
    let need = 4;
    let at = offset;
    for (const chunk of this.chunks) {
      if (at >= chunk.length) {
        at -= chunk.length;
        continue;
      }
      while (need > 0 && at < chunk.length) {
        value = value * 256 + chunk.readUInt8(at);
        at++;
        need--;
      }
      if (need === 0) break;
      at = 0;
    }
    return value;
  }

  private checkTake(n: number): void {
    if (!Number.isInteger(n) || n < 0 || n > this.bytes) {
      throw new RangeError(`ByteQueue: cannot take ${n} bytes of ${this.bytes} buffered`);
    }
  }

  /** The first chunk; only called when bytes are buffered. */
  private front(): Buffer {
    const first = this.chunks[0];
    if (first === undefined) throw new Error('ByteQueue: byte count out of step with chunks');
    return first;
  }

  /** Account for `n` bytes (0 < n ≤ first.length) removed from the front chunk `first`. */
  private dropFront(first: Buffer, n: number): void {
    this.bytes -= n;
    if (n === first.length) this.chunks.shift();
    else this.chunks[0] = first.subarray(n);
  }
}
