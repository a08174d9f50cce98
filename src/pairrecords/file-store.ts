/**
 * FilePairRecordStore: pair records as `<dir>/<UDID>.plist` and the SystemBUID in
 * `<dir>/SystemConfiguration.plist`, as usbmuxd lays them out (default /var/lib/lockdown).
 *
 * - Every id is checked against the UDID shapes BEFORE any filesystem call, so `..`, `/`, NUL
 *   or overlong ids never reach a path (CVE-2025-66004).
 * - Writes are atomic: a temp file in the same directory (`.<name>.<random>.tmp`), write,
 *   fsync, rename over the target, fsync the directory. A crash leaves at most a temp file,
 *   which never shadows the record (reads open only `<UDID>.plist`) and is removed by `init()`.
 * - Records are created with mode 0600 (they hold private keys; usbmuxd leaves them 0644).
 * - Save re-encodes the dict as XML, like usbmuxd; read returns the stored bytes unchanged.
 *
 * Bounded, for a hostile local user (the socket is 0666 and any client may save records):
 * - what is written: a record is at most MAX_PAIR_RECORD_FILE_BYTES once encoded (a binary plist
 *   can reference one data object thousands of times, so a small request could otherwise become
 *   a file of tens of MiB), and a new record is refused when `maxRecords` exist; saves run one at
 *   a time, so concurrent ones cannot pass the count together;
 * - what is read: only regular files, opened with O_NOFOLLOW (never through a link) and
 *   O_NONBLOCK (a FIFO cannot hold a libuv thread, which would stall every client's reads),
 *   checked with fstat on the open descriptor, at most the same cap;
 * - the directory itself: `init()` refuses one that another user could write to (config-dir.ts).
 */
import { constants as fsConstants } from 'node:fs';
import type { Stats } from 'node:fs';
import * as nodeFs from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { buildXml, isPlistDict, parsePlist, PlistParseError } from '../plist/index.js';
import type { PlistDict, PlistValue } from '../plist/index.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { systemErrorCode } from '../errors.js';
import { assertSafeConfigDir } from './config-dir.js';
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
import type { PairRecordStore } from './store.js';

export const DEFAULT_PAIR_RECORD_DIR = '/var/lib/lockdown';
const SYSTEM_CONFIGURATION = 'SystemConfiguration.plist';
const RECORD_MODE = 0o600;
const SYSTEM_CONFIGURATION_MODE = 0o644;
const DIR_MODE = 0o755;
/** usbmuxd's minimum for PairRecordData. */
const MIN_RECORD_BYTES = 8;
/**
 * The largest record file (and SystemConfiguration.plist) written or read. A real record is
 * 5–10 KiB; the most one 64 KiB request can carry without shared references (64 KiB of data in a
 * binary plist) is about 90 KiB as XML, so only an expanding record reaches this.
 */
export const MAX_PAIR_RECORD_FILE_BYTES = 128 * 1024;
/**
 * At most this many records (with the size cap: at most 128 MiB of disk for any number of
 * hostile clients). A host pairs with one record per device it has ever trusted.
 */
export const DEFAULT_MAX_PAIR_RECORDS = 1024;
/** Read-only, never through a symbolic link, never waiting for a FIFO's writer. */
const READ_FLAGS = fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK;
const TEMP_FILE = /^\..+\.[0-9a-f]{16}\.tmp$/;
const RECORD_SUFFIX = '.plist';

/**
 * The UDID shapes devices report: 40 hex (older devices), 8 hex + '-' + 16 hex (newer devices,
 * as SerialNumber shows them), and the bare 24-hex form of the latter.
 */
const PAIR_RECORD_ID = /^(?:[0-9A-Fa-f]{40}|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{16}|[0-9A-Fa-f]{24})$/;

export function isValidPairRecordId(id: string): boolean {
  return PAIR_RECORD_ID.test(id);
}

/** The slice of node:fs/promises the store uses; injectable so tests can spy on every call. */
export interface PairRecordFs {
  mkdir: typeof nodeFs.mkdir;
  open: typeof nodeFs.open;
  rename: typeof nodeFs.rename;
  unlink: typeof nodeFs.unlink;
  readdir: typeof nodeFs.readdir;
}

export interface FilePairRecordStoreOptions {
  /** Where records live; created (with parents) if missing. Default /var/lib/lockdown. */
  readonly dir?: string;
  readonly log?: Logger;
  readonly fs?: PairRecordFs;
  /** Most records kept; a new one beyond is refused (PairRecordLimitError). Default 1024. */
  readonly maxRecords?: number;
}

export class FilePairRecordStore implements PairRecordStore {
  readonly dir: string;
  private readonly log: Logger;
  private readonly fs: PairRecordFs;
  /** The first `init()`; every operation awaits it, so calling `init` yourself is optional. */
  private ready: Promise<void> | undefined;
  /** Concurrent first calls share one generation of the SystemBUID. */
  private buidInFlight: Promise<string> | undefined;
  private readonly maxRecords: number;
  /** Saves, one after another (the record count is checked and used in one step). */
  private saves: Promise<unknown> = Promise.resolve();

  constructor(options: FilePairRecordStoreOptions = {}) {
    this.dir = options.dir ?? DEFAULT_PAIR_RECORD_DIR;
    this.log = options.log ?? silentLogger();
    this.fs = options.fs ?? nodeFs;
    this.maxRecords = options.maxRecords ?? DEFAULT_MAX_PAIR_RECORDS;
  }

  /**
   * Create the directory if missing, refuse it if another user could write to it
   * (UnsafeConfigDirError), and remove temp files a crash left behind.
   */
  init(): Promise<void> {
    this.ready ??= this.prepare();
    return this.ready;
  }

  async systemBuid(): Promise<string> {
    this.buidInFlight ??= this.readOrCreateBuid().finally(() => {
      this.buidInFlight = undefined;
    });
    return this.buidInFlight;
  }

  async read(id: string): Promise<Buffer> {
    const file = this.recordPath(id);
    await this.init();
    const bytes = await this.readRegularFile(file, `pair record ${id}`);
    if (bytes === undefined) throw new PairRecordNotFoundError(`no pair record for ${id}`);
    return bytes;
  }

  async save(id: string, data: Buffer): Promise<void> {
    const file = this.recordPath(id);
    const bytes = encodeRecord(decodeRecord(data));
    await this.init();
    const run = this.saves.then(async () => {
      await this.makeRoomFor(id);
      await this.writeAtomically(file, bytes, RECORD_MODE);
    });
    this.saves = run.catch(() => undefined);
    await run;
    this.log.info({ udid: id }, 'pair record saved');
  }

  async delete(id: string): Promise<void> {
    const file = this.recordPath(id);
    await this.init();
    try {
      await this.fs.unlink(file);
    } catch (err) {
      if (systemErrorCode(err) === 'ENOENT') throw new PairRecordNotFoundError(`no pair record for ${id}`);
      throw ioError('delete', err, `deleting pair record ${id} failed`);
    }
    this.log.info({ udid: id }, 'pair record deleted');
  }

  /** The ids that have a record (`<UDID>.plist` with a valid UDID), in no particular order. */
  async list(): Promise<string[]> {
    await this.init();
    let names: string[];
    try {
      names = await this.fs.readdir(this.dir);
    } catch (err) {
      throw ioError('read', err, `listing ${this.dir} failed`);
    }
    const ids: string[] = [];
    for (const name of names) {
      if (!name.endsWith(RECORD_SUFFIX)) continue;
      const id = name.slice(0, -RECORD_SUFFIX.length);
      if (isValidPairRecordId(id)) ids.push(id);
    }
    return ids;
  }

  /** Validates first: an invalid id never reaches the filesystem. */
  private recordPath(id: string): string {
    if (!isValidPairRecordId(id)) {
      throw new InvalidPairRecordIdError(`invalid pair record id ${JSON.stringify(id.slice(0, 64))}`);
    }
    return join(this.dir, `${id}${RECORD_SUFFIX}`);
  }

  private async prepare(): Promise<void> {
    try {
      await this.fs.mkdir(this.dir, { recursive: true, mode: DIR_MODE });
      const euid = process.geteuid?.() ?? 0;
      assertSafeConfigDir(this.dir, [euid], euid === 0 ? 'root' : String(euid));
      const names = await this.fs.readdir(this.dir);
      for (const name of names) {
        if (!TEMP_FILE.test(name)) continue;
        await this.fs.unlink(join(this.dir, name));
        this.log.warn({ file: name }, 'removed a temp file left by an interrupted write');
      }
    } catch (err) {
      this.ready = undefined; // let a later call retry (e.g. the disk came back, the mode was fixed)
      if (err instanceof UnsafeConfigDirError) throw err;
      throw ioError('write', err, `preparing ${this.dir} failed`);
    }
  }

  /** Refuses a new record (PairRecordLimitError) when `maxRecords` exist; an existing one may be replaced. */
  private async makeRoomFor(id: string): Promise<void> {
    let names: string[];
    try {
      names = await this.fs.readdir(this.dir);
    } catch (err) {
      throw ioError('write', err, `listing ${this.dir} failed`);
    }
    const records = names.filter((n) => n.endsWith('.plist') && isValidPairRecordId(n.slice(0, -'.plist'.length)));
    if (records.length < this.maxRecords || records.includes(`${id}.plist`)) return;
    throw new PairRecordLimitError(this.maxRecords);
  }

  /**
   * The bytes of `file` if it is a regular file of at most MAX_PAIR_RECORD_FILE_BYTES; undefined
   * if it does not exist. Anything else is a PairRecordFileRefusedError and is left as it is.
   */
  private async readRegularFile(file: string, what: string): Promise<Buffer | undefined> {
    let handle: nodeFs.FileHandle;
    try {
      handle = await this.fs.open(file, READ_FLAGS);
    } catch (err) {
      const code = systemErrorCode(err);
      if (code === 'ENOENT') return undefined;
      // O_NOFOLLOW on a link: ELOOP; opening a Unix socket: ENXIO.
      if (code === 'ELOOP') throw new PairRecordFileRefusedError(file, 'a symbolic link', { cause: err });
      if (code === 'ENXIO') throw new PairRecordFileRefusedError(file, 'a socket or a device without a driver', { cause: err });
      throw ioError('read', err, `reading ${what} failed`);
    }
    try {
      let st: Stats;
      try {
        st = await handle.stat();
      } catch (err) {
        throw ioError('read', err, `reading ${what} failed`);
      }
      if (!st.isFile()) throw new PairRecordFileRefusedError(file, kindOf(st));
      const overCap = (n: number): PairRecordFileRefusedError =>
        new PairRecordFileRefusedError(file, `${n} bytes, over the ${MAX_PAIR_RECORD_FILE_BYTES}-byte limit`);
      if (st.size > MAX_PAIR_RECORD_FILE_BYTES) throw overCap(st.size);
      // One byte more than the cap tells a file that grew since fstat from one that fits.
      const buf = Buffer.allocUnsafe(MAX_PAIR_RECORD_FILE_BYTES + 1);
      let length = 0;
      try {
        for (;;) {
          const { bytesRead } = await handle.read(buf, length, buf.length - length, length);
          if (bytesRead === 0) break;
          length += bytesRead;
          if (length === buf.length) break;
        }
      } catch (err) {
        throw ioError('read', err, `reading ${what} failed`);
      }
      if (length > MAX_PAIR_RECORD_FILE_BYTES) throw overCap(length);
      return Buffer.from(buf.subarray(0, length));
    } finally {
      await handle.close().catch(() => undefined); // a close error after a good read changes nothing
    }
  }

  private async readOrCreateBuid(): Promise<string> {
    await this.init();
    const file = join(this.dir, SYSTEM_CONFIGURATION);
    let config: PlistDict = {};
    // A link, a FIFO or an oversized file throws here and is left alone: it is not ours to replace.
    const bytes = await this.readRegularFile(file, SYSTEM_CONFIGURATION);
    if (bytes !== undefined) {
      try {
        const parsed = parsePlist(bytes);
        if (isPlistDict(parsed)) config = parsed;
        else this.log.warn({ file }, 'SystemConfiguration.plist is not a dict; rewriting it');
      } catch (err) {
        if (!(err instanceof PlistParseError)) throw err;
        this.log.warn({ file, err }, 'SystemConfiguration.plist unreadable; rewriting it');
      }
    }
    const existing = config['SystemBUID'];
    if (typeof existing === 'string' && existing.length > 0) return existing;
    const buid = generateBuid();
    config['SystemBUID'] = buid;
    try {
      await this.writeAtomically(file, buildXml(config), SYSTEM_CONFIGURATION_MODE);
      this.log.info({ buid }, 'generated SystemBUID');
    } catch (err) {
      // usbmuxd answers with the fresh BUID even when it cannot store it.
      this.log.warn({ err }, 'could not store the new SystemBUID');
    }
    return buid;
  }

  private async writeAtomically(file: string, bytes: Buffer, mode: number): Promise<void> {
    if (bytes.length > MAX_PAIR_RECORD_FILE_BYTES) {
      throw new PairRecordTooLargeError(MAX_PAIR_RECORD_FILE_BYTES, `${file} would be ${bytes.length} bytes, over the ${MAX_PAIR_RECORD_FILE_BYTES}-byte limit`);
    }
    const base = file.slice(this.dir.length + 1);
    const temp = join(this.dir, `.${base}.${randomBytes(8).toString('hex')}.tmp`);
    try {
      const handle = await this.fs.open(temp, 'wx', mode);
      try {
        await handle.writeFile(bytes);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await this.fs.rename(temp, file);
    } catch (err) {
      await this.fs.unlink(temp).catch(() => undefined); // best effort; init() cleans leftovers
      throw ioError('write', err, `writing ${base} failed`);
    }
    await this.syncDir();
  }

  /** Make the rename durable. Some filesystems refuse fsync on a directory; that is not fatal. */
  private async syncDir(): Promise<void> {
    try {
      const dir = await this.fs.open(this.dir, 'r');
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
    } catch (err) {
      this.log.debug({ err }, 'fsync of the pair record directory failed');
    }
  }
}

function decodeRecord(data: Buffer): PlistDict {
  if (data.length < MIN_RECORD_BYTES) {
    throw new InvalidPairRecordDataError(`pair record data of ${data.length} bytes is too short`);
  }
  let value;
  try {
    value = parsePlist(data);
  } catch (err) {
    throw new InvalidPairRecordDataError('pair record data is not a plist', { cause: err });
  }
  if (!isPlistDict(value)) throw new InvalidPairRecordDataError('pair record data is not a plist dict');
  return value;
}

/**
 * The record as XML for the disk, or PairRecordTooLargeError. A lower bound of the XML size is
 * checked first, so a record of shared references is refused before tens of MiB of XML are built.
 */
function encodeRecord(dict: PlistDict): Buffer {
  const tooLarge = (size: string): PairRecordTooLargeError =>
    new PairRecordTooLargeError(MAX_PAIR_RECORD_FILE_BYTES, `pair record would be ${size} bytes as XML, over the ${MAX_PAIR_RECORD_FILE_BYTES}-byte limit`);
  if (!xmlFitsWithin(dict, MAX_PAIR_RECORD_FILE_BYTES)) throw tooLarge('more than');
  const xml = buildXml(dict);
  if (xml.length > MAX_PAIR_RECORD_FILE_BYTES) throw tooLarge(String(xml.length));
  return xml;
}

/**
 * False when the XML of `value` is certainly longer than `limit` bytes: counts only what XML must
 * hold (base64 of data, the characters of strings and keys), and stops as soon as that passes the
 * limit. The walk visits each value once per reference, as many as the plist reader let through.
 */
function xmlFitsWithin(value: PlistValue, limit: number): boolean {
  let total = 0;
  const stack: PlistValue[] = [value];
  for (let v = stack.pop(); v !== undefined; v = stack.pop()) {
    if (Buffer.isBuffer(v)) total += Math.ceil(v.length / 3) * 4;
    else if (typeof v === 'string') total += v.length;
    else if (Array.isArray(v)) for (const item of v) stack.push(item);
    else if (isPlistDict(v)) {
      for (const [key, item] of Object.entries(v)) {
        total += key.length;
        stack.push(item);
      }
    }
    if (total > limit) return false;
  }
  return true;
}

/** What a non-regular file is, for the log. */
function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'not a regular file';
}

/** Uppercase hex in the 8-4-4-4-12 layout, from the CSPRNG (usbmuxd's is not an RFC 4122 UUID either). */
export function generateBuid(): string {
  const hex = randomBytes(16).toString('hex').toUpperCase();
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

const EIO = 5;

function ioError(operation: 'read' | 'write' | 'delete', err: unknown, message: string): PairRecordIoError {
  const code = systemErrorCode(err);
  const errno = code === undefined ? EIO : (osConstants.errno as Record<string, number | undefined>)[code] ?? EIO;
  return new PairRecordIoError(operation, errno, `${message}${code === undefined ? '' : ` (${code})`}`, { cause: err });
}
