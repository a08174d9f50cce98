/**
 * The phone's heartbeat (`com.apple.mobile.heartbeat`): the phone speaks first, sending
 * `{Command: Marco, Interval: N, SupportsSleepyTime: true}` (N in seconds); the host answers each
 * with `{Command: Polo}`. `{Command: SleepyTime}` says the phone is going to sleep. Framing as in
 * lockdown: a 4-byte big-endian length, then a plist (XML or binary in; XML out).
 *
 * A standalone Service with runtime knobs, served over whatever carries it: a mux connection of
 * the USB phone, or TCP for a Wi-Fi phone (which must answer it for the host to keep the phone).
 *
 * One state machine per connection:
 *
 *   open --Marco--> [ AWAIT_POLO ] --Polo--> [ IDLE ] --periodMs later: Marco--> [ AWAIT_POLO ]
 *                        |                     |  (while `silent`, the Marco is skipped and the
 *                        |                     |   timer re-armed: the phone seems gone)
 *                        | no Polo within      |
 *                        | poloTimeoutMs       |  sleepyTime(): SleepyTime sent, no more Marcos
 *                        v                     v
 *                   [ CLOSED ] (RST)      [ ASLEEP ] --closeAll() / host RST--> [ CLOSED ]
 *
 *   Any state: an unparseable or oversized frame closes the connection (RST). A Polo that answers
 *   nothing, and unknown commands, are counted and ignored.
 */
import type { PlistObject } from 'plist';
import { frameLockdownMessage } from './lockdown.js';
import { LockdownFrameReader } from './lockdown-frames.js';
import type { Service, ServiceConnection } from './service.js';

export const HEARTBEAT_SERVICE = 'com.apple.mobile.heartbeat';
/** The interval real phones announce (seconds). */
export const DEFAULT_HEARTBEAT_INTERVAL = 10;

/** Mutable at runtime: tests and the Wi-Fi phone flip these while connections are open. */
export interface HeartbeatKnobs {
  /** Seconds announced in each Marco's `Interval` (an integer on the wire, like a phone's). */
  interval: number;
  /** Delay from a Polo to the next Marco, in ms; undefined: `interval` seconds. */
  periodMs: number | undefined;
  /** The phone stops sending Marcos (connections stay open): a phone that vanished. */
  silent: boolean;
  /** Reset a connection whose host sends no Polo this long after a Marco; 0 = wait forever. */
  poloTimeoutMs: number;
  /** The `SupportsSleepyTime` flag in each Marco. */
  supportsSleepyTime: boolean;
}

export interface HeartbeatStats {
  connections: number;
  marcosSent: number;
  polosReceived: number;
  /** Polos that arrived when no Marco was waiting for one. */
  unsolicitedPolos: number;
  sleepyTimesSent: number;
  /** Connections reset because the host did not answer in time. */
  poloTimeouts: number;
  /** Connections reset for a bad frame. */
  badFrames: number;
  /** Timer work that threw (the connection is reset; a timer must never throw into the daemon). */
  failures: number;
}

export type HeartbeatState = 'AWAIT_POLO' | 'IDLE' | 'ASLEEP' | 'CLOSED';

export interface HeartbeatService extends Service {
  readonly knobs: HeartbeatKnobs;
  readonly stats: HeartbeatStats;
  /** States of the open connections (for tests). */
  states(): HeartbeatState[];
  /** Send a Marco now on every connection that is not waiting for a Polo or asleep. */
  marcoNow(): void;
  /** Send SleepyTime on every open connection; they send no more Marcos. */
  sleepyTime(): void;
  /** Reset every heartbeat connection (the phone drops its hosts). */
  closeAll(): void;
}

interface BeatConnection {
  readonly conn: ServiceConnection;
  readonly reader: LockdownFrameReader;
  state: HeartbeatState;
  timer: NodeJS.Timeout | undefined;
}

export function createHeartbeatService(knobs: Partial<HeartbeatKnobs> = {}): HeartbeatService {
  const settings: HeartbeatKnobs = {
    interval: DEFAULT_HEARTBEAT_INTERVAL,
    periodMs: undefined,
    silent: false,
    poloTimeoutMs: 0,
    supportsSleepyTime: true,
    ...knobs,
  };
  const stats: HeartbeatStats = { connections: 0, marcosSent: 0, polosReceived: 0, unsolicitedPolos: 0, sleepyTimesSent: 0, poloTimeouts: 0, badFrames: 0, failures: 0 };
  const open = new Map<ServiceConnection, BeatConnection>();

  const clearTimer = (beat: BeatConnection): void => {
    if (beat.timer !== undefined) clearTimeout(beat.timer);
    beat.timer = undefined;
  };

  const arm = (beat: BeatConnection, ms: number, then: () => void): void => {
    clearTimer(beat);
    beat.timer = setTimeout(() => {
      beat.timer = undefined;
      if (beat.state === 'CLOSED') return;
      try {
        then();
      } catch {
        // Outside the phone's packet loop nobody would catch it: this connection ends instead.
        stats.failures++;
        reset(beat);
      }
    }, ms);
    beat.timer.unref();
  };

  const finish = (beat: BeatConnection): void => {
    beat.state = 'CLOSED';
    clearTimer(beat);
    beat.reader.detach();
    open.delete(beat.conn);
  };

  const reset = (beat: BeatConnection): void => {
    finish(beat);
    beat.conn.close();
  };

  const send = (beat: BeatConnection, message: PlistObject): void => {
    if (beat.conn.open) beat.conn.write(frameLockdownMessage(message));
  };

  const period = (): number => settings.periodMs ?? settings.interval * 1000;

  const marco = (beat: BeatConnection): void => {
    if (settings.silent) {
      arm(beat, period(), () => { marco(beat); });
      return;
    }
    send(beat, { Command: 'Marco', Interval: Math.max(0, Math.round(settings.interval)), SupportsSleepyTime: settings.supportsSleepyTime });
    stats.marcosSent++;
    beat.state = 'AWAIT_POLO';
    clearTimer(beat);
    if (settings.poloTimeoutMs > 0) {
      arm(beat, settings.poloTimeoutMs, () => {
        stats.poloTimeouts++;
        reset(beat);
      });
    }
  };

  const onMessage = (beat: BeatConnection, message: Record<string, unknown>): void => {
    if (message['Command'] !== 'Polo') return;
    if (beat.state !== 'AWAIT_POLO') {
      stats.unsolicitedPolos++;
      return;
    }
    stats.polosReceived++;
    beat.state = 'IDLE';
    arm(beat, period(), () => { marco(beat); });
  };

  return {
    name: 'heartbeat',
    knobs: settings,
    stats,
    states: () => [...open.values()].map((beat) => beat.state),
    marcoNow() {
      for (const beat of open.values()) if (beat.state === 'IDLE') marco(beat);
    },
    sleepyTime() {
      for (const beat of open.values()) {
        send(beat, { Command: 'SleepyTime' });
        stats.sleepyTimesSent++;
        beat.state = 'ASLEEP';
        clearTimer(beat);
      }
    },
    closeAll() {
      for (const beat of [...open.values()]) reset(beat);
    },
    onOpen(conn) {
      const beat: BeatConnection = {
        conn,
        state: 'IDLE',
        timer: undefined,
        reader: new LockdownFrameReader({
          onMessage: (message) => {
            onMessage(beat, message);
          },
          onBad: () => {
            stats.badFrames++;
            reset(beat);
          },
        }),
      };
      open.set(conn, beat);
      stats.connections++;
      marco(beat);
    },
    onData(conn, data) {
      open.get(conn)?.reader.push(data);
    },
    onClose(conn) {
      const beat = open.get(conn);
      if (beat !== undefined) finish(beat);
    },
  };
}
