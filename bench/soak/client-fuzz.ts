/**
 * Client side: hostile frames from several connections at once, while a listener and an echo
 * tunnel (bystanders) keep working, then a fresh ListDevices must answer.
 *
 * Framed inputs go in batches down long-lived connections, each batch followed by a ListDevices
 * sentinel whose reply proves the daemon processed the batch; a connection the daemon closed
 * (Listen followed by more input, an oversized frame inside a fuzzed body) is simply replaced.
 * Breaking inputs each get a connection of their own, closed right after the write.
 */
import { connect } from 'node:net';
import { buildXml } from '../../src/plist/index.js';
import { MuxdClient } from '../../test/support/muxd-client.js';
import { breakingInput, frame, framedInput } from './fuzz-frames.js';
import { checkLeaks, check, listDeviceIds, MemorySeries, newRow, Rng, SoakDaemon, sleep } from './harness.js';
import type { Row, SoakScale } from './harness.js';
import { EchoHeartbeat, EchoTunnel, ListenerProbe } from './monitors.js';

const BATCH = 32;
const SENTINEL_TAG = 0x5e000000;

export interface FuzzFigures {
  framed: number;
  breaking: number;
  sentinelsAnswered: number;
  connectionsReplaced: number;
  connectRetries: number;
}

export async function clientFuzzScenario(scale: SoakScale, seed = 1): Promise<Row> {
  const row = newRow('client fuzz');
  const maxInputs = scale.pick(1_000_000, 20_000, 2_000);
  const budgetMs = scale.budget(180_000, 30_000, 12_000);
  const daemon = await SoakDaemon.start({ virtualDevices: 1 });
  try {
    const [deviceId] = await daemon.waitDevices(1, 10_000);
    // A listener with a hostile identity for the whole run: every fuzzed ListListeners writes it
    // back (control characters and markup in ProgName once crashed the daemon's reply writer).
    const listener = await ListenerProbe.open(daemon.socketPath, {
      ProgName: 'soak\u0001listener<&>\u001f',
      ClientVersionString: '\u0000\ud800\uffff',
      BundleID: 'hasOwnProperty',
      kLibUSBMuxVersion: 3,
    });
    const tunnel = await EchoTunnel.open(daemon.socketPath, deviceId ?? 1);
    check(row, await tunnel.roundTrip(), 'echo before fuzzing');
    await daemon.sampleBefore(row);
    const heartbeat = new EchoHeartbeat(tunnel);
    const figures: FuzzFigures = { framed: 0, breaking: 0, sentinelsAnswered: 0, connectionsReplaced: 0, connectRetries: 0 };
    const deadline = Date.now() + budgetMs;
    const more = (): boolean => figures.framed + figures.breaking < maxInputs && Date.now() < deadline && daemon.alive;
    const workers: Promise<void>[] = [];
    for (let w = 0; w < 4; w++) workers.push(framedWorker(daemon.socketPath, new Rng(seed * 100 + w), figures, more));
    for (let w = 0; w < 2; w++) workers.push(breakingWorker(daemon.socketPath, new Rng(seed * 1000 + w), figures, more));
    // Memory about every tenth of the time budget (a full GC in the daemon each time).
    const series = new MemorySeries(daemon, 1);
    const sampler = (async () => {
      let nextAt = Date.now() + budgetMs / 10;
      while (more()) {
        await sleep(250);
        if (Date.now() < nextAt) continue;
        nextAt += budgetMs / 10;
        await series.at(figures.framed + figures.breaking, true);
      }
    })();
    await Promise.all(workers);
    await sampler;
    await heartbeat.stop();
    row.inputs = figures.framed + figures.breaking;
    check(row, daemon.alive, 'daemon alive after fuzzing');
    check(row, heartbeat.failures === 0 && heartbeat.rounds > 0, `echo heartbeat: ${heartbeat.failures} of ${heartbeat.rounds} round trips failed`);
    check(row, await tunnel.roundTrip(65536), 'echo of 64 KiB after fuzzing');
    check(row, listener.open, 'listener still connected');
    check(row, listener.detachedCount() === 0, 'listener saw no Detached');
    const started = Date.now();
    const ids = await listDeviceIds(daemon.socketPath).catch(() => []);
    check(row, ids.length === 1, `fresh ListDevices lists the device (got ${ids.length})`);
    row.notes.push(`${figures.framed} framed + ${figures.breaking} breaking inputs, ${figures.sentinelsAnswered} sentinels answered, ${figures.connectionsReplaced} connections replaced, ${figures.connectRetries} connect retries (EAGAIN), ${heartbeat.rounds} echo heartbeats, final ListDevices ${Date.now() - started} ms`);
    row.bytesSent = tunnel.sent;
    row.bytesDelivered = tunnel.delivered;
    await sleep(300); // closed fuzz connections finish closing
    await daemon.sampleAfter(row);
    await series.at(row.inputs, true);
    series.note(row);
    checkLeaks(row);
    tunnel.close();
    await listener.close();
    checkNoCrashInLog(row, daemon.logs());
  } finally {
    if (!daemon.alive) row.crashes = Math.max(row.crashes, 1);
    await daemon.stop();
  }
  return row;
}

/** A fatal or uncaught error in the daemon log counts as a crash even if the process lived. */
export function checkNoCrashInLog(row: Row, logs: string): void {
  const fatal = logs.split('\n').filter((line) => line.includes('"level":60') || /FATAL ERROR|out of memory|^Uncaught|^\s+at .*\(node:/.test(line));
  if (fatal.length > 0) {
    row.crashes++;
    row.failures.push(`fatal log line: ${(fatal[0] ?? '').slice(0, 300)}`);
  }
}

async function framedWorker(path: string, rng: Rng, figures: FuzzFigures, more: () => boolean): Promise<void> {
  let client: MuxdClient | undefined;
  let sentinel = SENTINEL_TAG;
  while (more()) {
    client ??= await connectRetrying(path, figures, more);
    if (client === undefined) break; // the run is over (budget spent, or the daemon died)
    const parts: Buffer[] = [];
    for (let n = 0; n < BATCH; n++) parts.push(framedInput(rng, n + 1));
    const tag = ++sentinel;
    parts.push(frame(1, 8, tag, buildXml({ MessageType: 'ListDevices' })));
    client.send(Buffer.concat(parts));
    figures.framed += BATCH;
    if (await awaitTag(client, tag)) {
      figures.sentinelsAnswered++;
    } else {
      figures.connectionsReplaced++;
      await client.close();
      client = undefined;
    }
  }
  await client?.close();
}

/**
 * A busy daemon's full accept backlog makes a Unix connect fail with EAGAIN: wait and retry, while
 * the run goes on (a dead daemon refuses for good: undefined, and the scenario reports the crash).
 */
async function connectRetrying(path: string, figures: FuzzFigures, more: () => boolean): Promise<MuxdClient | undefined> {
  while (more()) {
    try {
      return await MuxdClient.connect(path);
    } catch {
      figures.connectRetries++;
      await sleep(20);
    }
  }
  return undefined;
}

async function awaitTag(client: MuxdClient, tag: number): Promise<boolean> {
  for (;;) {
    try {
      const frame = await client.readFrame(3000);
      if (frame.tag === tag) return true;
    } catch {
      return false;
    }
  }
}

async function breakingWorker(path: string, rng: Rng, figures: FuzzFigures, more: () => boolean): Promise<void> {
  while (more()) {
    const input = breakingInput(rng);
    const sent = await new Promise<boolean>((resolve) => {
      const socket = connect(path);
      socket.on('error', () => undefined);
      socket.once('connect', () => {
        socket.end(input);
        // Give the daemon a moment to parse before the hang-up (some inputs only close on EOF).
        setTimeout(() => {
          socket.destroy();
          resolve(true);
        }, rng.int(4) === 0 ? 5 : 0);
      });
      socket.once('close', () => {
        resolve(false);
      });
    });
    if (!sent) {
      figures.connectRetries++;
      await sleep(5);
      continue;
    }
    figures.breaking++;
  }
}
