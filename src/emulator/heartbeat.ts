/**
 * `com.apple.mobile.heartbeat` on the phone: the Marco/Polo liveness check a host keeps with a
 * Wi-Fi device (docs: wifi-devices.md §2). The phone speaks first; framing is lockdown's (4-byte
 * big-endian length, then a plist; replies XML, host messages XML or binary).
 *
 * One state machine per host connection:
 *
 *            open: Marco {Command, Interval, SupportsSleepyTime}
 *   ( start ) ----------------------------------------------> [ AWAIT_POLO ]
 *                                                              |        ^
 *                                    Polo                      |        | Interval seconds after
 *                                                              v        | the last Marco: Marco
 *                                                           [ ANSWERED ]-+
 *
 *   [ AWAIT_POLO ] --Interval elapsed, no Polo--> Marco again (stay)
 *   [ AWAIT_POLO ] --poloDeadlineMs set and elapsed--> close the connection        --> [ CLOSED ]
 *   any --host closed, phone closed, unframeable input--------------------------------> [ CLOSED ]
 *
 * Marcos go out on a fixed cadence of `Interval` seconds from the connection's start, whether or
 * not the host answered. Knobs (mutable at runtime, read at each tick):
 *   intervalSeconds  the Interval sent and the cadence (a fraction makes it a plist real: tests)
 *   sendMarco        false: the cadence runs but nothing is sent (a heartbeat that stopped)
 *   poloDeadlineMs   close when a Polo is this late after a Marco (undefined: never close)
 * `sleepyTime()` sends {Command: SleepyTime} on every open connection (a phone about to sleep).
 */
import type { PlistObject } from 'plist';
import { frameLockdownMessage } from './lockdown.js';
import { LockdownFrameReader } from './lockdown-frames.js';
import type { Service, ServiceConnection } from './service.js';

export const HEARTBEAT_SERVICE = 'com.apple.mobile.heartbeat';
/** The Interval real phones send (public logs and fixtures). */
export const DEFAULT_HEARTBEAT_INTERVAL_S = 10;

export interface HeartbeatKnobs {
  intervalSeconds: number;
  sendMarco: boolean;
  poloDeadlineMs: number | undefined;
}

export interface HeartbeatStats {
  connections: number;
  marcosSent: number;
  /** Ticks where sendMarco was off. */
  marcosWithheld: number;
  polosReceived: number;
  sleepyTimesSent: number;
  /** Connections closed because a Polo was late. */
  latePoloCloses: number;
  /** Host messages that were not Polo. */
  unexpectedMessages: number;
}

type HeartbeatState = 'AWAIT_POLO' | 'ANSWERED' | 'CLOSED';

interface HeartbeatConnection {
  readonly conn: ServiceConnection;
  readonly reader: LockdownFrameReader;
  state: HeartbeatState;
  tick: NodeJS.Timeout | undefined;
  deadline: NodeJS.Timeout | undefined;
}

export function defaultHeartbeatKnobs(overrides: Partial<HeartbeatKnobs> = {}): HeartbeatKnobs {
  return { intervalSeconds: DEFAULT_HEARTBEAT_INTERVAL_S, sendMarco: true, poloDeadlineMs: undefined, ...overrides };
}

export class HeartbeatService implements Service {
  readonly name = 'heartbeat';
  readonly knobs: HeartbeatKnobs;
  readonly stats: HeartbeatStats = { connections: 0, marcosSent: 0, marcosWithheld: 0, polosReceived: 0, sleepyTimesSent: 0, latePoloCloses: 0, unexpectedMessages: 0 };
  private readonly connections = new Map<ServiceConnection, HeartbeatConnection>();

  constructor(knobs: Partial<HeartbeatKnobs> = {}) {
    this.knobs = defaultHeartbeatKnobs(knobs);
  }

  /** Host connections open right now. */
  get openConnections(): number {
    return this.connections.size;
  }

  /** {Command: SleepyTime} on every open connection; returns how many got it. */
  sleepyTime(): number {
    let sent = 0;
    for (const hb of this.connections.values()) {
      if (!hb.conn.open) continue;
      hb.conn.write(frameLockdownMessage({ Command: 'SleepyTime' }));
      this.stats.sleepyTimesSent++;
      sent++;
    }
    return sent;
  }

  /** Close every connection from the phone's side. */
  closeAll(): void {
    for (const hb of [...this.connections.values()]) this.close(hb);
  }

  onOpen(conn: ServiceConnection): void {
    const hb: HeartbeatConnection = {
      conn,
      state: 'AWAIT_POLO',
      tick: undefined,
      deadline: undefined,
      reader: new LockdownFrameReader({
        onMessage: (message) => {
          this.onMessage(hb, message);
        },
        onBad: () => {
          this.close(hb);
        },
      }),
    };
    this.connections.set(conn, hb);
    this.stats.connections++;
    this.marco(hb);
  }

  onData(conn: ServiceConnection, data: Buffer): void {
    this.connections.get(conn)?.reader.push(data);
  }

  onClose(conn: ServiceConnection): void {
    const hb = this.connections.get(conn);
    if (hb !== undefined) this.forget(hb);
  }

  private marco(hb: HeartbeatConnection): void {
    if (hb.state === 'CLOSED') return;
    const { intervalSeconds, sendMarco, poloDeadlineMs } = this.knobs;
    if (sendMarco && hb.conn.open) {
      const message: PlistObject = { Command: 'Marco', Interval: intervalSeconds, SupportsSleepyTime: true };
      hb.conn.write(frameLockdownMessage(message));
      this.stats.marcosSent++;
      hb.state = 'AWAIT_POLO';
      if (poloDeadlineMs !== undefined && hb.deadline === undefined) {
        hb.deadline = setTimeout(() => {
          hb.deadline = undefined;
          if (hb.state !== 'AWAIT_POLO') return;
          this.stats.latePoloCloses++;
          this.close(hb);
        }, poloDeadlineMs);
        hb.deadline.unref();
      }
    } else {
      this.stats.marcosWithheld++;
    }
    hb.tick = setTimeout(() => {
      hb.tick = undefined;
      this.marco(hb);
    }, Math.max(1, intervalSeconds * 1000));
    hb.tick.unref();
  }

  private onMessage(hb: HeartbeatConnection, message: Record<string, unknown>): void {
    if (message['Command'] !== 'Polo') {
      this.stats.unexpectedMessages++;
      return;
    }
    this.stats.polosReceived++;
    if (hb.state === 'AWAIT_POLO') hb.state = 'ANSWERED';
    if (hb.deadline !== undefined) clearTimeout(hb.deadline);
    hb.deadline = undefined;
  }

  private close(hb: HeartbeatConnection): void {
    this.forget(hb);
    hb.conn.close();
  }

  private forget(hb: HeartbeatConnection): void {
    hb.state = 'CLOSED';
    if (hb.tick !== undefined) clearTimeout(hb.tick);
    if (hb.deadline !== undefined) clearTimeout(hb.deadline);
    hb.tick = undefined;
    hb.deadline = undefined;
    hb.reader.detach();
    this.connections.delete(hb.conn);
  }
}

/** A heartbeat service with these knobs (the phone keeps one per face; knobs apply to all its hosts). */
export function createHeartbeatService(knobs: Partial<HeartbeatKnobs> = {}): HeartbeatService {
  return new HeartbeatService(knobs);
}
