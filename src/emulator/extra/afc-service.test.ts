import { describe, expect, it } from 'vitest';
import { FakeServiceConnection } from '../fake-connection.js';
import type { ServiceConnection } from '../service.js';
import { AfcOp, AfcPacketReader, AfcStatus, encodeAfcPacket, u64 } from './afc-codec.js';
import type { AfcPacket } from './afc-codec.js';
import { AfcFileSystem } from './afc-fs.js';
import { createAfcService, MAX_AFC_HANDLES } from './afc-service.js';
import type { AfcService } from './afc-service.js';

const cstr = (s: string): Buffer => Buffer.from(`${s}\0`, 'utf8');

/** The host's end of one AFC connection: requests in, decoded answers out. */
class Host {
  readonly replies: AfcPacket[] = [];
  readonly conn: FakeServiceConnection;
  private num = 1n;
  private readonly reader = new AfcPacketReader({
    admit: () => true,
    onPacket: (p) => this.replies.push(p),
    onBad: (reason) => {
      throw new Error(reason);
    },
  });

  constructor(readonly service: AfcService, conn?: FakeServiceConnection) {
    this.conn = conn ?? new FakeServiceConnection(49_156, (data) => {
      this.reader.push(Buffer.from(data));
    }, () => service.onClose?.(this.conn, 'device-closed'));
    service.onOpen?.(this.conn);
  }

  packet(op: number, fixed: Buffer = Buffer.alloc(0), data?: Buffer): Buffer {
    return encodeAfcPacket(op, this.num++, fixed, data);
  }

  send(bytes: Buffer): void {
    this.service.onData(this.conn, bytes);
  }

  /** One request, its one answer. */
  op(op: number, fixed: Buffer = Buffer.alloc(0), data?: Buffer): AfcPacket {
    const before = this.replies.length;
    this.send(this.packet(op, fixed, data));
    expect(this.replies.length).toBe(before + 1);
    const reply = this.replies[before];
    if (reply === undefined) throw new Error('no reply');
    return reply;
  }

  status(op: number, fixed: Buffer = Buffer.alloc(0), data?: Buffer): number {
    const reply = this.op(op, fixed, data);
    expect(reply.header.operation).toBe(AfcOp.Status);
    return Number(reply.body?.readBigUInt64LE(0));
  }

  data(op: number, fixed: Buffer = Buffer.alloc(0)): Buffer {
    const reply = this.op(op, fixed);
    expect(reply.header.operation, reply.header.operation === AfcOp.Status ? `status ${reply.body?.readBigUInt64LE(0) ?? ''}` : '').toBe(AfcOp.Data);
    return reply.body ?? Buffer.alloc(0);
  }

  open(path: string, mode: number): bigint {
    const reply = this.op(AfcOp.FileOpen, Buffer.concat([u64(mode), cstr(path)]));
    expect(reply.header.operation).toBe(AfcOp.FileOpenResult);
    return reply.body?.readBigUInt64LE(0) ?? 0n;
  }
}

const kv = (b: Buffer): Record<string, string> => {
  const parts = b.toString('utf8').split('\0').slice(0, -1);
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < parts.length; i += 2) out[parts[i] ?? ''] = parts[i + 1] ?? '';
  return out;
};

describe('AFC service', () => {
  it('ReadDir lists "." and ".." first, then the seeded tree; a missing path is ObjectNotFound', () => {
    const h = new Host(createAfcService());
    expect(h.data(AfcOp.ReadDir, cstr('/')).toString().split('\0')).toEqual(['.', '..', 'Books', 'DCIM', 'Downloads', 'PhotoData', 'PublicStaging', 'Purchases', 'Recordings', 'iTunes_Control', '']);
    expect(h.status(AfcOp.ReadDir, cstr('/nope'))).toBe(AfcStatus.ObjectNotFound);
    expect(h.data(AfcOp.ReadDir, Buffer.from('DCIM')).toString()).toBe('.\0..\x00100APPLE\0'); // go-ios: no NUL, no leading slash
  });

  it('GetFileInfo and GetDeviceInfo answer key/value lists', () => {
    const fs = new AfcFileSystem({ capacity: 1 << 20, now: () => 1_700_000_000_123 });
    const h = new Host(createAfcService(fs));
    expect(kv(h.data(AfcOp.GetFileInfo, cstr('/Downloads/readme.txt')))).toEqual({
      st_size: '77',
      st_blocks: '1',
      st_nlink: '1',
      st_ifmt: 'S_IFREG',
      st_mtime: '1700000000123000000',
      st_birthtime: '1700000000123000000',
    });
    expect(kv(h.data(AfcOp.GetFileInfo, cstr('/DCIM')))['st_ifmt']).toBe('S_IFDIR');
    expect(h.status(AfcOp.GetFileInfo, cstr('/missing'))).toBe(AfcStatus.ObjectNotFound);
    const info = kv(h.data(AfcOp.GetDeviceInfo));
    expect(info).toEqual({ Model: 'iPhone15,2', FSTotalBytes: String(1 << 20), FSFreeBytes: String((1 << 20) - fs.used), FSBlockSize: '4096' });
  });

  it('FileOpen w, FileWrite, FileTell, FileSeek, FileRead, FileClose', () => {
    const h = new Host(createAfcService());
    const w = h.open('/Downloads/a.txt', 3);
    expect(h.status(AfcOp.FileWrite, u64(w), Buffer.from('hello world'))).toBe(AfcStatus.Success);
    const tell = h.op(AfcOp.FileTell, u64(w));
    expect([tell.header.operation, tell.body?.readBigUInt64LE(0)]).toEqual([AfcOp.FileTellResult, 11n]);
    expect(h.status(AfcOp.FileClose, u64(w))).toBe(AfcStatus.Success);
    expect(h.status(AfcOp.FileClose, u64(w))).toBe(AfcStatus.InvalidArg);

    const r = h.open('/Downloads/a.txt', 1);
    expect(h.status(AfcOp.FileWrite, u64(r), Buffer.from('x'))).toBe(AfcStatus.PermDenied);
    expect(h.data(AfcOp.FileRead, Buffer.concat([u64(r), u64(5)])).toString()).toBe('hello');
    const seek = Buffer.alloc(8);
    seek.writeBigInt64LE(-5n);
    expect(h.status(AfcOp.FileSeek, Buffer.concat([u64(r), u64(2), seek]))).toBe(AfcStatus.Success);
    expect(h.data(AfcOp.FileRead, Buffer.concat([u64(r), u64(100)])).toString()).toBe('world');
    expect(h.data(AfcOp.FileRead, Buffer.concat([u64(r), u64(100)])).length).toBe(0);
    expect(h.status(AfcOp.FileClose, u64(r))).toBe(AfcStatus.Success);

    const a = h.open('/Downloads/a.txt', 5);
    expect(h.status(AfcOp.FileWrite, u64(a), Buffer.from('!'))).toBe(AfcStatus.Success);
    expect(h.service.fs.readFile('/Downloads/a.txt')?.toString()).toBe('hello world!');
    expect(h.status(AfcOp.FileSetSize, Buffer.concat([u64(a), u64(5)]))).toBe(AfcStatus.Success);
    expect(h.service.fs.readFile('/Downloads/a.txt')?.toString()).toBe('hello');
  });

  it('FileOpen: r of a missing file, any mode on a directory or in a missing directory', () => {
    const h = new Host(createAfcService());
    for (const [path, mode, code] of [
      ['/nope.txt', 1, AfcStatus.ObjectNotFound],
      ['/DCIM', 3, AfcStatus.ObjectIsDir],
      ['/no/dir/f', 3, AfcStatus.ObjectNotFound],
      ['/Downloads/x', 9, AfcStatus.InvalidArg],
    ] as const) {
      expect(h.status(AfcOp.FileOpen, Buffer.concat([u64(mode), cstr(path)])), `${path} ${mode}`).toBe(code);
    }
  });

  it('MakeDir makes parents; RemovePath refuses a full directory; RemovePathAndContents and RenamePath', () => {
    const h = new Host(createAfcService());
    expect(h.status(AfcOp.MakeDir, cstr('/a/b/c'))).toBe(AfcStatus.Success);
    expect(h.status(AfcOp.MakeDir, cstr('/a/b'))).toBe(AfcStatus.Success);
    expect(h.status(AfcOp.RemovePath, cstr('/a'))).toBe(AfcStatus.DirNotEmpty);
    expect(h.status(AfcOp.RenamePath, Buffer.concat([cstr('/a/b'), cstr('/Books/moved')]))).toBe(AfcStatus.Success);
    expect(h.data(AfcOp.ReadDir, cstr('/Books/moved')).toString()).toBe('.\0..\0c\0');
    expect(h.status(AfcOp.RenamePath, Buffer.concat([cstr('/Books'), cstr('/Books/moved/inside')]))).toBe(AfcStatus.InvalidArg);
    expect(h.status(AfcOp.RenamePath, Buffer.concat([cstr('/nope'), cstr('/x')]))).toBe(AfcStatus.ObjectNotFound);
    expect(h.status(AfcOp.RemovePathAndContents, cstr('/Books'))).toBe(AfcStatus.Success);
    expect(h.status(AfcOp.RemovePath, cstr('/a'))).toBe(AfcStatus.Success);
    expect(h.status(AfcOp.RemovePath, cstr('/'))).toBe(AfcStatus.PermDenied);
    expect(h.status(AfcOp.GetFileInfo, cstr('/Books'))).toBe(AfcStatus.ObjectNotFound);
  });

  it('unknown and unsupported opcodes get a status; the connection stays', () => {
    const h = new Host(createAfcService());
    expect(h.status(0x77)).toBe(AfcStatus.UnknownPacketType);
    expect(h.status(AfcOp.MakeLink, Buffer.concat([u64(2), cstr('a'), cstr('b')]))).toBe(AfcStatus.OpNotSupported);
    expect(h.status(AfcOp.FileRead, Buffer.alloc(3))).toBe(AfcStatus.InvalidArg);
    expect(h.conn.closed).toBe(false);
  });

  it(`at most ${MAX_AFC_HANDLES} open handles per connection; closing the connection closes them`, () => {
    const service = createAfcService();
    const h = new Host(service);
    for (let i = 0; i < MAX_AFC_HANDLES; i++) h.open(`/Downloads/f${i}`, 3);
    expect(h.status(AfcOp.FileOpen, Buffer.concat([u64(3), cstr('/Downloads/one-more')]))).toBe(AfcStatus.NoResources);
    const file = service.fs.lookup('/Downloads/f0');
    expect(file?.kind === 'file' ? file.openCount : -1).toBe(1);
    h.conn.close();
    expect(file?.kind === 'file' ? file.openCount : -1).toBe(0);
  });

  it('an upload beyond the quota: NoSpaceLeft, nothing held, nothing kept; one that fits is written', () => {
    const fs = new AfcFileSystem({ capacity: 3 * 1024 * 1024, seed: false });
    const h = new Host(createAfcService(fs));
    const w = h.open('/big', 3);
    const tooBig = h.packet(AfcOp.FileWrite, u64(w), Buffer.alloc(4 * 1024 * 1024, 1));
    for (let i = 0; i < tooBig.length; i += 65536) {
      h.send(tooBig.subarray(i, i + 65536));
      expect(fs.reserved).toBe(0);
    }
    expect(Number(h.replies.at(-1)?.body?.readBigUInt64LE(0))).toBe(AfcStatus.NoSpaceLeft);
    expect(fs.used).toBe(0);
    expect(h.service.stats.refusedUploads).toBe(1);

    const fits = h.packet(AfcOp.FileWrite, u64(w), Buffer.alloc(2 * 1024 * 1024, 2));
    h.send(fits.subarray(0, 1000));
    expect(fs.reserved).toBe(2 * 1024 * 1024 + 8); // the body is paid for while it arrives
    h.send(fits.subarray(1000));
    expect(Number(h.replies.at(-1)?.body?.readBigUInt64LE(0))).toBe(AfcStatus.Success);
    expect([fs.used, fs.reserved]).toEqual([2 * 1024 * 1024, 0]);
    expect(h.status(AfcOp.FileWrite, u64(w), Buffer.alloc(1024 * 1024 + 1))).toBe(AfcStatus.NoSpaceLeft);
  });

  it('a removed file still open keeps its bytes counted until the last close', () => {
    const fs = new AfcFileSystem({ seed: false });
    const h = new Host(createAfcService(fs));
    const w = h.open('/f', 3);
    h.status(AfcOp.FileWrite, u64(w), Buffer.alloc(1000));
    expect(h.status(AfcOp.RemovePath, cstr('/f'))).toBe(AfcStatus.Success);
    h.status(AfcOp.FileWrite, u64(w), Buffer.alloc(1000));
    expect(fs.used).toBe(2000);
    h.status(AfcOp.FileClose, u64(w));
    expect(fs.used).toBe(0);
  });

  it('answers the same whatever byte offset the request stream is split at', () => {
    const script = (h: Host): Buffer =>
      Buffer.concat([
        h.packet(AfcOp.MakeDir, cstr('/d')),
        h.packet(AfcOp.FileOpen, Buffer.concat([u64(3), cstr('/d/f')])),
        h.packet(AfcOp.FileWrite, u64(1), Buffer.from('abc')),
        h.packet(AfcOp.FileClose, u64(1)),
        h.packet(AfcOp.GetFileInfo, cstr('/d/f')),
        h.packet(AfcOp.ReadDir, cstr('/d')),
      ]);
    const reference = new Host(createAfcService(new AfcFileSystem({ seed: false, now: () => 5 })));
    reference.send(script(reference));
    const expected = reference.replies.map((p) => [p.header.operation, p.header.packetNum, p.body?.toString('hex')]);
    expect(expected).toHaveLength(6);
    for (let at = 0; at <= 400; at++) {
      const h = new Host(createAfcService(new AfcFileSystem({ seed: false, now: () => 5 })));
      const bytes = script(h);
      if (at > bytes.length) break;
      h.send(bytes.subarray(0, at));
      h.send(bytes.subarray(at));
      expect(h.replies.map((p) => [p.header.operation, p.header.packetNum, p.body?.toString('hex')]), `split at ${at}`).toEqual(expected);
    }
  });

  it('a malformed packet resets that connection only; the service serves the next one', () => {
    const service = createAfcService();
    const bad = new Host(service);
    bad.send(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n\0\0\0\0\0\0\0\0\0\0\0\0\0\0'));
    expect(bad.conn.closed).toBe(true);
    expect(service.lastReset).toMatch(/malformed AFC packet: bad magic/);
    const good = new Host(service);
    expect(good.data(AfcOp.ReadDir, cstr('/DCIM')).toString()).toContain('100APPLE');
  });

  it('a host that asks for data and never reads is reset once its unread answers pass the bound', () => {
    const service = createAfcService(new AfcFileSystem({ seed: false }), { maxQueuedBytes: 100_000 });
    service.fs.writeFile('/f', Buffer.alloc(40_000, 7));
    let queued = 0;
    let closed = false;
    const conn: ServiceConnection = {
      port: 1,
      hostPort: 2,
      sendRoom: 0,
      maxPayload: 16_000,
      get queuedBytes() {
        return queued;
      },
      get open() {
        return !closed;
      },
      write(data) {
        queued += data.length;
      },
      close() {
        closed = true;
        service.onClose?.(conn, 'device-closed');
      },
    };
    service.onOpen?.(conn);
    let num = 1n;
    const send = (op: number, fixed: Buffer): void => {
      service.onData(conn, encodeAfcPacket(op, num++, fixed));
    };
    send(AfcOp.FileOpen, Buffer.concat([u64(1), cstr('/f')]));
    for (let i = 0; i < 5 && conn.open; i++) {
      send(AfcOp.FileSeek, Buffer.concat([u64(1), u64(0), u64(0)]));
      send(AfcOp.FileRead, Buffer.concat([u64(1), u64(40_000)]));
    }
    expect(closed).toBe(true);
    expect(queued).toBeLessThanOrEqual(100_000);
    expect(service.lastReset).toMatch(/unread/);
    const file = service.fs.lookup('/f');
    expect(file?.kind === 'file' ? file.openCount : -1).toBe(0);
  });
});
