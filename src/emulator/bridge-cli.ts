#!/usr/bin/env node
/**
 * Standalone emulated iPhone for the umockdev USB harness:
 *
 *   node dist/emulator/bridge-cli.js --socket <path> [--udid U] [--protocol-version 1|2] [--window BYTES]
 *                                    [--trust auto|wait|deny|password|setup] [--auto-tap-ms MS] [--state FILE]
 *
 * `--trust` is how the phone answers Pair (default auto: the simulated user taps Trust after
 * --auto-tap-ms, default 300; MUXD_EMU_TRUST sets it too). `--state` (or MUXD_EMU_STATE) keeps the phone's key and trusted hosts
 * in FILE between runs, so a replugged bridge is the same phone; a bad FILE exits 2.
 *
 * `--socket` may also come from MUXD_EMU_SOCKET. Frames on the socket are `[u32 LE length][bytes]`,
 * one bulk transfer each (see bridge.ts). Logs go to stderr as JSON lines. Exit status: 0 when the
 * socket closes (unplug) or on SIGTERM/SIGINT, 1 on a socket error, 2 on bad arguments.
 */
import { pino } from 'pino';
import type { Logger } from '../log.js';
import { BRIDGE_USAGE, loadIdentity, parseBridgeArgs, runBridge } from './bridge.js';

function main(): void {
  const log: Logger = pino({ name: 'emulator-bridge' }, pino.destination(2));
  const args = parseBridgeArgs(process.argv.slice(2), process.env);
  if (typeof args === 'string') {
    process.stderr.write(`${args}\n${BRIDGE_USAGE}\n`);
    process.exitCode = 2;
    return;
  }
  const identity = args.statePath === undefined ? {} : loadIdentity(args.statePath);
  if (typeof identity === 'string') {
    process.stderr.write(`bad --state file: ${identity}\n`);
    process.exitCode = 2;
    return;
  }
  const bridge = runBridge({
    socketPath: args.socketPath,
    emulator: { ...args.emulator, identity },
    log,
    ...(args.statePath === undefined ? {} : { statePath: args.statePath }),
  });
  const stop = (): void => {
    bridge.stop();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  bridge.closed.then(
    () => {
      process.exitCode = 0;
      process.removeListener('SIGTERM', stop);
      process.removeListener('SIGINT', stop);
    },
    (err: unknown) => {
      log.error({ err }, 'emulator bridge failed');
      process.exitCode = 1;
      process.removeListener('SIGTERM', stop);
      process.removeListener('SIGINT', stop);
    },
  );
}

main();
