/**
 * The emulator + MemoryTransportPair as the in-process throughput ceiling: a minimal host that
 * acks every byte at once pulls the source stream and pushes into discard. Prints MB/s; asserts
 * only correctness and a generous floor (the machine is shared).
 */
import { describe, expect, it } from 'vitest';
import type { TransportSink } from '../mux/transport.js';
import { HEADER_V2, TCP_HEADER, TcpFlag, decodeTcpHeader, encodeSetup, encodeTcp, encodeVersion } from './codec.js';
import { DISCARD_PORT, SOURCE_PORT, createVirtualDevice, sourceBytes } from './index.js';

const MIB = 1024 * 1024;

describe('in-process throughput', () => {
  it('source → host through the memory pair, acked at once', async () => {
    const dev = createVirtualDevice({ emulator: { faults: { maxPacket: 16384 } } });
    const t = dev.transport;
    const total = 32 * MIB;
    let txSeq = 1;
    let received = 0;
    let mismatch = false;
    const started = performance.now();
    const done = new Promise<void>((resolve) => {
      const sink: TransportSink = {
        onData(chunk) {
          if (chunk.readUInt32BE(0) === 0) {
            t.send(encodeSetup({ txSeq: 0, rxSeq: 0xffff }));
            t.send(encodeTcp({ sport: 1, dport: SOURCE_PORT, seq: 0, ack: 0, flags: TcpFlag.SYN, window: 512 * 256 }, Buffer.alloc(0), { txSeq: txSeq++, rxSeq: 0 }));
            return;
          }
          const tcp = decodeTcpHeader(chunk, HEADER_V2);
          if (tcp === undefined) return;
          const payload = chunk.subarray(HEADER_V2 + TCP_HEADER);
          if (received < 65536 && payload.length > 0 && !payload.equals(sourceBytes(received, payload.length))) mismatch = true;
          received += payload.length;
          if (received >= total) {
            resolve();
            return;
          }
          const ack = (tcp.flags & TcpFlag.SYN) !== 0 ? 1 : 1 + received;
          t.send(encodeTcp({ sport: 1, dport: SOURCE_PORT, seq: 1, ack, flags: TcpFlag.ACK, window: 512 * 256 }, Buffer.alloc(0), { txSeq: txSeq++, rxSeq: 0 }));
        },
        onDrain() {
          // the acking host never fills the pair
        },
        onClose() {
          // not closed during the run
        },
      };
      t.start(sink);
    });
    t.send(encodeVersion({ major: 2, minor: 0, padding: 0 }));
    await done;
    const seconds = (performance.now() - started) / 1000;
    const rate = total / MIB / seconds;
    console.log(`emulator source → memory pair: ${rate.toFixed(0)} MiB/s (${total / MIB} MiB in ${seconds.toFixed(2)} s)`);
    expect(mismatch).toBe(false);
    expect(rate).toBeGreaterThan(10);
    await t.close();
  });

  it('host → discard through the memory pair (49 KiB packets split into 16 KiB transfers)', async () => {
    const dev = createVirtualDevice();
    const t = dev.transport;
    const total = 32 * MIB;
    const payload = Buffer.alloc(49152 - HEADER_V2 - TCP_HEADER, 0x5a);
    let txSeq = 1;
    let sent = 0;
    let acked = 0;
    const started = performance.now();
    const done = new Promise<void>((resolve) => {
      const pump = (): void => {
        while (sent < total && sent - acked + payload.length <= 131072) {
          t.send(encodeTcp({ sport: 1, dport: DISCARD_PORT, seq: 1 + sent, ack: 1, flags: TcpFlag.ACK, window: 131072 }, payload, { txSeq: txSeq++, rxSeq: 0 }));
          sent += payload.length;
        }
      };
      t.start({
        onData(chunk) {
          if (chunk.readUInt32BE(0) === 0) {
            t.send(encodeSetup({ txSeq: 0, rxSeq: 0xffff }));
            t.send(encodeTcp({ sport: 1, dport: DISCARD_PORT, seq: 0, ack: 0, flags: TcpFlag.SYN, window: 131072 }, Buffer.alloc(0), { txSeq: txSeq++, rxSeq: 0 }));
            return;
          }
          const tcp = decodeTcpHeader(chunk, HEADER_V2);
          if (tcp === undefined) return;
          if ((tcp.flags & TcpFlag.SYN) !== 0) t.send(encodeTcp({ sport: 1, dport: DISCARD_PORT, seq: 1, ack: tcp.seq + 1, flags: TcpFlag.ACK, window: 131072 }, Buffer.alloc(0), { txSeq: txSeq++, rxSeq: 0 }));
          else acked = tcp.ack - 1;
          if (acked >= total) resolve();
          else pump();
        },
        onDrain() {
          pump();
        },
        onClose() {
          // not closed during the run
        },
      });
    });
    t.send(encodeVersion({ major: 2, minor: 0, padding: 0 }));
    await done;
    const seconds = (performance.now() - started) / 1000;
    const rate = total / MIB / seconds;
    console.log(`memory pair → emulator discard: ${rate.toFixed(0)} MiB/s (${Math.round(sent / MIB)} MiB in ${seconds.toFixed(2)} s)`);
    expect(dev.emulator.stats.discardBytes).toBe(sent);
    expect(dev.emulator.stats.hostWindowViolations).toBe(0);
    expect(dev.emulator.stats.hostDataSeqErrors).toBe(0);
    expect(rate).toBeGreaterThan(10);
    await t.close();
  });
});
