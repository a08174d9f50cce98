/**
 * One describe block's worth of OUR daemon plus a Listen client, for the interop tier's pairing
 * tests: registers the vitest hooks (start in beforeAll, stop in afterAll, the daemon's log tail
 * printed next to any failed test) and hands back getters that throw until the hooks ran.
 */
import { afterAll, beforeAll, beforeEach } from 'vitest';
import { DeviceListener } from '../usb/listener.js';
import { startOurDaemon } from './daemon.js';
import type { OurDaemonOptions, RunningDaemon } from './daemon.js';

export interface OurDaemonWithListener {
  /** The running daemon (throws if beforeAll has not started it). */
  readonly d: () => RunningDaemon;
  /** The Listen client opened on its socket right after start (throws before that). */
  readonly listener: () => DeviceListener;
}

/** Call inside a describe: starts `startOurDaemon(options)` and a {@link DeviceListener} on it. */
export function useOurDaemonWithListener(options: OurDaemonOptions): OurDaemonWithListener {
  let daemon: RunningDaemon | undefined;
  let listener: DeviceListener | undefined;

  beforeAll(async () => {
    daemon = await startOurDaemon(options);
    listener = await DeviceListener.open(daemon.socketPath);
  });
  afterAll(async () => {
    await listener?.close();
    await daemon?.stop();
  });
  beforeEach((ctx) => {
    ctx.onTestFailed(() => {
      console.error(`--- daemon log (tail) ---\n${daemon?.logs().slice(-6000) ?? '(not started)'}`);
    });
  });

  return {
    d: () => {
      if (daemon === undefined) throw new Error('daemon not started');
      return daemon;
    },
    listener: () => {
      if (listener === undefined) throw new Error('listener not started');
      return listener;
    },
  };
}
