/**
 * The emulated iPhone's source stream (port 19), served from a precomputed copy: the same bytes
 * as the emulator's own source service ({@link sourceByte}, period 65536), without computing each
 * byte, so the device side of a bench costs next to nothing.
 */
import { sourceByte } from '../../src/emulator/index.js';
import type { Service, ServiceConnection } from '../../src/emulator/index.js';

const PERIOD = 65536;
/**
 * Payload of one full device packet: the phone's default maxPacket (16384) less the v2 mux and
 * TCP headers (36). The phone sends each write() as its own packets, so a 64 KiB write would go
 * out as 4 full packets and a 144-byte one; writing whole packets keeps every IN transfer full.
 */
const PACKET_PAYLOAD = 16384 - 36;
const CHUNK = 4 * PACKET_PAYLOAD;

/** The source stream, twice over, so any [offset % PERIOD, + CHUNK) is one subarray. */
const PATTERN: Buffer = (() => {
  const b = Buffer.allocUnsafe(PERIOD + CHUNK);
  for (let i = 0; i < b.length; i++) b[i] = sourceByte(i);
  return b;
})();

/** Same bytes as the emulator's source service, without the per-byte work. */
export function createFastSourceService(): Service {
  const offsets = new WeakMap<ServiceConnection, number>();
  return {
    name: 'source',
    onOpen(conn) {
      offsets.set(conn, 0);
    },
    onData() {
      // ignored
    },
    onWritable(conn) {
      const offset = offsets.get(conn) ?? 0;
      let length = Math.min(conn.sendRoom, CHUNK);
      if (length >= PACKET_PAYLOAD) length -= length % PACKET_PAYLOAD;
      if (length <= 0) return;
      offsets.set(conn, offset + length);
      const start = offset % PERIOD;
      conn.write(PATTERN.subarray(start, start + length));
    },
  };
}
