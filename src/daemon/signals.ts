/**
 * Signal and crash wiring for the daemon process.
 *
 *   SIGTERM, SIGINT, SIGQUIT → actions.shutdown(signal)          (orderly stop, exit 0)
 *   SIGUSR1 → with enable-exit (-z/-u/-s): actions.exitIfIdle()  else ignored (debug line)
 *   SIGUSR2 → with enable-exit: actions.rediscover()             else ignored (debug line)
 *   SIGPIPE → ignored (Node does this already; a dead client is an EPIPE on its socket)
 *
 * Crashes: an uncaught exception or unhandled rejection is logged at fatal with its stack and
 * the process exits non-zero (so systemd's Restart=on-failure restarts us). Nothing exits silently.
 */
import type { Logger } from '../log.js';

export interface SignalActions {
  shutdown(signal: NodeJS.Signals): void;
  exitIfIdle(): void;
  rediscover(): void;
}

export const SHUTDOWN_SIGNALS: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGQUIT'];

/** Install the handlers; returns a function that removes them again. */
export function installSignalHandlers(log: Logger, enableExit: boolean, actions: SignalActions): () => void {
  const onShutdown = (signal: NodeJS.Signals): void => {
    log.info({ signal }, 'shutdown requested');
    actions.shutdown(signal);
  };
  const onUsr1 = (): void => {
    if (!enableExit) {
      log.debug('SIGUSR1 ignored (start with -z, -u or -s to honour it)');
      return;
    }
    actions.exitIfIdle();
  };
  const onUsr2 = (): void => {
    if (!enableExit) {
      log.debug('SIGUSR2 ignored (start with -z, -u or -s to honour it)');
      return;
    }
    log.info('SIGUSR2: scanning for devices');
    actions.rediscover();
  };
  for (const s of SHUTDOWN_SIGNALS) process.on(s, onShutdown);
  process.on('SIGUSR1', onUsr1);
  process.on('SIGUSR2', onUsr2);
  return () => {
    for (const s of SHUTDOWN_SIGNALS) process.off(s, onShutdown);
    process.off('SIGUSR1', onUsr1);
    process.off('SIGUSR2', onUsr2);
  };
}

/** Exit code for a crash (uncaught exception / unhandled rejection). */
export const EXIT_CRASH = 70; // EX_SOFTWARE

/** Log every uncaught exception and unhandled rejection at fatal, then `onFatal` (which exits). */
export function installCrashHandlers(log: Logger, onFatal: (err: unknown) => void): void {
  process.on('uncaughtException', (err, origin) => {
    log.fatal({ err, origin }, 'uncaught exception; exiting');
    onFatal(err);
  });
  process.on('unhandledRejection', (reason) => {
    log.fatal({ err: reason }, 'unhandled promise rejection; exiting');
    onFatal(reason);
  });
}
