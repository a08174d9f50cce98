/**
 * Client workloads shared by the benches. Every one talks to a daemon's socket as a usbmux client
 * (plist Connect, then the raw tunnel), honours backpressure (waits for 'drain'), and checks what
 * it receives: the source stream byte for byte, the echo byte for byte.
 *
 *   deviceToHost  one tunnel from the phone's source (19), N bytes
 *   hostToDevice  one tunnel into the phone's discard (9), N bytes, done when the device has them
 *   echoBulk      N bytes through echo (7): written and read back at once, counted one way
 *   echoLatency   64-byte round trips through echo (7), one at a time
 *   connectLatency  Connect request → Result, one at a time, each tunnel closed before the next
 *   parallelDeviceToHost  K source tunnels at once until N bytes in all; bytes per tunnel
 */
import type { Socket } from 'node:net';
import { DISCARD_PORT, ECHO_PORT, SOURCE_PORT, sourceByte } from '../../src/emulator/stock-ports.js';
import { MuxdClient } from '../../test/support/muxd-client.js';
import { percentile, sortedCopy } from './measure.js';

const PERIOD = 65536;
const PATTERN: Buffer = (() => {
  const b = Buffer.allocUnsafe(2 * PERIOD);
  for (let i = 0; i < b.length; i++) b[i] = sourceByte(i);
  return b;
})();

export interface Target {
  readonly socketPath: string;
  readonly deviceId: number;
}

/** The first device the daemon announces on Listen. */
export async function firstDeviceId(socketPath: string, timeoutMs = 15_000): Promise<number> {
  const client = await MuxdClient.connect(socketPath);
  try {
    for await (const reply of client.listen({ timeoutMs })) {
      if (reply.kind === 'attached') return reply.deviceId;
    }
    throw new Error('Listen ended without a device');
  } finally {
    await client.close();
  }
}

/** A usbmux client connection; retries while the daemon's listen backlog is full (EAGAIN). */
export async function openClient(socketPath: string): Promise<MuxdClient> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await MuxdClient.connect(socketPath);
    } catch (err) {
      const code = err instanceof Error && 'code' in err ? err.code : undefined;
      if (code !== 'EAGAIN' || attempt >= 50) throw err;
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

export async function openTunnel(target: Target, port: number): Promise<Socket> {
  const client = await openClient(target.socketPath);
  return client.connectDevice(target.deviceId, port);
}

/** `count` tunnels to `port`, opened one after the other (a burst would overflow the backlog). */
export async function openTunnels(targets: readonly Target[], port: number): Promise<Socket[]> {
  const socks: Socket[] = [];
  for (const t of targets) socks.push(await openTunnel(t, port));
  return socks;
}

/** Checks a received slice of the source stream at `offset`; throws on the first wrong byte. */
function checkSource(chunk: Buffer, offset: number): void {
  let done = 0;
  while (done < chunk.length) {
    const start = (offset + done) % PERIOD;
    const n = Math.min(chunk.length - done, PERIOD);
    if (PATTERN.compare(chunk, done, done + n, start, start + n) !== 0) {
      throw new Error(`source stream corrupt near offset ${offset + done}`);
    }
    done += n;
  }
}

export interface BulkResult {
  readonly bytes: number;
  readonly seconds: number;
}

/** Read `bytes` from the source service; resolves when they all arrived and matched. */
export async function deviceToHost(target: Target, bytes: number): Promise<BulkResult> {
  const sock = await openTunnel(target, SOURCE_PORT);
  const t0 = process.hrtime.bigint();
  await new Promise<void>((resolve, reject) => {
    let got = 0;
    sock.on('data', (chunk: Buffer) => {
      const use = Math.min(chunk.length, bytes - got);
      try {
        checkSource(use === chunk.length ? chunk : chunk.subarray(0, use), got);
      } catch (err) {
        sock.destroy();
        reject(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      got += use;
      if (got >= bytes) {
        sock.destroy();
        resolve();
      }
    });
    sock.on('close', () => {
      if (got < bytes) reject(new Error(`source tunnel closed after ${got} of ${bytes} bytes`));
    });
    sock.on('error', () => undefined);
    sock.resume();
  });
  return { bytes, seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
}

/**
 * Write `bytes` into the discard service, 64 KiB at a time, waiting for 'drain'; then wait until
 * `delivered()` (bytes the device side has seen since `base`) reaches `bytes`.
 */
export async function hostToDevice(target: Target, bytes: number, delivered: () => Promise<number>): Promise<BulkResult> {
  const sock = await openTunnel(target, DISCARD_PORT);
  sock.on('error', () => undefined);
  const chunk = Buffer.alloc(65536, 0x5a);
  const base = await delivered();
  const t0 = process.hrtime.bigint();
  let sent = 0;
  let wake: (() => void) | undefined;
  sock.on('drain', () => wake?.());
  sock.on('close', () => wake?.());
  while (sent < bytes) {
    const n = Math.min(chunk.length, bytes - sent);
    sent += n;
    if (!sock.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
      await new Promise<void>((resolve) => (wake = resolve));
      if (sock.destroyed) throw new Error('discard tunnel closed while writing');
    }
  }
  for (;;) {
    if ((await delivered()) - base >= bytes) break;
    if (sock.destroyed) throw new Error('discard tunnel closed before the device had everything');
    await new Promise((r) => setTimeout(r, 5));
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  sock.destroy();
  return { bytes, seconds };
}

/**
 * Write `bytes` into echo (64 KiB at a time, waiting for 'drain') while reading them back; resolves
 * when every byte came back and matched. Counted one way (`bytes`), as the reference baseline does.
 */
export async function echoBulk(target: Target, bytes: number): Promise<BulkResult> {
  const sock = await openTunnel(target, ECHO_PORT);
  const chunk = PATTERN.subarray(0, PERIOD);
  const t0 = process.hrtime.bigint();
  await new Promise<void>((resolve, reject) => {
    let got = 0;
    let sent = 0;
    let failed = false;
    const fail = (err: Error): void => {
      if (failed) return;
      failed = true;
      sock.destroy();
      reject(err);
    };
    const pump = (): void => {
      while (sent < bytes) {
        const n = Math.min(chunk.length, bytes - sent);
        sent += n;
        if (!sock.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return;
      }
    };
    sock.on('drain', pump);
    sock.on('data', (data: Buffer) => {
      try {
        checkSource(data, got);
      } catch (err) {
        fail(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      got += data.length;
      if (got >= bytes) {
        sock.destroy();
        resolve();
      }
    });
    sock.on('close', () => {
      if (got < bytes) fail(new Error(`echo tunnel closed after ${got} of ${bytes} bytes`));
    });
    sock.on('error', () => undefined);
    sock.resume();
    pump();
  });
  return { bytes, seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
}

export interface LatencyResult {
  readonly p50ms: number;
  readonly p99ms: number;
  readonly count: number;
  readonly seconds: number;
}

function latency(samples: number[], seconds: number): LatencyResult {
  const s = sortedCopy(samples);
  return { p50ms: percentile(s, 50), p99ms: percentile(s, 99), count: s.length, seconds };
}

/** `count` sequential 64-byte round trips through echo. */
export async function echoLatency(target: Target, count: number, size = 64): Promise<LatencyResult> {
  const sock = await openTunnel(target, ECHO_PORT);
  sock.on('error', () => undefined);
  const message = Buffer.alloc(size);
  const samples: number[] = [];
  let want = 0;
  let got = 0;
  let wake: (() => void) | undefined;
  sock.on('data', (chunk: Buffer) => {
    got += chunk.length;
    if (got >= want) wake?.();
  });
  sock.resume();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < count; i++) {
    message.fill(i & 0xff);
    want += size;
    const start = process.hrtime.bigint();
    const done = new Promise<void>((resolve) => (wake = resolve));
    sock.write(message);
    await done;
    samples.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  sock.destroy();
  return latency(samples, seconds);
}

/** `count` Connects to echo, one at a time; latency is request written → Result read. */
export async function connectLatency(target: Target, count: number): Promise<LatencyResult & { perSecond: number }> {
  const samples: number[] = [];
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < count; i++) {
    const client = await openClient(target.socketPath);
    const start = process.hrtime.bigint();
    const sock = await client.connectDevice(target.deviceId, ECHO_PORT);
    samples.push(Number(process.hrtime.bigint() - start) / 1e6);
    sock.destroy();
    await client.closed();
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { ...latency(samples, seconds), perSecond: count / seconds };
}

export interface ParallelResult extends BulkResult {
  readonly perTunnel: readonly number[];
  /** min/max of the bytes each tunnel got. */
  readonly fairness: number;
}

/** `tunnels` source tunnels read at once until `bytes` arrived in all (all checked). */
export async function parallelDeviceToHost(target: Target, tunnels: number, bytes: number): Promise<ParallelResult> {
  const socks = await openTunnels(Array.from({ length: tunnels }, () => target), SOURCE_PORT);
  const perTunnel = socks.map(() => 0);
  let total = 0;
  const t0 = process.hrtime.bigint();
  await new Promise<void>((resolve, reject) => {
    let finished = false;
    const finish = (err?: Error): void => {
      if (finished) return;
      finished = true;
      for (const s of socks) s.destroy();
      if (err === undefined) resolve();
      else reject(err);
    };
    socks.forEach((sock, i) => {
      sock.on('data', (chunk: Buffer) => {
        if (finished) return;
        try {
          checkSource(chunk, perTunnel[i] ?? 0);
        } catch (err) {
          finish(err instanceof Error ? err : new Error(String(err)));
          return;
        }
        perTunnel[i] = (perTunnel[i] ?? 0) + chunk.length;
        total += chunk.length;
        if (total >= bytes) finish();
      });
      sock.on('close', () => { finish(new Error(`tunnel ${i} closed early`)); });
      sock.on('error', () => undefined);
      sock.resume();
    });
  });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const min = Math.min(...perTunnel);
  const max = Math.max(...perTunnel);
  return { bytes: total, seconds, perTunnel, fairness: max === 0 ? 0 : min / max };
}
