/**
 * A child's stdout and stderr as a file rather than a pipe, for the daemons and phones the tests
 * start. A pipe holds 64 KiB (less for many small lines over Node's socketpair): once the test
 * process stops reading it (a spawnSync, a long synchronous stretch, a by-hand rig whose output
 * nobody reads), a child that logs blocks. usbmuxd 1.1.1 waits in write(2); ours and the emulator
 * bridge retry pino's EAGAIN after 100 ms sleeps (a futex wait on the main thread), for good; a
 * bridge that blocks stops taking the testbed's OUT frames, so the daemon's USB ioctls wait too.
 * Seen as "the daemon hangs after 8-12 client runs", with both daemons. A file never fills.
 *
 * Pass `fd` in spawn's stdio, then `detach()`: the child holds its own copy. `keep()` before the
 * file's directory is removed, so `text()` still answers afterwards.
 */
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export class OutputFile {
  readonly fd: number;
  private readonly path: string;
  private kept: string | undefined;

  constructor(dir: string, name: string) {
    this.path = join(dir, name);
    this.fd = openSync(this.path, 'a', 0o600);
  }

  detach(): void {
    closeSync(this.fd);
  }

  /** Everything written so far. */
  text(): string {
    if (this.kept !== undefined) return this.kept;
    try {
      return readFileSync(this.path, 'utf8');
    } catch {
      return ''; // removed with its directory at exit
    }
  }

  keep(): void {
    this.kept = this.text();
  }
}
