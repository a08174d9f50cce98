/**
 * What a hostile local user can do to the pair-record store, against the real daemon process
 * (dist/main.js, as root when run as root). Prints one table row per attack: what the client got,
 * how long it took, what landed on disk. Not a pass/fail test (the tests are in
 * src/pairrecords/file-store.test.ts, test/component/store-attacks.test.ts and
 * test/cli/config-dir.test.ts); it measures the figures for bench/results.
 *
 *   npm run bench:store-attacks
 *
 * Attacks:
 * - shared-reference record: a SavePairRecord whose PairRecordData is a ~12 KB binary plist with
 *   one 6 KiB data object referenced 3400 times from an array; the store re-encodes it as XML;
 * - a symlink `<UDID>.plist` → /etc/shadow, then ReadPairRecord (a root daemon reads the target);
 * - a FIFO `<UDID>.plist`, 5 clients ReadPairRecord it, then a 6th client asks ReadBUID;
 * - a FIFO `SystemConfiguration.plist`, then ReadBUID;
 * - 1100 SavePairRecords under fresh UDIDs (the disk an unprivileged client can take);
 * - a config dir that is group-writable, and one owned by another user, at startup.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { constants } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildXml } from '../src/plist/index.js';
import type { PlistDict } from '../src/plist/index.js';
import { encodeFrame, MessageType } from '../src/server/framing.js';
import { MuxdClient } from '../test/support/muxd-client.js';
import { sharedReferencePlist } from '../test/support/shared-reference-plist.js';
import { daemonEntry, SoakDaemon, sleep } from './soak/harness.js';

const UDID = '00008030-001A2B3C4D5E6F70';
const ANSWER_MS = 5000;

interface Row { attack: string; got: string; time: string; disk: string }
const rows: Row[] = [];

/** One request on a fresh client: its Result number, its dict, or 'no answer'. */
async function ask(target: string, dict: PlistDict, timeoutMs = ANSWER_MS): Promise<{ outcome: string; ms: number; data?: Buffer }> {
  const client = await MuxdClient.connect(target);
  const t0 = performance.now();
  try {
    client.send(encodeFrame(1, MessageType.PLIST, 1, buildXml(dict)));
    const { reply } = await client.readReply(timeoutMs);
    const ms = performance.now() - t0;
    if (reply.kind === 'result') return { outcome: `Result ${reply.number}`, ms };
    if (reply.kind === 'plist') {
      const data = reply.dict['PairRecordData'];
      if (Buffer.isBuffer(data)) return { outcome: `PairRecordData of ${data.length} B`, ms, data };
      return { outcome: `reply ${Object.keys(reply.dict).join(',')}`, ms };
    }
    return { outcome: reply.kind, ms };
  } catch {
    return { outcome: `no answer in ${timeoutMs / 1000} s`, ms: performance.now() - t0 };
  } finally {
    void client.close();
  }
}

/** Several requests at once, each on its own client; outcomes with their times. */
async function askMany(target: string, dicts: PlistDict[]): Promise<{ outcome: string; ms: number }[]> {
  return Promise.all(dicts.map((d) => ask(target, d)));
}

const fmtMs = (ms: number): string => (ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${ms.toFixed(1)} ms`);
const fmtBytes = (n: number): string => (n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);

function dirBytes(dir: string): number {
  return readdirSync(dir).reduce((sum, name) => {
    try {
      return sum + statSync(join(dir, name)).size;
    } catch {
      return sum;
    }
  }, 0);
}

/** Unblocks threads stuck opening a FIFO for reading (the before case), so the daemon can stop. */
async function drainFifo(path: string): Promise<void> {
  try {
    const h = await open(path, constants.O_WRONLY | constants.O_NONBLOCK);
    await h.close();
  } catch {
    /* nobody is blocked on it */
  }
}

async function sharedReferences(): Promise<void> {
  const daemon = await SoakDaemon.start({ virtualDevices: 0, heapProbe: false });
  try {
    const record = sharedReferencePlist(6 * 1024, 3400);
    const r = await ask(daemon.socketPath, { MessageType: 'SavePairRecord', PairRecordID: UDID, PairRecordData: record }, 30_000);
    const file = join(daemon.configDir, `${UDID}.plist`);
    const size = existsSync(file) ? statSync(file).size : 0;
    rows.push({ attack: `SavePairRecord, ${fmtBytes(record.length)} bplist, one 6 KiB data × 3400 refs`, got: r.outcome, time: fmtMs(r.ms), disk: `${fmtBytes(size)} file` });
  } finally {
    await daemon.stop();
  }
}

async function symlinkToShadow(): Promise<void> {
  const daemon = await SoakDaemon.start({ virtualDevices: 0, heapProbe: false });
  try {
    symlinkSync('/etc/shadow', join(daemon.configDir, `${UDID}.plist`));
    const r = await ask(daemon.socketPath, { MessageType: 'ReadPairRecord', PairRecordID: UDID });
    let leaked = '';
    try {
      if (r.data?.equals(readFileSync('/etc/shadow')) === true) leaked = ' = /etc/shadow';
    } catch {
      /* not root */
    }
    rows.push({ attack: '`<UDID>.plist` → /etc/shadow, ReadPairRecord', got: `${r.outcome}${leaked}`, time: fmtMs(r.ms), disk: '' });
  } finally {
    await daemon.stop();
  }
}

async function fifoRecord(): Promise<void> {
  const daemon = await SoakDaemon.start({ virtualDevices: 0, heapProbe: false });
  const fifo = join(daemon.configDir, `${UDID}.plist`);
  try {
    await ask(daemon.socketPath, { MessageType: 'ReadBUID' }); // SystemConfiguration.plist exists
    spawnSync('mkfifo', [fifo]);
    const reads = askMany(daemon.socketPath, Array.from({ length: 5 }, () => ({ MessageType: 'ReadPairRecord', PairRecordID: UDID })));
    await sleep(200);
    const buid = await ask(daemon.socketPath, { MessageType: 'ReadBUID' });
    const outcomes = await reads;
    const worst = Math.max(...outcomes.map((o) => o.ms));
    rows.push({ attack: 'FIFO `<UDID>.plist`, 5 × ReadPairRecord', got: [...new Set(outcomes.map((o) => o.outcome))].join(', '), time: `worst ${fmtMs(worst)}`, disk: '' });
    rows.push({ attack: '… then ReadBUID from another client', got: buid.outcome, time: fmtMs(buid.ms), disk: '' });
  } finally {
    for (let n = 0; n < 8; n++) await drainFifo(fifo);
    await daemon.stop();
  }
}

async function fifoSystemConfiguration(): Promise<void> {
  const daemon = await SoakDaemon.start({ virtualDevices: 0, heapProbe: false });
  const fifo = join(daemon.configDir, 'SystemConfiguration.plist');
  try {
    spawnSync('mkfifo', [fifo]);
    const r = await ask(daemon.socketPath, { MessageType: 'ReadBUID' });
    rows.push({ attack: 'FIFO `SystemConfiguration.plist`, ReadBUID', got: r.outcome, time: fmtMs(r.ms), disk: '' });
  } finally {
    for (let n = 0; n < 8; n++) await drainFifo(fifo);
    await daemon.stop();
  }
}

async function manyRecords(): Promise<void> {
  const daemon = await SoakDaemon.start({ virtualDevices: 0, heapProbe: false });
  try {
    const count = 1100;
    const results = new Map<string, number>();
    const client = await MuxdClient.connect(daemon.socketPath);
    const t0 = performance.now();
    for (let n = 0; n < count; n++) {
      const udid = `${n.toString(16).padStart(8, '0')}-${'0'.repeat(16)}`;
      const { reply } = await client.request({ MessageType: 'SavePairRecord', PairRecordID: udid, PairRecordData: buildXml({ HostID: udid, Filler: Buffer.alloc(1024) }) });
      const key = reply.kind === 'result' ? `Result ${reply.number}` : reply.kind;
      results.set(key, (results.get(key) ?? 0) + 1);
    }
    const ms = performance.now() - t0;
    await client.close();
    const files = readdirSync(daemon.configDir).filter((n) => n !== 'SystemConfiguration.plist').length;
    rows.push({ attack: `${count} SavePairRecords under fresh UDIDs (1 KiB data each)`, got: [...results].map(([k, v]) => `${v} × ${k}`).join(', '), time: fmtMs(ms), disk: `${files} files, ${fmtBytes(dirBytes(daemon.configDir))}` });
  } finally {
    await daemon.stop();
  }
}

function startupWith(prepare: (cfg: string) => void, label: string): void {
  const dir = mkdtempSync(join(tmpdir(), 'muxd-store-attack-'));
  try {
    chmodSync(dir, 0o755);
    const cfg = join(dir, 'lockdown');
    mkdirSync(cfg);
    prepare(cfg);
    const t0 = performance.now();
    // A daemon that starts is stopped by spawnSync's timeout (SIGTERM).
    const r = spawnSync(process.execPath, [daemonEntry, '-f', '--log-format', 'json', '--no-usb', '-S', join(dir, 'sock'), '-P', 'NONE', '-C', cfg], { encoding: 'utf8', timeout: 3000 });
    const ms = performance.now() - t0;
    const started = r.signal === 'SIGTERM' || /usbmuxd ready/.test(r.stderr);
    const fatal = /"level":60.*?"msg":"([^"]*)"/.exec(r.stderr)?.[1];
    rows.push({ attack: label, got: started ? 'started, serving' : `exit ${String(r.status)}: ${fatal ?? r.stderr.trim().slice(0, 160)}`, time: fmtMs(ms), disk: '' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  await sharedReferences();
  await symlinkToShadow();
  await fifoRecord();
  await fifoSystemConfiguration();
  await manyRecords();
  startupWith((cfg) => { chmodSync(cfg, 0o775); }, 'config dir mode 0775 (group-writable), at startup');
  if (process.getuid?.() === 0) startupWith((cfg) => { chownSync(cfg, 65534, 65534); }, 'config dir owned by nobody, daemon root without -U');
  writeFileSync(1, [
    '| attack | the client got / the daemon did | time | on disk |',
    '| --- | --- | --- | --- |',
    ...rows.map((r) => `| ${r.attack} | ${r.got.replaceAll('|', '\\|')} | ${r.time} | ${r.disk} |`),
    '',
  ].join('\n'));
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
