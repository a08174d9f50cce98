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
 */
import * as nodeFs from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { buildXml, isPlistDict, parsePlist, PlistParseError } from '../plist/index.js';
import type { PlistDict } from '../plist/index.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { systemErrorCode } from '../errors.js';
import {
  InvalidPairRecordDataError,
  InvalidPairRecordIdError,
  PairRecordIoError,
  PairRecordNotFoundError,
} from './errors.js';
import type { PairRecordStore } from './store.js';

export const DEFAULT_PAIR_RECORD_DIR = '/var/lib/lockdown';
const SYSTEM_CONFIGURATION = 'SystemConfiguration.plist';
const RECORD_MODE = 0o600;
const SYSTEM_CONFIGURATION_MODE = 0o644;
const DIR_MODE = 0o755;
/** usbmuxd's minimum for PairRecordData. */
const MIN_RECORD_BYTES = 8;
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
  readFile: typeof nodeFs.readFile;
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
}

export class FilePairRecordStore implements PairRecordStore {
  readonly dir: string;
  private readonly log: Logger;
  private readonly fs: PairRecordFs;
  /** The first `init()`; every operation awaits it, so calling `init` yourself is optional. */
  private ready: Promise<void> | undefined;
  /** Concurrent first calls share one generation of the SystemBUID. */
  private buidInFlight: Promise<string> | undefined;

  constructor(options: FilePairRecordStoreOptions = {}) {
    this.dir = options.dir ?? DEFAULT_PAIR_RECORD_DIR;
    this.log = options.log ?? silentLogger();
    this.fs = options.fs ?? nodeFs;
  }

  /** Create the directory if missing and remove temp files a crash left behind. */
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
    try {
      return await this.fs.readFile(file);
    } catch (err) {
      if (systemErrorCode(err) === 'ENOENT') throw new PairRecordNotFoundError(`no pair record for ${id}`);
      throw ioError('read', err, `reading pair record ${id} failed`);
    }
  }

  async save(id: string, data: Buffer): Promise<void> {
    const file = this.recordPath(id);
    const dict = decodeRecord(data);
    await this.init();
    await this.writeAtomically(file, buildXml(dict), RECORD_MODE);
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
      const names = await this.fs.readdir(this.dir);
      for (const name of names) {
        if (!TEMP_FILE.test(name)) continue;
        await this.fs.unlink(join(this.dir, name));
        this.log.warn({ file: name }, 'removed a temp file left by an interrupted write');
      }
    } catch (err) {
      this.ready = undefined; // let a later call retry (e.g. the disk came back)
      throw ioError('write', err, `preparing ${this.dir} failed`);
    }
  }

  private async readOrCreateBuid(): Promise<string> {
    await this.init();
    const file = join(this.dir, SYSTEM_CONFIGURATION);
    let config: PlistDict = {};
    try {
      const parsed = parsePlist(await this.fs.readFile(file));
      if (isPlistDict(parsed)) config = parsed;
      else this.log.warn({ file }, 'SystemConfiguration.plist is not a dict; rewriting it');
    } catch (err) {
      if (err instanceof PlistParseError) this.log.warn({ file, err }, 'SystemConfiguration.plist unreadable; rewriting it');
      else if (systemErrorCode(err) !== 'ENOENT') throw ioError('read', err, `reading ${file} failed`);
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
