/**
 * One bulk transfer to or from a Wi-Fi phone's plain service, for bench/wifi.ts, run INSIDE the
 * daemon's network namespace (`ip netns exec NS node dist-bench/bench/lib/wifi-load.js JSON`), so
 * the direct TCP connection and the daemon's proxied one start from the same place:
 *
 *   direct   TCP to host:port (the phone's address, across the bridge)
 *   proxied  the daemon's Unix socket, Connect to DeviceID:port, then the raw tunnel
 *   relay    a minimal Node relay's Unix socket for that port (bench/lib/wifi-relay.ts)
 *
 *   source   read `bytes` from port 19 (device → host); the first 64 KiB checked against the pattern
 *   discard  write `bytes` to port 9 (host → device); the bench reads when the phone has them all
 *   echo     write `bytes` to port 7 and read them back (both ways at once), checked
 *
 * Prints one JSON line: { startedAt, endedAt, bytes, cpuSeconds } (wall-clock ms; endedAt is when
 * the last byte was read, or for discard when the last write was handed to the kernel). A discard
 * connection then stays open until stdin ends (the bench closes it once the phone has every byte:
 * closing earlier would reset the proxied connection with bytes still on their way).
 * Backpressure is honoured both ways: writes wait for 'drain'.
 */
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { sourceByte } from '../../src/emulator/services.js';
import { MuxdClient } from '../../test/support/muxd-client.js';

interface Job {
  readonly mode: 'direct' | 'proxied' | 'relay';
  readonly kind: 'source' | 'discard' | 'echo';
  readonly bytes: number;
  readonly host: string;
  readonly socketPath: string;
  readonly deviceId: number;
  readonly relayDir: string;
}

const PORTS = { source: 19, discard: 9, echo: 7 } as const;
const CHUNK = 64 * 1024;

function now(): number {
  return performance.timeOrigin + performance.now();
}

async function open(job: Job): Promise<Socket> {
  const port = PORTS[job.kind];
  if (job.mode === 'proxied') {
    const socket = await (await MuxdClient.connect({ path: job.socketPath })).connectDevice(job.deviceId, port);
    socket.resume();
    return socket;
  }
  const socket = job.mode === 'relay' ? connect({ path: `${job.relayDir}/relay-${port}.sock` }) : connect({ host: job.host, port });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return socket;
}

function writeAll(socket: Socket, bytes: number, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    let left = bytes;
    socket.once('error', reject);
    const pump = (): void => {
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        const last = left === 0;
        const ok = socket.write(n === chunk.length ? chunk : chunk.subarray(0, n), last ? () => { resolve(); } : undefined);
        if (!ok && !last) {
          socket.once('drain', pump);
          return;
        }
      }
    };
    pump();
  });
}

function readAll(socket: Socket, bytes: number, check: (first: Buffer) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    let got = 0;
    let head: Buffer[] | undefined = [];
    socket.on('data', (c: Buffer) => {
      if (head !== undefined) {
        head.push(c);
        if (head.reduce((n, b) => n + b.length, 0) >= CHUNK) {
          check(Buffer.concat(head).subarray(0, CHUNK));
          head = undefined;
        }
      }
      got += c.length;
      if (got >= bytes) resolve();
    });
    socket.once('close', () => { if (got < bytes) reject(new Error(`closed after ${got} of ${bytes} bytes`)); });
    socket.once('error', reject);
  });
}

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2] ?? '{}') as Job;
  const socket = await open(job);
  socket.on('error', () => undefined);
  const pattern = Buffer.allocUnsafe(CHUNK);
  for (let i = 0; i < CHUNK; i++) pattern[i] = (i * 13 + 5) & 0xff;
  const cpu0 = process.cpuUsage();
  const startedAt = now();
  if (job.kind === 'source') {
    await readAll(socket, job.bytes, (first) => {
      for (let i = 0; i < first.length; i++) if (first[i] !== sourceByte(i)) throw new Error(`source byte ${i} is wrong`);
    });
  } else if (job.kind === 'discard') {
    await writeAll(socket, job.bytes, pattern);
  } else {
    const back = readAll(socket, job.bytes, (first) => {
      if (!first.equals(pattern)) throw new Error('echo came back wrong');
    });
    await writeAll(socket, job.bytes, pattern);
    await back;
  }
  const endedAt = now();
  const cpu = process.cpuUsage(cpu0);
  process.stdout.write(`${JSON.stringify({ startedAt, endedAt, bytes: job.bytes, cpuSeconds: (cpu.user + cpu.system) / 1e6 })}\n`);
  if (job.kind === 'discard') {
    process.stdin.resume();
    await new Promise((resolve) => { process.stdin.once('end', resolve); });
  }
  socket.destroy();
}

main().then(
  () => { process.exit(0); },
  (err: unknown) => {
    process.stderr.write(`wifi-load: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
