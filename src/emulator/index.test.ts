import { describe, expect, it } from 'vitest';
import { Protocol, TcpFlag, decodeTcpHeader, encodeMux, encodeSetup, encodeTcp, encodeVersion } from './codec.js';
import {
  DEFAULT_AUTO_TAP_MS,
  ECHO_PORT,
  NOTIFICATION_PROXY_SERVICE,
  NOTIFICATION_REQUEST_HOST_BUID,
  NOTIFICATION_REQUEST_PAIR,
  SOURCE_PORT,
  TRUST_MODES,
  createVirtualDevice,
  sourceBytes,
} from './index.js';
import type { TransportSink } from '../mux/transport.js';

function collectingSink(): TransportSink & { chunks: Buffer[]; closed: (Error | undefined)[]; drains: number } {
  const sink = {
    chunks: [] as Buffer[],
    closed: [] as (Error | undefined)[],
    drains: 0,
    onData(chunk: Buffer) {
      sink.chunks.push(chunk);
    },
    onDrain() {
      sink.drains++;
    },
    onClose(err?: Error) {
      sink.closed.push(err);
    },
  };
  return sink;
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
/** A round trip through the pair takes two turns (host → device, device → host). */
async function settle(): Promise<void> {
  for (let i = 0; i < 4; i++) await tick();
}

describe('createVirtualDevice', () => {
  it('describes the device like a USB iPhone', () => {
    const dev = createVirtualDevice({ locationId: 0x10002 });
    expect(dev.info).toEqual({
      connectionType: 'USB',
      serial: '00008030-001A2B3C4D5E802E',
      usbSerial: '00008030001A2B3C4D5E802E',
      productId: 0x12a8,
      locationId: 0x10002,
      speed: 480000000,
    });
    expect(dev.transport.maxPacketSize).toBe(49152);
    expect(dev.emulator.udid).toBe(dev.info.serial);
  });

  it('gives each device its own default locationId and honours a custom udid', () => {
    const a = createVirtualDevice();
    const b = createVirtualDevice({ emulator: { udid: 'abcdef0123456789abcdef0123456789abcdef01' } });
    expect(a.info.locationId).not.toBe(b.info.locationId);
    expect(b.info.serial).toBe('abcdef0123456789abcdef0123456789abcdef01');
    expect(b.info.usbSerial).toBe(b.info.serial);
  });

  it('does the v2 handshake and echoes over the transport', async () => {
    const dev = createVirtualDevice();
    const sink = collectingSink();
    dev.transport.start(sink);
    dev.transport.send(encodeVersion({ major: 2, minor: 0, padding: 0 }));
    await settle();
    expect(sink.chunks.map((c) => c.toString('hex'))).toEqual(['0000000000000014000000020000000000000000']);
    sink.chunks.length = 0;
    dev.transport.send(encodeSetup({ txSeq: 0, rxSeq: 0xffff }));
    dev.transport.send(encodeTcp({ sport: 1, dport: ECHO_PORT, seq: 0, ack: 0, flags: TcpFlag.SYN, window: 131072 }, Buffer.alloc(0), { txSeq: 1, rxSeq: 0xffff }));
    await settle();
    expect(sink.chunks).toHaveLength(1);
    const synAck = decodeTcpHeader(sink.chunks[0]!, 16)!;
    expect(synAck.flags).toBe(TcpFlag.SYN | TcpFlag.ACK);
    expect(synAck.ack).toBe(1);
    sink.chunks.length = 0;
    dev.transport.send(encodeTcp({ sport: 1, dport: ECHO_PORT, seq: 1, ack: 1, flags: TcpFlag.ACK, window: 131072 }, Buffer.from('hello'), { txSeq: 2, rxSeq: 0 }));
    await settle();
    expect(sink.chunks).toHaveLength(1);
    const echo = sink.chunks[0]!;
    expect(echo.readUInt32BE(0)).toBe(Protocol.Tcp);
    expect(echo.subarray(36).toString()).toBe('hello');
    expect(decodeTcpHeader(echo, 16)!.ack).toBe(6);
  });

  it('a 64 KiB device packet (maxPacket knob) reaches the host as 16 KiB transfers', async () => {
    const dev = createVirtualDevice({ emulator: { faults: { maxPacket: 65536 } } });
    const sink = collectingSink();
    dev.transport.start(sink);
    dev.transport.send(encodeVersion({ major: 2, minor: 0, padding: 0 }));
    dev.transport.send(encodeSetup({ txSeq: 0, rxSeq: 0xffff }));
    dev.transport.send(encodeTcp({ sport: 1, dport: SOURCE_PORT, seq: 0, ack: 0, flags: TcpFlag.SYN, window: 65536 }, Buffer.alloc(0), { txSeq: 1, rxSeq: 0 }));
    dev.transport.send(encodeTcp({ sport: 1, dport: SOURCE_PORT, seq: 1, ack: 1, flags: TcpFlag.ACK, window: 65536 }, Buffer.alloc(0), { txSeq: 2, rxSeq: 0 }));
    await settle();
    const sizes = sink.chunks.map((c) => c.length);
    // VERSION reply, SYN|ACK, then a 65536-byte packet cut into 16384-byte transfers by the pair
    expect(sizes.slice(0, 2)).toEqual([20, 36]);
    const data = Buffer.concat(sink.chunks.slice(2));
    expect(sizes.slice(2).every((n) => n <= 16384)).toBe(true);
    expect(data.readUInt32BE(4)).toBe(65536); // one mux packet spanning four transfers
    expect(data.subarray(36, 36 + 100).equals(sourceBytes(0, 100))).toBe(true);
  });

  it('unplug closes the host transport once with VirtualDeviceUnpluggedError and drops later sends', async () => {
    const dev = createVirtualDevice();
    const sink = collectingSink();
    dev.transport.start(sink);
    dev.unplug();
    dev.unplug();
    expect(dev.transport.send(encodeMux(Protocol.Version, Buffer.alloc(12)))).toBe(true);
    await tick();
    await tick();
    expect(sink.closed).toHaveLength(1);
    expect(sink.closed[0]).toMatchObject({ code: 'MUXD_ERR_VIRTUAL_UNPLUGGED' });
    expect(sink.chunks).toHaveLength(0);
    expect(dev.emulator.state).toBe('DETACHED');
  });
});

describe('createVirtualDevice trust options', () => {
  it('default: trust mode auto, 300 ms tap; options pass through to emulator.pairing', () => {
    const plain = createVirtualDevice();
    expect([plain.emulator.pairing.mode, plain.emulator.pairing.autoTapMs]).toEqual(['auto', DEFAULT_AUTO_TAP_MS]);
    expect(DEFAULT_AUTO_TAP_MS).toBe(300);
    const waiting = createVirtualDevice({ emulator: { trust: { mode: 'wait', autoTapMs: 5 } } });
    expect([waiting.emulator.pairing.mode, waiting.emulator.pairing.autoTapMs]).toEqual(['wait', 5]);
    expect(createVirtualDevice({ emulator: { trust: { mode: 'password' } } }).emulator.pairing.locked).toBe(true);
  });

  it('exports the contract constants', () => {
    expect(NOTIFICATION_PROXY_SERVICE).toBe('com.apple.mobile.insecure_notification_proxy');
    expect(NOTIFICATION_REQUEST_PAIR).toBe('com.apple.mobile.lockdown.request_pair');
    expect(NOTIFICATION_REQUEST_HOST_BUID).toBe('com.apple.mobile.lockdown.request_host_buid');
    expect(TRUST_MODES).toEqual(['auto', 'wait', 'deny', 'password', 'setup']);
  });
});
