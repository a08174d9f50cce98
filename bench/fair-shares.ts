/**
 * `npm run bench:shares [-- --daemon dist-before/main.js] [--only NAME]`: the local attacks of
 * issue 13 on the daemon's shares, against the real daemon process, one table row per figure.
 *
 * The attacker runs as `nobody` (a child process with uid/gid 65534), a second user as `daemon`
 * (uid 1), and root is this process; the daemon runs as root with its defaults, a virtual iPhone
 * and the socket in a 0755 temp dir.
 *
 *   slots     nobody opens 1100 connections that each send half a frame header and wait; then
 *             uid 1 and root try 20 ListDevices each; 12 s later, how many of nobody's are open.
 *   replies   a 16 MiB pair record in the store; 8 clients of nobody each pipeline 4
 *             ReadPairRecord and never read: the daemon's peak RSS, and root's ListDevices.
 *   listeners 200 listeners of nobody never read; root saves the phone's record with its DeviceID
 *             (each save sends Paired to every listener) 5000 times: peak RSS, listeners closed.
 *
 * Figures are printed as a Markdown table for bench/results.
 */
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildXml } from '../src/plist/index.js';
import { encodeFrame } from '../src/server/framing.js';
import { MuxdClient } from '../test/support/muxd-client.js';
import { ClientProcess } from '../test/support/uid-clients.js';
import { SoakDaemon, sleep } from './soak/harness.js';

const NOBODY = 65534;
const OTHER_UID = 1;

const listDevicesRequest = encodeFrame(1, 8, 1, buildXml({ MessageType: 'ListDevices', ProgName: 'bench-probe' })).toString('hex');

interface Figure { readonly attack: string; readonly figure: string; readonly value: string }

async function startDaemon(entry: string | undefined): Promise<SoakDaemon> {
  const daemon = await SoakDaemon.start(entry === undefined ? { virtualDevices: 1 } : { virtualDevices: 1, entry });
  chmodSync(daemon.dir, 0o755);
  return daemon;
}

async function probe(uid: number, path: string, tries: number): Promise<string> {
  const p = ClientProcess.start(uid, { mode: 'probe', path, tries, request: listDevicesRequest });
  const r = await p.next();
  return `${r.ok ?? 0}/${tries} answered${r.max === null || r.max === undefined ? '' : ` (max ${r.max.toFixed(0)} ms)`}`;
}

/** Peak RSS while `work` runs, sampled every 50 ms. */
async function peakRss(daemon: SoakDaemon, work: () => Promise<void>): Promise<number> {
  let peak = daemon.rssKiB();
  const state = { running: true };
  const sampler = (async () => {
    while (state.running && daemon.alive) {
      peak = Math.max(peak, daemon.rssKiB());
      await sleep(50);
    }
  })();
  try {
    await work();
  } finally {
    state.running = false;
    await sampler;
  }
  return peak;
}

const mib = (kib: number): string => `${(kib / 1024).toFixed(0)} MiB`;

/** heapUsed + external after a full GC in the daemon (its heap probe), or n/a. */
async function liveMemory(daemon: SoakDaemon): Promise<string> {
  // Two readings a second apart: buffers of sockets closed a moment ago are freed by then.
  await daemon.heap(20_000);
  await sleep(1000);
  const heap = await daemon.heap(20_000);
  return heap === undefined ? 'n/a' : `${(heap.heapUsed / 1048576).toFixed(0)} + ${(heap.external / 1048576).toFixed(0)} MiB`;
}

/** Clients the daemon closed, by error code, from its log ("MUXD_ERR_SLOW_READER × 7"). */
function closedBy(daemon: SoakDaemon): string {
  const counts = new Map<string, number>();
  for (const line of daemon.logs().split('\n')) {
    if (!line.includes('closing client')) continue;
    const code = /"code":"(MUXD_ERR_[A-Z_]+)"/.exec(line)?.[1] ?? 'other';
    counts.set(code, (counts.get(code) ?? 0) + 1);
  }
  return counts.size === 0 ? 'none' : [...counts].map(([code, n]) => `${code} × ${n}`).join(', ');
}

/** Wait until the daemon's fd count is stable for 2 s (its work on the attack is done), at most `ms`. */
async function settle(daemon: SoakDaemon, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  let last = daemon.fds();
  let stableSince = Date.now();
  while (Date.now() < deadline && Date.now() - stableSince < 2000) {
    await sleep(250);
    const now = daemon.fds();
    if (now !== last) {
      last = now;
      stableSince = Date.now();
    }
  }
}

async function slots(entry: string | undefined): Promise<Figure[]> {
  const daemon = await startDaemon(entry);
  const figures: Figure[] = [];
  const at = (figure: string, value: string): void => {
    figures.push({ attack: 'slots', figure, value });
  };
  try {
    const half = encodeFrame(1, 8, 1, Buffer.alloc(200)).subarray(0, 8).toString('hex');
    const t0 = Date.now();
    const attacker = ClientProcess.start(NOBODY, { mode: 'hold', path: daemon.socketPath, count: 1100, bytes: half });
    const opened = await attacker.next();
    at('nobody: half-frame connections held after 0.5 s', `${opened.open ?? 0} of 1100 (${opened.refused ?? 0} refused at connect)`);
    at('uid 1: ListDevices', await probe(OTHER_UID, daemon.socketPath, 20));
    at('root: ListDevices', await probe(0, daemon.socketPath, 20));
    await sleep(Math.max(0, 12_000 - (Date.now() - t0)));
    at('nobody: connections still open 12 s later', String((await attacker.ask()).open ?? 0));
    at('daemon RSS', mib(daemon.rssKiB()));
    attacker.stop();
    at('daemon alive', String(daemon.alive));
  } finally {
    await daemon.stop();
  }
  return figures;
}

async function replies(entry: string | undefined): Promise<Figure[]> {
  const daemon = await startDaemon(entry);
  const figures: Figure[] = [];
  const at = (figure: string, value: string): void => {
    figures.push({ attack: 'replies', figure, value });
  };
  try {
    const id = 'F'.repeat(40);
    writeFileSync(join(daemon.configDir, `${id}.plist`), buildXml({ HostID: 'bench', Filler: Buffer.alloc(16 << 20, 0x5a) }));
    const request = encodeFrame(1, 8, 1, buildXml({ MessageType: 'ReadPairRecord', PairRecordID: id }));
    const before = daemon.rssKiB();
    const fds = daemon.fds();
    let attacker: ClientProcess | undefined;
    let meanwhile = '';
    const peak = await peakRss(daemon, async () => {
      attacker = ClientProcess.start(NOBODY, { mode: 'hold', path: daemon.socketPath, count: 8, bytes: Buffer.concat([request, request, request, request]).toString('hex'), pause: true });
      await attacker.next();
      meanwhile = await probe(0, daemon.socketPath, 10);
      await settle(daemon, 60_000);
    });
    at('daemon RSS before → peak', `${mib(before)} → ${mib(peak)}`);
    at('root: ListDevices meanwhile', meanwhile);
    at('nobody: non-reading clients the daemon still holds', `${Math.max(0, daemon.fds() - fds)} of 8`);
    at('clients closed (daemon log)', closedBy(daemon));
    at('daemon heap + external after GC, attacker still connected', await liveMemory(daemon));
    attacker?.stop();
    at('daemon alive', String(daemon.alive));
  } finally {
    await daemon.stop();
  }
  return figures;
}

async function listeners(entry: string | undefined): Promise<Figure[]> {
  const daemon = await startDaemon(entry);
  const figures: Figure[] = [];
  const at = (figure: string, value: string): void => {
    figures.push({ attack: 'listeners', figure, value });
  };
  try {
    const listen = encodeFrame(1, 8, 1, buildXml({ MessageType: 'Listen', ProgName: 'bench-listener' })).toString('hex');
    const client = await MuxdClient.connect(daemon.socketPath);
    const { reply } = await client.request({ MessageType: 'ListDevices' });
    const list = reply.kind === 'plist' ? reply.dict['DeviceList'] : undefined;
    const first = Array.isArray(list) ? (list[0] as { DeviceID: number; Properties: { SerialNumber: string } } | undefined) : undefined;
    if (first === undefined) throw new Error('no device');
    const before = daemon.rssKiB();
    const fds = daemon.fds();
    let attacker: ClientProcess | undefined;
    const saves = 5000;
    const t0 = Date.now();
    const peak = await peakRss(daemon, async () => {
      attacker = ClientProcess.start(NOBODY, { mode: 'hold', path: daemon.socketPath, count: 200, bytes: listen, pause: true });
      await attacker.next();
      const save = encodeFrame(1, 8, 2, buildXml({ MessageType: 'SavePairRecord', PairRecordID: first.Properties.SerialNumber, DeviceID: first.DeviceID, PairRecordData: buildXml({ HostID: 'bench' }) }));
      for (let n = 0; n < saves; n += 100) {
        const batch = Array<Buffer>(100).fill(save);
        client.send(Buffer.concat(batch));
        for (let k = 0; k < 100; k++) await client.readFrame(30_000);
      }
    });
    at(`daemon RSS before → peak (${saves} Paired to 200 listeners, ${((Date.now() - t0) / 1000).toFixed(0)} s)`, `${mib(before)} → ${mib(peak)}`);
    await settle(daemon, 10_000);
    at('nobody: non-reading listeners the daemon still holds', `${Math.max(0, daemon.fds() - fds)} of 200`);
    at('clients closed (daemon log)', closedBy(daemon));
    at('daemon heap + external after GC, listeners still connected', await liveMemory(daemon));
    at('root: ListDevices meanwhile', await probe(0, daemon.socketPath, 10));
    attacker?.stop();
    await client.close();
    at('daemon alive', String(daemon.alive));
  } finally {
    await daemon.stop();
  }
  return figures;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const entryAt = argv.indexOf('--daemon');
  const entry = entryAt >= 0 ? argv[entryAt + 1] : undefined;
  const onlyAt = argv.indexOf('--only');
  const only = onlyAt >= 0 ? argv[onlyAt + 1] : undefined;
  const attacks: [string, (entry: string | undefined) => Promise<Figure[]>][] = [['slots', slots], ['replies', replies], ['listeners', listeners]];
  const rows: Figure[] = [];
  for (const [name, run] of attacks) {
    if (only !== undefined && !name.includes(only)) continue;
    process.stdout.write(`bench shares: ${name} ...\n`);
    rows.push(...(await run(entry)));
  }
  process.stdout.write(`\ndaemon: ${entry ?? 'dist/main.js'}\n\n| attack | figure | value |\n| --- | --- | --- |\n`);
  for (const r of rows) process.stdout.write(`| ${r.attack} | ${r.figure} | ${r.value} |\n`);
}

await main();
