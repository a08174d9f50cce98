/**
 * Load: slowloris clients (one byte a second) and many idle clients must not starve others (a
 * ListDevices and a Connect + echo still complete fast); with file descriptors running out
 * (`ulimit -n 256`), the daemon refuses clients with a clear log line and does not crash.
 */
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { buildXml } from '../../src/plist/index.js';
import { checkNoCrashInLog } from './client-fuzz.js';
import { frame } from './fuzz-frames.js';
import { check, checkLeaks, listDeviceIds, newRow, SoakDaemon, sleep } from './harness.js';
import type { Row, SoakScale } from './harness.js';
import { EchoTunnel } from './monitors.js';

/** A bystander's ListDevices and Connect+echo must each finish within this. */
const FAST_MS = 1000;

function openClient(path: string): Promise<Socket | undefined> {
  return new Promise((resolve) => {
    const socket = connect(path);
    socket.once('connect', () => {
      resolve(socket);
    });
    socket.once('error', () => {
      socket.destroy();
      resolve(undefined);
    });
  });
}

async function openMany(path: string, count: number): Promise<Socket[]> {
  const out: Socket[] = [];
  for (let n = 0; n < count; n++) {
    let socket = await openClient(path);
    for (let retry = 0; socket === undefined && retry < 50; retry++) {
      await sleep(10);
      socket = await openClient(path);
    }
    if (socket === undefined) break;
    socket.on('error', () => undefined);
    socket.resume(); // flowing, so a close by the daemon is seen
    out.push(socket);
  }
  return out;
}

/** ListDevices and Connect+echo timings from a fresh client, in ms (Infinity on failure). */
async function bystander(daemon: SoakDaemon, deviceId: number): Promise<{ list: number; connect: number; echoOk: boolean; tunnel?: EchoTunnel }> {
  let t = Date.now();
  const ids = await listDeviceIds(daemon.socketPath, 5000).catch(() => []);
  const list = ids.length > 0 ? Date.now() - t : Infinity;
  t = Date.now();
  try {
    const tunnel = await EchoTunnel.open(daemon.socketPath, deviceId);
    const echoOk = await tunnel.roundTrip(4096, 5000);
    return { list, connect: Date.now() - t, echoOk, tunnel };
  } catch {
    return { list, connect: Infinity, echoOk: false };
  }
}

export async function slowAndIdleScenario(scale: SoakScale): Promise<Row> {
  const row = newRow('slowloris + idle clients');
  const idleCount = scale.pick(1000, 1000, 1000);
  // 1000 + 20 + the bystanders stay under the default limit of 1024 clients (beyond it new
  // clients are refused by design, which would starve the bystanders).
  const slowCount = scale.pick(20, 20, 10);
  const holdMs = scale.pick(60_000, 10_000, 4_000);
  const daemon = await SoakDaemon.start({});
  try {
    const [deviceId = 1] = await daemon.waitDevices(1, 10_000);
    await listDeviceIds(daemon.socketPath);
    await daemon.sampleBefore(row);
    const idle = await openMany(daemon.socketPath, idleCount);
    const slow = await openMany(daemon.socketPath, slowCount);
    check(row, idle.length === idleCount, `opened ${idle.length} of ${idleCount} idle clients`);
    row.inputs = idle.length + slow.length;
    // Slowloris: a valid ListDevices, one byte per second per client.
    const request = frame(1, 8, 7, buildXml({ MessageType: 'ListDevices' }));
    let offset = 0;
    const drip = setInterval(() => {
      for (const socket of slow) if (offset < request.length) socket.write(request.subarray(offset, offset + 1));
      offset++;
    }, 1000);
    const worst = { list: 0, connect: 0 };
    let echoFailures = 0;
    const deadline = Date.now() + holdMs;
    let rounds = 0;
    while (Date.now() < deadline) {
      const b = await bystander(daemon, deviceId);
      worst.list = Math.max(worst.list, b.list);
      worst.connect = Math.max(worst.connect, b.connect);
      if (!b.echoOk) echoFailures++;
      if (b.tunnel) {
        row.bytesSent += b.tunnel.sent;
        row.bytesDelivered += b.tunnel.delivered;
        b.tunnel.close();
      }
      rounds++;
      await sleep(500);
    }
    clearInterval(drip);
    // The daemon closes clients that send no complete request within its request timeout (10 s).
    const idleClosed = idle.filter((s) => s.destroyed || s.readableEnded).length;
    const slowClosed = slow.filter((s) => s.destroyed || s.readableEnded).length;
    if (holdMs > 12_000) check(row, idleClosed === idle.length && slowClosed === slow.length, `idle clients closed by the request timeout: ${idleClosed} of ${idle.length}, slowloris: ${slowClosed} of ${slow.length}`);
    check(row, daemon.alive, 'daemon alive');
    check(row, worst.list < FAST_MS, `worst ListDevices ${worst.list} ms under load`);
    check(row, worst.connect < FAST_MS, `worst Connect+echo ${worst.connect} ms under load`);
    check(row, echoFailures === 0, `${echoFailures} echo failures`);
    row.notes.push(`${idle.length} idle + ${slow.length} slowloris clients for ${holdMs / 1000} s (closed by the daemon: ${idleClosed} idle, ${slowClosed} slowloris); ${rounds} bystander rounds, worst ListDevices ${worst.list} ms, worst Connect+echo ${worst.connect} ms`);
    for (const socket of [...idle, ...slow]) socket.destroy();
    await sleep(500);
    await daemon.sampleAfter(row);
    checkLeaks(row);
    checkNoCrashInLog(row, daemon.logs());
  } finally {
    if (!daemon.alive) row.crashes = Math.max(row.crashes, 1);
    await daemon.stop();
  }
  return row;
}

export async function fdExhaustionScenario(scale: SoakScale): Promise<Row> {
  const row = newRow('fd exhaustion (ulimit -n 256)');
  const flood = scale.pick(1000, 600, 400);
  const daemon = await SoakDaemon.start({ ulimitNofile: 256 });
  try {
    const [deviceId = 1] = await daemon.waitDevices(1, 10_000);
    const tunnel = await EchoTunnel.open(daemon.socketPath, deviceId);
    check(row, await tunnel.roundTrip(), 'echo before the flood');
    await daemon.sampleBefore(row);
    // Open without retrying: refused connections are the point.
    const sockets: Socket[] = [];
    let refused = 0;
    for (let n = 0; n < flood; n++) {
      const socket = await openClient(daemon.socketPath);
      if (socket === undefined) refused++;
      else {
        socket.on('error', () => undefined);
        sockets.push(socket);
      }
    }
    row.inputs = flood;
    await sleep(500);
    const closedByDaemon = sockets.filter((s) => s.destroyed || s.readyState !== 'open').length;
    check(row, daemon.alive, 'daemon alive during the flood');
    check(row, await tunnel.roundTrip(), 'the open tunnel keeps echoing during the flood');
    const logs = daemon.logs();
    const limitLine = logs.split('\n').find((line) => /client limit reached/.test(line));
    check(row, limitLine !== undefined, 'a "client limit reached" log line');
    for (const socket of sockets) socket.destroy();
    await sleep(1000);
    const ids = await listDeviceIds(daemon.socketPath, 5000).catch(() => []);
    check(row, ids.length === 1, 'ListDevices answers after the flood');
    check(row, await tunnel.roundTrip(), 'echo after the flood');
    row.bytesSent = tunnel.sent;
    row.bytesDelivered = tunnel.delivered;
    row.notes.push(`${flood} clients at ulimit -n 256: ${sockets.length} connected, ${closedByDaemon} closed by the daemon, ${refused} refused at connect; log: ${(limitLine ?? 'none').slice(0, 200)}`);
    tunnel.close();
    await sleep(300);
    await daemon.sampleAfter(row);
    checkLeaks(row);
    checkNoCrashInLog(row, logs);
  } finally {
    if (!daemon.alive) row.crashes = Math.max(row.crashes, 1);
    await daemon.stop();
  }
  return row;
}
