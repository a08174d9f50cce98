/**
 * The phone's stock services: echo (7), discard (9), source (19) and lockdownd (62078).
 */
import { createLockdownService } from './lockdown.js';
import type { Service, ServiceConnection } from './service.js';
import type { EmulatorStats } from './stats.js';

export const ECHO_PORT = 7;
export const DISCARD_PORT = 9;
export const SOURCE_PORT = 19;
export const LOCKDOWN_PORT = 62078;

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

/**
 * The byte the source service sends at stream offset `i` (a pure function, so tests can verify
 * any slice): `(i * 7 + floor(i / 256)) mod 256`. It does not repeat within 64 KiB.
 */
export function sourceByte(i: number): number {
  return (i * 7 + Math.floor(i / 256)) & 0xff;
}

/** Bytes `[offset, offset + length)` of the source stream. */
export function sourceBytes(offset: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  for (let k = 0; k < length; k++) out[k] = sourceByte(offset + k);
  return out;
}

/** Largest chunk the source produces per call. */
const SOURCE_CHUNK = 65536;

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
      const length = Math.min(conn.sendRoom, SOURCE_CHUNK);
      if (length <= 0) return;
      offsets.set(conn, offset + length);
      conn.write(sourceBytes(offset, length));
    },
  };
}

/** Port → service for a phone with this UDID. */
export function defaultServices(udid: string, stats: EmulatorStats): Map<number, Service> {
  return new Map<number, Service>([
    [ECHO_PORT, createEchoService()],
    [DISCARD_PORT, createDiscardService(stats)],
    [SOURCE_PORT, createSourceService()],
    [LOCKDOWN_PORT, createLockdownService({ udid })],
  ]);
}
