/**
 * A hostile local user against the pair-record store, through a real MuxdServer on a Unix socket
 * with a real FilePairRecordStore (the unit tests in src/pairrecords prove the store alone; this
 * proves what a client gets on the wire and that the other clients keep being served):
 *
 * - a FIFO planted as `<UDID>.plist`: more ReadPairRecords than libuv has threads get Result 2 at
 *   once, and ReadBUID from another client is still answered (before: all of them hung);
 * - a symbolic link to a file outside: Result 2, the target's bytes never reach the client;
 * - a SavePairRecord of shared binary-plist references: Result 22, nothing written;
 * - the record-count cap: Result 122 (EDQUOT) for a new record beyond it, logged at warn.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import { mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FilePairRecordStore } from '../../src/pairrecords/index.js';
import { buildXml } from '../../src/plist/index.js';
import type { PlistDict } from '../../src/plist/index.js';
import { MuxdServer } from '../../src/server/index.js';
import { FakeDirectory } from '../support/fake-directory.js';
import { MuxdClient } from '../support/muxd-client.js';
import { sharedReferencePlist } from '../support/shared-reference-plist.js';

const UDID = '00008030-001A2B3C4D5E6F70';
/** Far above a local round trip, far below "hung". */
const ANSWER_MS = 2000;

let dir: string;
let config: string;
let server: MuxdServer | undefined;
let socketPath: string;
const logLines: { level: number; msg: string; err?: { message?: string } }[] = [];
const fifos: string[] = [];

async function startServer(maxRecords?: number): Promise<void> {
  const log = pino({ level: 'info' }, { write: (line: string) => { logLines.push(JSON.parse(line) as (typeof logLines)[number]); } });
  const store = new FilePairRecordStore({ dir: config, log, ...(maxRecords === undefined ? {} : { maxRecords }) });
  await store.init();
  server = new MuxdServer({ directory: new FakeDirectory(), store, log });
  await server.listen({ kind: 'unix', path: socketPath });
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'muxd-store-attacks-'));
  config = join(dir, 'lockdown');
  socketPath = join(dir, 'sock');
  logLines.length = 0;
});

afterEach(async () => {
  // Release any thread stuck opening a FIFO (synchronously: the pool may be what is stuck).
  for (const fifo of fifos.splice(0)) {
    for (let n = 0; n < 8; n++) {
      try {
        closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
      } catch {
        break;
      }
    }
  }
  await server?.close();
  server = undefined;
  await rm(dir, { recursive: true, force: true });
});

/** One request on its own client: the Result number, or the reply dict. */
async function ask(dict: PlistDict): Promise<number | PlistDict> {
  const client = await MuxdClient.connect(socketPath);
  try {
    const { reply } = await client.request(dict);
    if (reply.kind === 'result') return reply.number;
    if (reply.kind === 'plist') return reply.dict;
    throw new Error(`unexpected ${reply.kind}`);
  } finally {
    await client.close();
  }
}

function within<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`no answer within ${ms} ms (hung)`)); }, ms);
    p.then(
      (v) => { clearTimeout(timer); resolve(v); },
      (err: unknown) => { clearTimeout(timer); reject(err instanceof Error ? err : new Error(String(err))); },
    );
  });
}

describe('planted files', () => {
  it('a FIFO as <UDID>.plist: every ReadPairRecord gets Result 2 at once; ReadBUID is still served', async () => {
    await startServer();
    const fifo = join(config, `${UDID}.plist`);
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    fifos.push(fifo);
    const reads = Array.from({ length: 6 }, () => within(ask({ MessageType: 'ReadPairRecord', PairRecordID: UDID }), ANSWER_MS));
    expect(await Promise.all(reads)).toEqual([2, 2, 2, 2, 2, 2]);
    const buid = await within(ask({ MessageType: 'ReadBUID' }), ANSWER_MS);
    expect(typeof buid === 'object' && typeof buid['BUID'] === 'string').toBe(true);
    const warned = logLines.filter((l) => l.level === 40 && l.msg === 'pair-record storage failed');
    expect(warned).toHaveLength(6);
  });

  it('a symlink to a file outside as <UDID>.plist: Result 2, and the target is never sent', async () => {
    await startServer();
    const secret = join(dir, 'secret.plist');
    await writeFile(secret, buildXml({ HostPrivateKey: 'root only' }));
    await symlink(secret, join(config, `${UDID}.plist`));
    expect(await ask({ MessageType: 'ReadPairRecord', PairRecordID: UDID })).toBe(2);
  });
});

describe('bounded writes', () => {
  it('SavePairRecord of shared binary-plist references: Result 22, nothing written', async () => {
    await startServer();
    const result = await ask({ MessageType: 'SavePairRecord', PairRecordID: UDID, PairRecordData: sharedReferencePlist(6 * 1024, 3400) });
    expect(result).toBe(22);
    expect(await readdir(config)).toEqual([]);
  });

  it('a new record beyond the count cap: Result 122 (EDQUOT), logged at warn; replacing one is fine', async () => {
    await startServer(2);
    const save = (id: string): Promise<number | PlistDict> => ask({ MessageType: 'SavePairRecord', PairRecordID: id, PairRecordData: buildXml({ HostID: id }) });
    expect(await save('00000001-0000000000000000')).toBe(0);
    expect(await save('00000002-0000000000000000')).toBe(0);
    expect(await save('00000003-0000000000000000')).toBe(122);
    expect(await save('00000002-0000000000000000')).toBe(0);
    const warned = logLines.filter((l) => l.level === 40 && /holds 2 pair records/.test(l.err?.message ?? ''));
    expect(warned.map((l) => l.msg)).toEqual(['pair-record storage failed']); // once, at the server
  });
});
