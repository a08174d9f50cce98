/**
 * The process lifecycle: one orderly stop, whatever asks for it (a signal, SIGUSR1 when idle, a
 * fatal error), and a hard deadline so a stuck step can never keep a dead daemon around.
 *
 *   STARTING ──ready()──► RUNNING
 *      │                    │
 *      └──── stop(code) ────┴──► STOPPING ── teardown resolves ──► exit(code)
 *                                   │  └──── teardown throws ────► exit(1) (logged)
 *                                   ├─ stop() again: logged, ignored
 *                                   └─ deadline passes ──────────► exit(1) (logged)
 *
 * A stop during STARTING is honoured: teardown sees only what has been created so far.
 */
import type { Logger } from '../log.js';

export type LifecycleState = 'starting' | 'running' | 'stopping';

export interface LifecycleOptions {
  readonly log: Logger;
  /** Undo everything that was set up, in the right order. */
  readonly teardown: () => Promise<void>;
  /** Called exactly once with the final exit code (main passes a flush-logs-then-exit). */
  readonly exit: (code: number) => void;
  /** Longest a stop may take before the process is ended anyway. */
  readonly deadlineMs?: number;
}

export class Lifecycle {
  private stateValue: LifecycleState = 'starting';
  private exited = false;

  constructor(private readonly options: LifecycleOptions) {}

  get state(): LifecycleState {
    return this.stateValue;
  }

  /** True once a stop has begun (startup checks this after each await). */
  isStopping(): boolean {
    return this.stateValue === 'stopping';
  }

  ready(): void {
    if (this.stateValue === 'starting') this.stateValue = 'running';
  }

  /** Begin the orderly stop; `code` is the exit code on success. */
  stop(code: number, reason: string): void {
    const { log } = this.options;
    if (this.stateValue === 'stopping') {
      log.info({ reason }, 'already shutting down');
      return;
    }
    this.stateValue = 'stopping';
    log.info({ reason }, 'shutting down');
    const deadline = setTimeout(() => {
      log.error({ deadlineMs: this.options.deadlineMs ?? 5000 }, 'shutdown took too long; exiting anyway');
      this.finish(1);
    }, this.options.deadlineMs ?? 5000);
    deadline.unref();
    this.options.teardown().then(
      () => {
        clearTimeout(deadline);
        log.info({ code }, 'stopped');
        this.finish(code);
      },
      (err: unknown) => {
        clearTimeout(deadline);
        log.error({ err }, 'shutdown failed');
        this.finish(1);
      },
    );
  }

  private finish(code: number): void {
    if (this.exited) return;
    this.exited = true;
    this.options.exit(code);
  }
}
