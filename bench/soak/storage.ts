/**
 * Pair-record storage under faults and attack, against the real daemon process:
 *
 * - kill -9 at a random moment of a SavePairRecord, restart: ReadPairRecord returns the old or
 *   the new record, whole (never torn, never empty, never missing);
 * - a full disk (tmpfs of 64 KiB in a private mount namespace) and then the same tmpfs remounted
 *   read-only: the client gets an error Result, the daemon keeps serving;
 * - security: traversal and odd PairRecordIDs get Result 22 and create nothing; records are
 *   0600; the socket has the configured mode and group; a bare TCP port binds loopback; nothing
 *   logs record contents or the private key, even at -vvv.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildXml, isPlistDict, parsePlist } from '../../src/plist/index.js';
import type { PlistDict } from '../../src/plist/index.js';
import { MuxdClient } from '../../test/support/muxd-client.js';
import { checkNoCrashInLog } from './client-fuzz.js';
import { encodeBody, frame } from './fuzz-frames.js';
import { check, checkLeaks, listDeviceIds, newRow, Rng, SoakDaemon, sleep } from './harness.js';
import type { Row, SoakScale } from './harness.js';

export const UDID = '00008030-001A2B3C4D5E802E';

/** One request on a fresh connection; the Result number, or the reply dict. */
export async function ask(target: string, dict: PlistDict, timeoutMs = 5000): Promise<number | PlistDict> {
  const client = await MuxdClient.connect(target);
  try {
    const { reply } = await Promise.race([
      client.request(frame(1, 8, 1, encodeBody(dict))),
      sleep(timeoutMs).then(() => {
        throw new Error(`${JSON.stringify(dict['MessageType'])} unanswered after ${timeoutMs} ms`);
      }),
    ]);
    if (reply.kind === 'result') return reply.number;
    if (reply.kind === 'plist') return reply.dict;
    throw new Error(`unexpected ${reply.kind}`);
  } finally {
    await client.close();
  }
}

function record(marker: string, size: number): Buffer {
  return buildXml({ HostID: marker, Filler: randomBytes(size), HostPrivateKey: Buffer.from(`-----BEGIN PRIVATE KEY-----${marker}`) });
}

function hostIdOf(reply: number | PlistDict): string | undefined {
  if (typeof reply === 'number') return undefined;
  const data = reply['PairRecordData'];
  if (!Buffer.isBuffer(data)) return undefined;
  try {
    const dict = parsePlist(data);
    return isPlistDict(dict) && typeof dict['HostID'] === 'string' ? dict['HostID'] : undefined;
  } catch {
    return undefined;
  }
}

export async function killDuringSaveScenario(scale: SoakScale, seed = 3): Promise<Row> {
  const row = newRow('kill -9 during SavePairRecord');
  const rounds = scale.pick(150, 25, 8);
  const rng = new Rng(seed);
  const configDir = mkdtempSync(join(tmpdir(), 'muxd-soak-records-'));
  let torn = 0;
  let daemon = await SoakDaemon.start({ virtualDevices: 0, configDir });
  try {
    check(row, (await ask(daemon.socketPath, { MessageType: 'SavePairRecord', PairRecordID: UDID, PairRecordData: record('gen-0', 30 * 1024) })) === 0, 'first save');
    let confirmed = 'gen-0';
    for (let n = 1; n <= rounds; n++) {
      const next = `gen-${n}`;
      const client = await MuxdClient.connect(daemon.socketPath);
      client.socket.on('error', () => undefined);
      client.send(frame(1, 8, n, buildXml({ MessageType: 'SavePairRecord', PairRecordID: UDID, PairRecordData: record(next, 30 * 1024) })));
      row.bytesSent += 30 * 1024;
      // Kill at once, or a few ms in: a 30 KiB save takes about that long.
      const wait = rng.int(3) === 0 ? 0 : rng.int(12);
      if (wait > 0) await sleep(wait);
      await daemon.kill9();
      await client.close();
      row.inputs++;
      daemon = await SoakDaemon.start({ virtualDevices: 0, configDir });
      const got = hostIdOf(await ask(daemon.socketPath, { MessageType: 'ReadPairRecord', PairRecordID: UDID }));
      if (got === next) {
        confirmed = next;
        row.bytesDelivered += 30 * 1024;
      } else if (got !== confirmed) {
        torn++;
        row.failures.push(`round ${n}: read back ${String(got)}, expected ${confirmed} or ${next}`);
        break;
      }
      const stray = readdirSync(configDir).filter((f) => f.endsWith('.tmp'));
      check(row, stray.length === 0, `round ${n}: temp files left after restart: ${stray.join(',')}`);
      if (stray.length > 0) break;
    }
    row.notes.push(`${row.inputs} kills at 0..12 ms into a 30 KiB save: ${torn} torn/empty/missing, last record ${confirmed}`);
    const mode = statSync(join(configDir, `${UDID}.plist`)).mode & 0o777;
    check(row, mode === 0o600, `record mode ${mode.toString(8)}`);
    checkNoCrashInLog(row, daemon.logs());
  } finally {
    await daemon.stop();
    rmSync(configDir, { recursive: true, force: true });
  }
  return row;
}

export async function fullDiskScenario(scale: SoakScale): Promise<Row> {
  const row = newRow('full disk, then read-only');
  const daemon = await SoakDaemon.start({ virtualDevices: 1, tmpfsKiB: 64 });
  try {
    await listDeviceIds(daemon.socketPath);
    await daemon.sampleBefore(row);
    const results = new Map<number, number>();
    let firstError: number | undefined;
    const attempts = scale.pick(40, 20, 12);
    for (let n = 0; n < attempts; n++) {
      const udid = `00008030-${String(n).padStart(16, '0')}`;
      const result = await ask(daemon.socketPath, { MessageType: 'SavePairRecord', PairRecordID: udid, PairRecordData: record(`disk-${n}`, 12 * 1024) });
      const number = typeof result === 'number' ? result : -1;
      results.set(number, (results.get(number) ?? 0) + 1);
      row.inputs++;
      if (number !== 0) firstError ??= number;
    }
    check(row, firstError !== undefined && firstError > 0, `a full disk gives an error Result (saw ${JSON.stringify([...results])})`);
    check(row, daemon.alive && (await listDeviceIds(daemon.socketPath)).length === 1, 'daemon serves after ENOSPC');
    // Read-only: remount the namespace's tmpfs.
    execFileSync('nsenter', ['-t', String(daemon.pid), '-m', 'mount', '-o', 'remount,ro', daemon.configDir]);
    const ro = await ask(daemon.socketPath, { MessageType: 'SavePairRecord', PairRecordID: UDID, PairRecordData: record('ro', 1024) });
    const del = await ask(daemon.socketPath, { MessageType: 'DeletePairRecord', PairRecordID: '00008030-0000000000000000' });
    row.inputs += 2;
    check(row, typeof ro === 'number' && ro > 0, `save on a read-only dir gives an error Result (got ${JSON.stringify(ro)})`);
    check(row, typeof del === 'number' && del > 0, `delete on a read-only dir gives an error Result (got ${JSON.stringify(del)})`);
    const read = hostIdOf(await ask(daemon.socketPath, { MessageType: 'ReadPairRecord', PairRecordID: '00008030-0000000000000000' }));
    check(row, read === 'disk-0', 'records written before stay readable');
    check(row, daemon.alive && (await listDeviceIds(daemon.socketPath)).length === 1, 'daemon serves after EROFS');
    const logs = daemon.logs();
    check(row, /ENOSPC/.test(logs) && /EROFS/.test(logs), 'the log names ENOSPC and EROFS');
    row.notes.push(`save Results on a 64 KiB tmpfs: ${JSON.stringify([...results])}; read-only: save ${JSON.stringify(ro)}, delete ${JSON.stringify(del)}`);
    await daemon.sampleAfter(row);
    checkLeaks(row);
    checkNoCrashInLog(row, logs);
  } finally {
    if (!daemon.alive) row.crashes = Math.max(row.crashes, 1);
    await daemon.stop();
  }
  return row;
}

const ODD_IDS = ['..', '.', '/', '../x', 'a/b', '/etc/passwd', '../../../../tmp/soak-escape', '\u0000', `${UDID}\u0000.plist`, 'x'.repeat(5000), `../${UDID}`, `${UDID}/..`, '', ' ', 'SystemConfiguration'];

export async function securityScenario(scale: SoakScale): Promise<Row> {
  const row = newRow('security');
  const marker = `SOAK-MARKER-${randomBytes(6).toString('hex')}`;
  // `--virtual-trust wait`: nobody taps Trust, so preflight never writes the phone's own record and
  // the config dir holds only what the odd ids could have written (the check below).
  const daemon = await SoakDaemon.start({ virtualDevices: 1, verbosity: 3, extraArgs: ['--socket-mode', '0660', '--socket-group', 'daemon', '--virtual-trust', 'wait'] });
  try {
    const parent = join(daemon.configDir, '..');
    const before = new Set(readdirSync(parent));
    const repeat = scale.pick(20, 5, 1);
    for (let r = 0; r < repeat; r++) {
      for (const id of ODD_IDS) {
        for (const type of ['ReadPairRecord', 'SavePairRecord', 'DeletePairRecord']) {
          const dict: PlistDict = { MessageType: type, PairRecordID: id };
          if (type === 'SavePairRecord') dict['PairRecordData'] = record(marker, 64);
          const reply = await ask(daemon.socketPath, dict);
          row.inputs++;
          check(row, reply === 22, `${type} ${JSON.stringify(id.slice(0, 40))} answered ${JSON.stringify(reply)}, not 22`);
        }
      }
    }
    const after = readdirSync(parent).filter((f) => !before.has(f));
    check(row, after.length === 0, `files appeared next to the config dir: ${after.join(',')}`);
    check(row, readdirSync(daemon.configDir).filter((f) => f !== 'SystemConfiguration.plist').length === 0, 'nothing written in the config dir for odd ids');
    check(row, /invalid pair record id/i.test(daemon.logs()), 'the log says "invalid pair record id"');
    // A real record at -vvv: 0600, read back intact, never in the log.
    const data = record(marker, 256);
    check(row, (await ask(daemon.socketPath, { MessageType: 'SavePairRecord', PairRecordID: UDID, PairRecordData: data })) === 0, 'valid save');
    check(row, hostIdOf(await ask(daemon.socketPath, { MessageType: 'ReadPairRecord', PairRecordID: UDID })) === marker, 'valid read');
    const mode = statSync(join(daemon.configDir, `${UDID}.plist`)).mode & 0o777;
    check(row, mode === 0o600, `record mode ${mode.toString(8)}, not 600`);
    await sleep(200);
    const logs = daemon.logs();
    const keyB64 = Buffer.from(`-----BEGIN PRIVATE KEY-----${marker}`).toString('base64').slice(0, 24);
    check(row, !logs.includes(marker) && !logs.includes(keyB64) && !logs.includes('PRIVATE KEY'), 'no record contents or private key in the -vvv log');
    const sock = statSync(daemon.socketPath);
    check(row, (sock.mode & 0o777) === 0o660 && sock.gid === 1, `socket mode ${(sock.mode & 0o777).toString(8)} gid ${sock.gid}, wanted 660 gid 1 (daemon)`);
    row.notes.push(`${row.inputs} odd PairRecordIDs refused; record mode ${mode.toString(8)}; socket ${(sock.mode & 0o777).toString(8)} gid ${sock.gid}; log ${logs.length} bytes at -vvv, marker absent`);
    checkNoCrashInLog(row, logs);
  } finally {
    if (!daemon.alive) row.crashes = Math.max(row.crashes, 1);
    await daemon.stop();
  }
  // A bare port binds loopback only.
  const port = 20000 + Math.floor(Math.random() * 20000);
  const tcp = await SoakDaemon.start({ virtualDevices: 0, socketArg: String(port) }).catch(() => undefined);
  if (tcp === undefined) {
    row.failures.push(`daemon on -S ${port} did not come up`);
    return row;
  }
  try {
    const listening = readFileSync(`/proc/${tcp.pid}/net/tcp`, 'utf8').split('\n').filter((l) => l.includes(`:${port.toString(16).toUpperCase().padStart(4, '0')} `) && / 0A /.test(l));
    check(row, listening.length === 1 && (listening[0] ?? '').trim().split(/\s+/)[1] === `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`, `-S ${port} listens on ${listening.map((l) => l.trim().split(/\s+/)[1]).join(',')}, wanted 127.0.0.1 only`);
    row.notes.push(`-S ${port} listens on 127.0.0.1 only`);
  } finally {
    await tcp.stop();
  }
  return row;
}
