/**
 * Minor garbage collections paced by tunnel input, so that client read buffers do not pile up.
 *
 * Node allocates a fresh buffer (64 KiB when the client writes fast) for every read from a
 * socket. A tunnel copies those bytes into mux packets and drops the buffer, but its memory is
 * malloc'd outside the V8 heap and only freed when a collection finds the small JS object that
 * holds it; a bulk upload allocates almost nothing else on the V8 heap, so no collection comes:
 * during 32 MiB host→device about 30 MiB of dead read buffers stayed resident, and the malloc heap
 * kept its high-water mark afterwards. One minor collection (a scavenge: the young generation
 * only, well under a millisecond with a small one) per RECLAIM_EVERY_BYTES of tunnel input bounds
 * that to a few MiB. The collector is V8's own `gc`, reached without `--expose-gc` on the command
 * line: the flag is set at run time and the function taken from a new context, which sees it; the
 * main context's globals are untouched.
 *
 *   note(bytes) ──▶ counted ──(RECLAIM_EVERY_BYTES reached)──▶ collect() ──▶ counter back to 0
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** Tunnel input between two minor collections. */
export const RECLAIM_EVERY_BYTES = 4 * 1024 * 1024;

type Collect = () => void;

export class ReadReclaimer {
  private counted = 0;
  private collect: Collect | undefined;

  /** `collect`: runs one minor collection (made on first use by default). */
  constructor(
    private readonly everyBytes: number = RECLAIM_EVERY_BYTES,
    private readonly makeCollect: () => Collect = minorCollector,
  ) {}

  /** `bytes` were read from a client socket and handed on. */
  note(bytes: number): void {
    this.counted += bytes;
    if (this.counted < this.everyBytes) return;
    this.counted = 0;
    this.collect ??= this.makeCollect();
    this.collect();
  }
}

/** V8's gc({ type: 'minor' }), or a no-op where it cannot be had. */
export function minorCollector(): Collect {
  try {
    setFlagsFromString('--expose-gc');
    const gc: unknown = runInNewContext('gc');
    if (isGc(gc)) return () => { gc({ type: 'minor' }); };
  } catch {
    // no collector: read buffers wait for V8's own schedule, as before
  }
  return () => undefined;
}

function isGc(value: unknown): value is (options: { type: 'minor' | 'major' }) => void {
  return typeof value === 'function';
}

/** The daemon's one reclaimer, shared by all tunnels. */
export const readReclaimer = new ReadReclaimer();
