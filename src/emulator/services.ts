/**
 * The phone's stock services: echo (7), discard (9), source (19), lockdownd (62078) and the
 * notification proxy lockdown hands out (NOTIFICATION_PROXY_PORT).
 */
import { NOTIFICATION_PROXY_PORT, coreServiceCatalog } from './lockdown.js';
import { createLockdownService } from './lockdown-session.js';
import { createNotificationProxyService } from './notification-proxy.js';
import { Pairing } from './pairing.js';
import type { ServiceCatalog } from './service-catalog.js';
import type { Service, ServiceConnection } from './service.js';
import type { EmulatorStats } from './stats.js';
import { DISCARD_PORT, ECHO_PORT, LOCKDOWN_PORT, SOURCE_PORT, sourceByte } from './stock-ports.js';

export { ECHO_PORT, DISCARD_PORT, SOURCE_PORT, LOCKDOWN_PORT, sourceByte } from './stock-ports.js';

/** Sends every byte back as it arrives. */
export function createEchoService(): Service {
  return {
    name: 'echo',
    onData(conn, data) {
      conn.write(data);
    },
  };
}

/** Swallows everything; counts it in `stats.discardBytes`. */
export function createDiscardService(stats: EmulatorStats): Service {
  return {
    name: 'discard',
    onData(_conn, data) {
      stats.discardBytes += data.length;
    },
  };
}

/** The pattern repeats every 65536 bytes: `7i` every 256, `floor(i / 256)` mod 256 every 65536. */
const SOURCE_PERIOD = 65536;
/** Two periods, so any slice of up to one period is one contiguous view. */
const SOURCE_TABLE = Buffer.from(Array.from({ length: 2 * SOURCE_PERIOD }, (_, i) => sourceByte(i)));

/** Read-only view of `length` (≤ 65536) source bytes from `offset`; shared memory, never mutate. */
function sourceView(offset: number, length: number): Buffer {
  const start = offset % SOURCE_PERIOD;
  return SOURCE_TABLE.subarray(start, start + length);
}

/** Bytes `[offset, offset + length)` of the source stream (a fresh copy). */
export function sourceBytes(offset: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  for (let done = 0; done < length; ) {
    const n = Math.min(SOURCE_PERIOD, length - done);
    sourceView(offset + done, n).copy(out, done);
    done += n;
  }
  return out;
}

/**
 * Endless deterministic stream ({@link sourceByte}), produced only as fast as the host window
 * allows: it writes when the connection reports room, never queues ahead. Host input is ignored.
 */
export function createSourceService(): Service {
  const offsets = new WeakMap<ServiceConnection, number>();
  return {
    name: 'source',
    onOpen(conn) {
      offsets.set(conn, 0);
    },
    onData() {
      // ignored, like chargen
    },
    onWritable(conn) {
      const offset = offsets.get(conn) ?? 0;
      let length = Math.min(conn.sendRoom, SOURCE_PERIOD);
      // Whole packets when there is room for one: a short tail packet would cost a whole IN
      // transfer for a few bytes (measured: 80 → 72 IN transfers per MiB under the USB bench).
      if (length >= conn.maxPayload) length -= length % conn.maxPayload;
      if (length <= 0) return;
      offsets.set(conn, offset + length);
      conn.write(sourceView(offset, length)); // packets are copied when encoded; the table stays intact
    },
  };
}

/**
 * Port → service for a phone with this UDID (lockdown and the notification proxy share `pairing`;
 * lockdown starts what `catalog` lists, which must hold the notification proxy).
 */
export function defaultServices(udid: string, stats: EmulatorStats, pairing: Pairing = new Pairing(), catalog: ServiceCatalog = coreServiceCatalog()): Map<number, Service> {
  return new Map<number, Service>([
    [ECHO_PORT, createEchoService()],
    [DISCARD_PORT, createDiscardService(stats)],
    [SOURCE_PORT, createSourceService()],
    [LOCKDOWN_PORT, createLockdownService({ udid, pairing, catalog })],
    [NOTIFICATION_PROXY_PORT, createNotificationProxyService(pairing)],
  ]);
}
