/**
 * The phone's AFC service (`com.apple.afc`) on an in-memory tree (afc-fs.ts), packets per
 * afc-codec.ts. One request, one answer, in order; every answer echoes the request's packet_num.
 *
 *   ReadDir path            → DATA "name\0..." ("." and ".." first)
 *   GetFileInfo path        → DATA "st_size\0N\0st_blocks\0...\0"
 *   GetDeviceInfo           → DATA "Model\0…\0FSTotalBytes\0…\0FSFreeBytes\0…\0FSBlockSize\0…\0"
 *   MakeDir path            → STATUS (parents made as needed)
 *   RemovePath path         → STATUS (DirNotEmpty for a full directory)
 *   RemovePathAndContents   → STATUS
 *   RenamePath from\0to\0   → STATUS
 *   Truncate size path      → STATUS
 *   SetFileTime mtime path  → STATUS
 *   FileOpen mode path      → FILE_OPEN_RES handle
 *   FileRead handle size    → DATA (at most 8 MiB; empty at the end)
 *   FileWrite handle data   → STATUS (NoSpaceLeft beyond the tree's quota)
 *   FileSeek handle whence offset, FileTell handle (→ FILE_TELL_RES), FileSetSize handle size,
 *   FileLock handle op, FileClose handle → STATUS
 *   other opcodes           → STATUS UnknownPacketType / OpNotSupported
 *
 * Per connection: the packet reader and the open handles (at most 64; all closed when the
 * connection ends). A malformed header closes the connection (the reader stops); a well-framed
 * request with bad fields gets an error status. A host that stops reading while asking for data
 * is reset once `maxQueuedBytes` of answers wait for it. No state machine beyond the reader's.
 */
import type { Service, ServiceConnection } from '../service.js';
import { AfcOp, AfcPacketReader, AfcStatus, encodeAfcPacket, encodeData, encodeKeyValues, encodeStatus, u64 } from './afc-codec.js';
import type { AfcHeader, AfcPacket } from './afc-codec.js';
import type { AfcFile } from './afc-fs.js';
import { AfcFileSystem } from './afc-fs.js';

export const AFC_SERVICE = 'com.apple.afc';
export const MAX_AFC_HANDLES = 64;
/** Largest FileRead answer. */
export const MAX_AFC_READ = 8 * 1024 * 1024;

const READABLE = new Set([1, 2, 4, 6]);
const APPEND = new Set([5, 6]);

export interface AfcServiceOptions {
  /** Answers waiting for a host beyond which the connection is reset. Default 32 MiB. */
  readonly maxQueuedBytes?: number;
  /** Request bodies buffered without asking the quota (afc-codec.ts). Default AFC_SMALL_BODY. */
  readonly smallBody?: number;
}

export interface AfcStats {
  connections: number;
  requests: number;
  /** Connections closed for a malformed packet or a host that stopped reading. */
  resets: number;
  /** Writes refused for the quota (their bytes were never held). */
  refusedUploads: number;
}

export interface AfcService extends Service {
  readonly fs: AfcFileSystem;
  readonly stats: AfcStats;
  /** Why the last connection was reset (for tests). */
  readonly lastReset: string | undefined;
}

interface Handle {
  readonly file: AfcFile;
  readonly mode: number;
  position: number;
}

interface AfcConnection {
  readonly reader: AfcPacketReader;
  readonly handles: Map<bigint, Handle>;
  nextHandle: bigint;
  /** Bytes reserved in the tree for the large body being read. */
  reserved: number;
}

/** A NUL-terminated (or body-terminated) UTF-8 string at `offset`, and the offset after it. */
function cString(body: Buffer, offset: number): [string, number] | undefined {
  if (offset > body.length) return undefined;
  const end = body.indexOf(0, offset);
  const stop = end < 0 ? body.length : end;
  return [body.toString('utf8', offset, stop), end < 0 ? body.length : end + 1];
}

function readU64(body: Buffer, offset: number): bigint | undefined {
  return body.length >= offset + 8 ? body.readBigUInt64LE(offset) : undefined;
}

/** A u64 that must fit a safe integer (sizes, positions), else undefined. */
function readSize(body: Buffer, offset: number): number | undefined {
  const value = readU64(body, offset);
  return value !== undefined && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : undefined;
}

export function createAfcService(fs: AfcFileSystem = new AfcFileSystem(), options: AfcServiceOptions = {}): AfcService {
  const maxQueued = options.maxQueuedBytes ?? 32 * 1024 * 1024;
  const stats: AfcStats = { connections: 0, requests: 0, resets: 0, refusedUploads: 0 };
  const connections = new Map<ServiceConnection, AfcConnection>();
  let lastReset: string | undefined;

  const end = (conn: ServiceConnection): void => {
    const state = connections.get(conn);
    if (state === undefined) return;
    connections.delete(conn);
    state.reader.stop();
    fs.release(state.reserved);
    state.reserved = 0;
    for (const handle of state.handles.values()) fs.close(handle.file);
    state.handles.clear();
  };

  const reset = (conn: ServiceConnection, reason: string): void => {
    lastReset = reason;
    stats.resets++;
    end(conn);
    conn.close();
  };

  const answer = (conn: ServiceConnection, bytes: Buffer): void => {
    if (!conn.open) return;
    if (conn.queuedBytes + bytes.length > maxQueued) {
      reset(conn, `the host left ${conn.queuedBytes} bytes of answers unread`);
      return;
    }
    conn.write(bytes);
  };

  const handleOf = (state: AfcConnection, body: Buffer): Handle | number => {
    const id = readU64(body, 0);
    if (id === undefined) return AfcStatus.InvalidArg;
    return state.handles.get(id) ?? AfcStatus.InvalidArg;
  };

  /** The answer to one request (a packet, ready to send). */
  const serve = (state: AfcConnection, header: AfcHeader, body: Buffer): Buffer => {
    const num = header.packetNum;
    const status = (code: number): Buffer => encodeStatus(num, code);
    const path = cString(body, 0)?.[0] ?? '';
    switch (header.operation) {
      case AfcOp.ReadDir: {
        const names = fs.list(path);
        return typeof names === 'number' ? status(names) : encodeData(num, Buffer.from(names.map((n) => `${n}\0`).join(''), 'utf8'));
      }
      case AfcOp.GetFileInfo: {
        const info = fs.stat(path);
        return typeof info === 'number' ? status(info) : encodeData(num, encodeKeyValues(info));
      }
      case AfcOp.GetDeviceInfo:
        return encodeData(num, encodeKeyValues(fs.deviceInfo()));
      case AfcOp.MakeDir:
        return status(fs.mkdir(path));
      case AfcOp.RemovePath:
        return status(fs.remove(path, false));
      case AfcOp.RemovePathAndContents:
        return status(fs.remove(path, true));
      case AfcOp.RenamePath: {
        const from = cString(body, 0);
        const to = from === undefined ? undefined : cString(body, from[1]);
        return from === undefined || to === undefined || to[0] === '' ? status(AfcStatus.InvalidArg) : status(fs.rename(from[0], to[0]));
      }
      case AfcOp.Truncate: {
        const size = readSize(body, 0);
        const target = cString(body, 8)?.[0];
        if (size === undefined || target === undefined) return status(AfcStatus.InvalidArg);
        const file = fs.open(target, 2);
        if (typeof file === 'number') return status(file);
        const code = fs.resize(file, size);
        fs.close(file);
        return status(code);
      }
      case AfcOp.SetFileTime: {
        const mtime = readU64(body, 0);
        const target = cString(body, 8)?.[0];
        const node = target === undefined ? undefined : fs.lookup(target);
        if (mtime === undefined || node === undefined) return status(mtime === undefined ? AfcStatus.InvalidArg : AfcStatus.ObjectNotFound);
        node.mtimeNs = mtime;
        return status(AfcStatus.Success);
      }
      case AfcOp.FileOpen: {
        const mode = readSize(body, 0);
        const target = cString(body, 8)?.[0];
        if (mode === undefined || target === undefined) return status(AfcStatus.InvalidArg);
        if (state.handles.size >= MAX_AFC_HANDLES) return status(AfcStatus.NoResources);
        const file = fs.open(target, mode);
        if (typeof file === 'number') return status(file);
        const id = state.nextHandle++;
        state.handles.set(id, { file, mode, position: APPEND.has(mode) ? file.size : 0 });
        return encodeAfcPacket(AfcOp.FileOpenResult, num, u64(id));
      }
      case AfcOp.FileRead: {
        const handle = handleOf(state, body);
        const size = readSize(body, 8);
        if (typeof handle === 'number' || size === undefined) return status(typeof handle === 'number' ? handle : AfcStatus.InvalidArg);
        if (!READABLE.has(handle.mode)) return status(AfcStatus.PermDenied);
        const data = fs.readAt(handle.file, handle.position, Math.min(size, MAX_AFC_READ));
        handle.position += data.length;
        return encodeData(num, data);
      }
      case AfcOp.FileWrite: {
        const handle = handleOf(state, body);
        if (typeof handle === 'number') return status(handle);
        if (handle.mode === 1) return status(AfcStatus.PermDenied);
        if (APPEND.has(handle.mode)) handle.position = handle.file.size;
        // The reserved bytes of this body become the file's (or go back if the write fails).
        fs.release(state.reserved);
        state.reserved = 0;
        const data = body.subarray(8);
        const code = fs.writeAt(handle.file, handle.position, data);
        if (code === AfcStatus.Success) handle.position += data.length;
        return status(code);
      }
      case AfcOp.FileSeek: {
        const handle = handleOf(state, body);
        const whence = readU64(body, 8);
        const offset = body.length >= 24 ? body.readBigInt64LE(16) : undefined;
        if (typeof handle === 'number' || whence === undefined || offset === undefined) return status(typeof handle === 'number' ? handle : AfcStatus.InvalidArg);
        const base = whence === 0n ? 0 : whence === 1n ? handle.position : whence === 2n ? handle.file.size : undefined;
        const target = base === undefined ? undefined : BigInt(base) + offset;
        if (target === undefined || target < 0n || target > BigInt(Number.MAX_SAFE_INTEGER)) return status(AfcStatus.InvalidArg);
        handle.position = Number(target);
        return status(AfcStatus.Success);
      }
      case AfcOp.FileTell: {
        const handle = handleOf(state, body);
        return typeof handle === 'number' ? status(handle) : encodeAfcPacket(AfcOp.FileTellResult, num, u64(handle.position));
      }
      case AfcOp.FileSetSize: {
        const handle = handleOf(state, body);
        const size = readSize(body, 8);
        if (typeof handle === 'number' || size === undefined) return status(typeof handle === 'number' ? handle : AfcStatus.InvalidArg);
        if (handle.mode === 1) return status(AfcStatus.PermDenied);
        return status(fs.resize(handle.file, size));
      }
      case AfcOp.FileLock: {
        const handle = handleOf(state, body);
        return status(typeof handle === 'number' ? handle : AfcStatus.Success);
      }
      case AfcOp.FileClose: {
        const id = readU64(body, 0);
        const handle = id === undefined ? undefined : state.handles.get(id);
        if (id === undefined || handle === undefined) return status(AfcStatus.InvalidArg);
        state.handles.delete(id);
        fs.close(handle.file);
        return status(AfcStatus.Success);
      }
      case AfcOp.MakeLink:
      case AfcOp.GetConnectionInfo:
      case AfcOp.SetConnectionOptions:
      case AfcOp.SetFsBlockSize:
      case AfcOp.SetSocketBlockSize:
      case AfcOp.ReadFile:
      case AfcOp.WriteFile:
      case AfcOp.WritePart:
      case AfcOp.WriteFileAtomic:
        return status(AfcStatus.OpNotSupported);
      default:
        return status(AfcStatus.UnknownPacketType);
    }
  };

  const onPacket = (conn: ServiceConnection, state: AfcConnection, packet: AfcPacket): void => {
    stats.requests++;
    if (packet.body === undefined) {
      // A large body the tree had no room for: its bytes were counted off, never held.
      stats.refusedUploads++;
      answer(conn, encodeStatus(packet.header.packetNum, packet.header.operation === AfcOp.FileWrite ? AfcStatus.NoSpaceLeft : AfcStatus.TooMuchData));
      return;
    }
    const reply = serve(state, packet.header, packet.body);
    fs.release(state.reserved); // a reserved body that was not a write
    state.reserved = 0;
    answer(conn, reply);
  };

  return {
    name: 'afc',
    fs,
    stats,
    get lastReset() {
      return lastReset;
    },
    onOpen(conn) {
      stats.connections++;
      const state: AfcConnection = {
        handles: new Map(),
        nextHandle: 1n,
        reserved: 0,
        reader: new AfcPacketReader({
          admit(header, bodyLength) {
            // Only uploads may be large; the tree's quota pays for the body while it arrives.
            if (header.operation !== AfcOp.FileWrite || !fs.reserve(bodyLength)) return false;
            state.reserved = bodyLength;
            return true;
          },
          onPacket(packet) {
            onPacket(conn, state, packet);
          },
          onBad(reason) {
            reset(conn, `malformed AFC packet: ${reason}`);
          },
        }, options.smallBody),
      };
      connections.set(conn, state);
    },
    onData(conn, data) {
      connections.get(conn)?.reader.push(data);
    },
    onClose(conn) {
      end(conn);
    },
  };
}
