import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { spawnSync } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildBinary, buildXml, parsePlist } from '../plist/index.js';
import { sharedReferencePlist } from '../../test/support/shared-reference-plist.js';
import { FilePairRecordStore, isValidPairRecordId, MAX_PAIR_RECORD_FILE_BYTES } from './file-store.js';
import type { PairRecordFs } from './file-store.js';
import {
  InvalidPairRecordDataError,
  InvalidPairRecordIdError,
  PairRecordFileRefusedError,
  PairRecordIoError,
  PairRecordLimitError,
  PairRecordNotFoundError,
  PairRecordTooLargeError,
  UnsafeConfigDirError,
} from './errors.js';

const UDID_NEW = '00008030-001A2B3C4D5E6F70';
const UDID_OLD = 'f'.repeat(40);
const RECORD = { HostID: 'ABCD', SystemBUID: 'X', DeviceCertificate: Buffer.from('-----BEGIN CERTIFICATE-----') };

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'muxd-pair-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Every fs function wrapped in a spy. */
function spyFs(): PairRecordFs & { calls: () => number } {
  const spied = {
    mkdir: vi.fn(fs.mkdir),
    open: vi.fn(fs.open),
    rename: vi.fn(fs.rename),
    unlink: vi.fn(fs.unlink),
    readdir: vi.fn(fs.readdir),
  };
  return {
    ...(spied as unknown as PairRecordFs),
    calls: () => Object.values(spied).reduce((n, f) => n + f.mock.calls.length, 0),
  };
}

describe('ids', () => {
  it('accepts the three UDID shapes and nothing else', () => {
    expect(isValidPairRecordId(UDID_NEW)).toBe(true);
    expect(isValidPairRecordId(UDID_OLD)).toBe(true);
    expect(isValidPairRecordId('00008030001A2B3C4D5E6F70')).toBe(true);
    for (const bad of ['', '..', '../etc/passwd', 'a/b', `${UDID_OLD}\0`, 'g'.repeat(40), 'f'.repeat(41), 'x'.repeat(10000), '00008030-001A2B3C4D5E6F7', 'SystemConfiguration']) {
      expect(isValidPairRecordId(bad), JSON.stringify(bad)).toBe(false);
    }
  });

  it('refuses traversal ids without a single filesystem call', async () => {
    const spy = spyFs();
    const store = new FilePairRecordStore({ dir, fs: spy });
    for (const bad of ['../../etc/shadow', '/etc/passwd', '..' + '/x', 'a\0b', 'f'.repeat(5000)]) {
      await expect(store.read(bad)).rejects.toBeInstanceOf(InvalidPairRecordIdError);
      await expect(store.save(bad, buildXml(RECORD))).rejects.toBeInstanceOf(InvalidPairRecordIdError);
      await expect(store.delete(bad)).rejects.toBeInstanceOf(InvalidPairRecordIdError);
    }
    expect(spy.calls()).toBe(0);
  });
});

describe('records', () => {
  it('save stores XML (from binary input), mode 0600; read returns the stored bytes', async () => {
    const store = new FilePairRecordStore({ dir });
    await store.save(UDID_NEW, buildBinary(RECORD));
    const file = join(dir, `${UDID_NEW}.plist`);
    const onDisk = await readFile(file);
    expect(onDisk.toString().startsWith('<?xml')).toBe(true);
    expect(parsePlist(onDisk)).toEqual(RECORD);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await store.read(UDID_NEW)).equals(onDisk)).toBe(true);
  });

  it('save overwrites an existing record', async () => {
    const store = new FilePairRecordStore({ dir });
    await store.save(UDID_OLD, buildXml({ a: 1 }));
    await store.save(UDID_OLD, buildXml({ a: 2 }));
    expect(parsePlist(await store.read(UDID_OLD))).toEqual({ a: 2 });
    expect(await readdir(dir)).toEqual([`${UDID_OLD}.plist`]);
  });

  it('refuses data that is short, not a plist, or not a dict', async () => {
    const store = new FilePairRecordStore({ dir });
    await expect(store.save(UDID_NEW, Buffer.from('bplist'))).rejects.toBeInstanceOf(InvalidPairRecordDataError);
    await expect(store.save(UDID_NEW, Buffer.from('not a plist at all'))).rejects.toBeInstanceOf(InvalidPairRecordDataError);
    await expect(store.save(UDID_NEW, buildXml(['array']))).rejects.toBeInstanceOf(InvalidPairRecordDataError);
    await expect(store.read(UDID_NEW)).rejects.toBeInstanceOf(PairRecordNotFoundError);
  });

  it('read and delete of a missing record: not found', async () => {
    const store = new FilePairRecordStore({ dir });
    await expect(store.read(UDID_NEW)).rejects.toBeInstanceOf(PairRecordNotFoundError);
    await expect(store.delete(UDID_NEW)).rejects.toBeInstanceOf(PairRecordNotFoundError);
    await store.save(UDID_NEW, buildXml(RECORD));
    await store.delete(UDID_NEW);
    await expect(store.read(UDID_NEW)).rejects.toBeInstanceOf(PairRecordNotFoundError);
  });

  it('list gives the ids that have a record, and nothing else in the directory', async () => {
    const store = new FilePairRecordStore({ dir });
    expect(await store.list()).toEqual([]);
    await store.save(UDID_NEW, buildXml(RECORD));
    await store.save(UDID_OLD, buildXml(RECORD));
    await store.systemBuid();
    await writeFile(join(dir, 'not-a-udid.plist'), 'x');
    await writeFile(join(dir, `${UDID_NEW}.plist.bak`), 'x');
    expect((await store.list()).sort()).toEqual([UDID_NEW, UDID_OLD].sort());
  });

  it('creates a missing directory with parents', async () => {
    const store = new FilePairRecordStore({ dir: join(dir, 'a', 'b') });
    await store.save(UDID_NEW, buildXml(RECORD));
    expect(await readdir(join(dir, 'a', 'b'))).toEqual([`${UDID_NEW}.plist`]);
  });
});

describe('atomic writes', () => {
  it('a crash between write and rename leaves the old record intact; init removes the temp file', async () => {
    const first = new FilePairRecordStore({ dir });
    await first.save(UDID_NEW, buildXml({ v: 1 }));
    const crashing = spyFs();
    crashing.rename = vi.fn(() => Promise.reject(new Error('simulated crash before rename')));
    crashing.unlink = vi.fn(() => Promise.reject(new Error('process is dead, no cleanup'))); // the cleanup never runs
    const store = new FilePairRecordStore({ dir, fs: crashing });
    await expect(store.save(UDID_NEW, buildXml({ v: 2 }))).rejects.toBeInstanceOf(PairRecordIoError);
    const names = await readdir(dir);
    expect(names).toHaveLength(2);
    expect(names.some((n) => n.endsWith('.tmp'))).toBe(true);
    // The leftover never shadows the record.
    const restarted = new FilePairRecordStore({ dir });
    expect(parsePlist(await restarted.read(UDID_NEW))).toEqual({ v: 1 });
    expect(await readdir(dir)).toEqual([`${UDID_NEW}.plist`]);
  });

  it('a failed write reports errno (ENOSPC → 28)', async () => {
    const full = spyFs();
    full.open = vi.fn(() => Promise.reject(Object.assign(new Error('no space'), { code: 'ENOSPC' })));
    const store = new FilePairRecordStore({ dir, fs: full });
    const err = await store.save(UDID_NEW, buildXml(RECORD)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PairRecordIoError);
    expect((err as PairRecordIoError).errno).toBe(28);
    expect((err as PairRecordIoError).operation).toBe('write');
  });

  it('a failed delete reports its errno (EACCES → 13)', async () => {
    const denied = spyFs();
    denied.unlink = vi.fn(() => Promise.reject(Object.assign(new Error('denied'), { code: 'EACCES' })));
    const store = new FilePairRecordStore({ dir, fs: denied });
    const err = await store.delete(UDID_NEW).catch((e: unknown) => e);
    expect((err as PairRecordIoError).errno).toBe(13);
    expect((err as PairRecordIoError).operation).toBe('delete');
  });
});

describe('SystemBUID', () => {
  it('generates an uppercase 8-4-4-4-12 BUID once and keeps returning it', async () => {
    const store = new FilePairRecordStore({ dir });
    const [a, b] = await Promise.all([store.systemBuid(), store.systemBuid()]);
    expect(a).toMatch(/^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$/);
    expect(b).toBe(a);
    expect(await new FilePairRecordStore({ dir }).systemBuid()).toBe(a);
  });

  it('preserves other keys in SystemConfiguration.plist', async () => {
    await writeFile(join(dir, 'SystemConfiguration.plist'), buildXml({ doPreflight: true, Other: 'x' }));
    const buid = await new FilePairRecordStore({ dir }).systemBuid();
    expect(parsePlist(await readFile(join(dir, 'SystemConfiguration.plist')))).toEqual({ doPreflight: true, Other: 'x', SystemBUID: buid });
  });

  it('reads an existing BUID as is', async () => {
    await writeFile(join(dir, 'SystemConfiguration.plist'), buildXml({ SystemBUID: 'EXISTING-BUID' }));
    expect(await new FilePairRecordStore({ dir }).systemBuid()).toBe('EXISTING-BUID');
  });
});

const root = process.getuid?.() === 0;

/** Rejects if `p` is still pending after `ms`: a read that hangs fails the test instead of timing it out. */
function within<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`still pending after ${ms} ms (hung)`)); }, ms);
    p.then(
      (v) => { clearTimeout(timer); resolve(v); },
      (err: unknown) => { clearTimeout(timer); reject(err instanceof Error ? err : new Error(String(err))); },
    );
  });
}

describe('hostile files in the directory (planted by whoever could write to it)', () => {
  const fifos: string[] = [];

  function mkfifo(path: string): void {
    expect(spawnSync('mkfifo', [path]).status).toBe(0);
    fifos.push(path);
  }

  afterEach(() => {
    // A read stuck in open() on a FIFO holds a libuv thread: opening the write end releases it
    // (synchronously: the thread pool may be the thing that is stuck).
    for (const fifo of fifos.splice(0)) {
      for (let n = 0; n < 8; n++) {
        try {
          closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
        } catch {
          break; // ENXIO: no reader left
        }
      }
    }
  });

  it('a symlink as <UDID>.plist is refused, never followed: the target is not read', async () => {
    const secret = join(dir, 'secret');
    await writeFile(secret, buildXml({ HostPrivateKey: 'not yours' }));
    await symlink(secret, join(dir, `${UDID_NEW}.plist`));
    const err = await new FilePairRecordStore({ dir }).read(UDID_NEW).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PairRecordFileRefusedError);
    expect((err as Error).message).toMatch(/symbolic link/);
    expect((err as Error).message).toContain(join(dir, `${UDID_NEW}.plist`));
  });

  it('a FIFO as <UDID>.plist is refused at once, and the store goes on serving', async () => {
    const store = new FilePairRecordStore({ dir });
    await store.save(UDID_OLD, buildXml(RECORD));
    mkfifo(join(dir, `${UDID_NEW}.plist`));
    // More reads than libuv has threads: any one of them blocking would starve the rest.
    const reads = Array.from({ length: 6 }, () => within(store.read(UDID_NEW), 2000).catch((e: unknown) => e));
    for (const err of await Promise.all(reads)) {
      expect(err).toBeInstanceOf(PairRecordFileRefusedError);
      expect((err as Error).message).toMatch(/FIFO/);
    }
    expect(parsePlist(await within(store.read(UDID_OLD), 2000))).toEqual(RECORD);
  });

  it('a directory or a socket as <UDID>.plist is refused', async () => {
    const store = new FilePairRecordStore({ dir });
    await mkdir(join(dir, `${UDID_NEW}.plist`));
    await expect(store.read(UDID_NEW)).rejects.toThrow(/a directory/);
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(join(dir, `${UDID_OLD}.plist`), resolve));
    try {
      await expect(store.read(UDID_OLD)).rejects.toBeInstanceOf(PairRecordFileRefusedError);
    } finally {
      server.close();
    }
  });

  it('a record file over the size cap is refused on read', async () => {
    await writeFile(join(dir, `${UDID_NEW}.plist`), Buffer.alloc(MAX_PAIR_RECORD_FILE_BYTES + 1, 0x20));
    const err = await new FilePairRecordStore({ dir }).read(UDID_NEW).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PairRecordFileRefusedError);
    expect((err as Error).message).toMatch(/over the \d+-byte limit/);
    await writeFile(join(dir, `${UDID_NEW}.plist`), Buffer.alloc(MAX_PAIR_RECORD_FILE_BYTES, 0x20));
    expect((await new FilePairRecordStore({ dir }).read(UDID_NEW)).length).toBe(MAX_PAIR_RECORD_FILE_BYTES);
  });

  it('SystemConfiguration.plist as a FIFO or a symlink: systemBuid refuses at once and leaves it alone', async () => {
    const config = join(dir, 'SystemConfiguration.plist');
    mkfifo(config);
    await expect(within(new FilePairRecordStore({ dir }).systemBuid(), 2000)).rejects.toBeInstanceOf(PairRecordFileRefusedError);
    expect((await fs.lstat(config)).isFIFO()).toBe(true);
    await rm(config);
    const target = join(dir, 'elsewhere.plist');
    await writeFile(target, buildXml({ SystemBUID: 'FROM-A-LINK' }));
    await symlink(target, config);
    await expect(new FilePairRecordStore({ dir }).systemBuid()).rejects.toBeInstanceOf(PairRecordFileRefusedError);
    expect((await fs.lstat(config)).isSymbolicLink()).toBe(true);
    expect(parsePlist(await readFile(target))).toEqual({ SystemBUID: 'FROM-A-LINK' });
  });
});

describe('bounded writes', () => {
  it('a record of shared binary-plist references is refused by the size cap; nothing is written', async () => {
    // 1 KiB referenced 200 times: within the plist reader's expansion budget (1 MiB), but ~270 KiB as XML.
    const bomb = sharedReferencePlist(1024, 200);
    expect(bomb.length).toBeLessThan(4 * 1024);
    const store = new FilePairRecordStore({ dir });
    const err = await store.save(UDID_NEW, bomb).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PairRecordTooLargeError);
    expect((err as PairRecordTooLargeError).limit).toBe(MAX_PAIR_RECORD_FILE_BYTES);
    expect(await readdir(dir)).toEqual([]);
  });

  it('a record that would expand past the plist reader\'s budget (13 KiB, 28 MiB as XML) is refused before any encoding', async () => {
    const bomb = sharedReferencePlist(6 * 1024, 3400);
    expect(bomb.length).toBeLessThan(16 * 1024);
    const store = new FilePairRecordStore({ dir });
    await expect(store.save(UDID_NEW, bomb)).rejects.toBeInstanceOf(InvalidPairRecordDataError);
    expect(await readdir(dir)).toEqual([]);
  });

  it('a record just over the cap once encoded is refused; the largest a 64 KiB request can carry is stored', async () => {
    const store = new FilePairRecordStore({ dir });
    // 64 KiB of data in a binary request: about 88 KiB as XML (base64 and line breaks).
    const big = buildBinary({ HostID: 'X', Filler: Buffer.alloc(64 * 1024, 7) });
    await store.save(UDID_NEW, big);
    const stored = await store.read(UDID_NEW);
    expect(stored.length).toBeGreaterThan(80 * 1024);
    expect(stored.length).toBeLessThanOrEqual(MAX_PAIR_RECORD_FILE_BYTES);
    const over = buildBinary({ HostID: 'X', Filler: Buffer.alloc(96 * 1024, 7) });
    await expect(store.save(UDID_OLD, over)).rejects.toBeInstanceOf(PairRecordTooLargeError);
  });

  it('at most maxRecords records: a new one beyond is refused; overwrite and delete still work', async () => {
    const store = new FilePairRecordStore({ dir, maxRecords: 2 });
    const ids = ['00000001-0000000000000000', '00000002-0000000000000000', '00000003-0000000000000000'] as const;
    await store.systemBuid(); // SystemConfiguration.plist does not count
    await store.save(ids[0], buildXml(RECORD));
    await store.save(ids[1], buildXml(RECORD));
    const err = await store.save(ids[2], buildXml(RECORD)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PairRecordLimitError);
    expect((err as Error).message).toMatch(/2 pair records/);
    await store.save(ids[1], buildXml({ v: 2 }));
    expect(parsePlist(await store.read(ids[1]))).toEqual({ v: 2 });
    await store.delete(ids[0]);
    await store.save(ids[2], buildXml(RECORD));
    expect((await readdir(dir)).sort()).toEqual([`${ids[1]}.plist`, `${ids[2]}.plist`, 'SystemConfiguration.plist']);
  });

  it('concurrent saves of new records never pass the limit', async () => {
    const store = new FilePairRecordStore({ dir, maxRecords: 3 });
    const ids = Array.from({ length: 8 }, (_, i) => `0000000${i}-0000000000000000`);
    const outcomes = await Promise.allSettled(ids.map((id) => store.save(id, buildXml(RECORD))));
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(3);
    for (const o of outcomes) if (o.status === 'rejected') expect(o.reason).toBeInstanceOf(PairRecordLimitError);
    expect(await readdir(dir)).toHaveLength(3);
  });
});

describe('the directory itself', () => {
  it('init refuses a group- or world-writable directory, naming it and the fix', async () => {
    const cfg = join(dir, 'lockdown');
    await mkdir(cfg);
    for (const mode of [0o775, 0o757, 0o2775, 0o1777]) {
      await chmod(cfg, mode);
      const err = await new FilePairRecordStore({ dir: cfg }).init().catch((e: unknown) => e);
      expect(err, mode.toString(8)).toBeInstanceOf(UnsafeConfigDirError);
      expect((err as Error).message).toContain(cfg);
      expect((err as Error).message).toContain(`chmod go-w ${cfg}`);
    }
    await chmod(cfg, 0o755);
    await new FilePairRecordStore({ dir: cfg }).init();
    await chmod(cfg, 0o700);
    await new FilePairRecordStore({ dir: cfg }).init();
  });

  it.runIf(root)('init refuses a directory owned by another user; root-owned is fine for any user', async () => {
    const cfg = join(dir, 'lockdown');
    await mkdir(cfg, { mode: 0o755 });
    await chown(cfg, 65534, 65534);
    const err = await new FilePairRecordStore({ dir: cfg }).init().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnsafeConfigDirError);
    expect((err as Error).message).toMatch(/owned by uid 65534/);
    expect((err as Error).message).toContain(`chown root ${cfg}`);
  });

  it('init refuses a directory whose parent others may write to (not sticky); a sticky parent is fine', async () => {
    const parent = join(dir, 'shared');
    const cfg = join(parent, 'lockdown');
    await mkdir(cfg, { recursive: true, mode: 0o755 });
    await chmod(parent, 0o777);
    const err = await new FilePairRecordStore({ dir: cfg }).init().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnsafeConfigDirError);
    expect((err as Error).message).toContain(parent);
    await chmod(parent, 0o1777);
    await new FilePairRecordStore({ dir: cfg }).init();
  });

  it('a refused directory is never created into or read from', async () => {
    const cfg = join(dir, 'lockdown');
    await mkdir(cfg, { mode: 0o777 });
    await chmod(cfg, 0o777);
    await writeFile(join(cfg, `${UDID_NEW}.plist`), buildXml(RECORD));
    const store = new FilePairRecordStore({ dir: cfg });
    await expect(store.read(UDID_NEW)).rejects.toBeInstanceOf(UnsafeConfigDirError);
    await expect(store.save(UDID_OLD, buildXml(RECORD))).rejects.toBeInstanceOf(UnsafeConfigDirError);
    await expect(store.systemBuid()).rejects.toBeInstanceOf(UnsafeConfigDirError);
    expect(await readdir(cfg)).toEqual([`${UDID_NEW}.plist`]);
  });
});
