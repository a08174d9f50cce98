import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import * as fs from 'node:fs/promises';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildBinary, buildXml, parsePlist } from '../plist/index.js';
import { FilePairRecordStore, isValidPairRecordId } from './file-store.js';
import type { PairRecordFs } from './file-store.js';
import { InvalidPairRecordDataError, InvalidPairRecordIdError, PairRecordIoError, PairRecordNotFoundError } from './errors.js';

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
    readFile: vi.fn(fs.readFile),
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
