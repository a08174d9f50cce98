/**
 * AFC (Apple File Conduit) packets and their incremental reader.
 *
 * A packet is a 40-byte header, all integers 64-bit little-endian:
 *
 *   magic "CFA6LPAA" | entire_length | this_length | packet_num | operation
 *
 * then `this_length - 40` bytes of fixed request fields (paths, handles), then
 * `entire_length - this_length` bytes of data (what FileWrite writes). Clients split the two
 * differently (go-ios and libimobiledevice put a path among the fixed fields; pymobiledevice3 puts
 * everything there except write data), so a request is read as one body: both parts, concatenated.
 * The phone answers each request with the request's packet_num: STATUS (this = entire = 48, the
 * u64 code among the fixed fields, where go-ios reads it), DATA (this = 40, the bytes as data),
 * FILE_OPEN_RES / FILE_TELL_RES (this = entire = 48, the u64 among the fixed fields).
 *
 * The reader (one per connection):
 *
 *   [ HEADER ] --40 bytes, valid, body ≤ smallBody--> [ BODY n ] --n bytes: onPacket--> [ HEADER ]
 *       |      --body > smallBody, sink.admit() true--^
 *       |      --body > smallBody, sink.admit() false--> [ DISCARD n ] --n bytes: onPacket(no body)--> [ HEADER ]
 *       +-- wrong magic, this < 40, entire < this, fixed part > smallBody, length ≥ 2^53: onBad, stopped
 *
 * A large body is buffered only when the sink admits it (it reserves the memory first: the AFC
 * tree's quota); otherwise its bytes are counted off as they arrive, never held, and the sink
 * answers the request with an error. So a host can make the phone hold at most `smallBody` plus
 * what the sink admitted, whatever lengths it claims.
 */
export const AFC_MAGIC = Buffer.from('CFA6LPAA', 'latin1');
export const AFC_HEADER = 40;
/** Bodies up to this size are buffered without asking (paths, handles, small writes). */
export const AFC_SMALL_BODY = 1024 * 1024;

export const AfcOp = {
  Status: 0x01,
  Data: 0x02,
  ReadDir: 0x03,
  ReadFile: 0x04,
  WriteFile: 0x05,
  WritePart: 0x06,
  Truncate: 0x07,
  RemovePath: 0x08,
  MakeDir: 0x09,
  GetFileInfo: 0x0a,
  GetDeviceInfo: 0x0b,
  WriteFileAtomic: 0x0c,
  FileOpen: 0x0d,
  FileOpenResult: 0x0e,
  FileRead: 0x0f,
  FileWrite: 0x10,
  FileSeek: 0x11,
  FileTell: 0x12,
  FileTellResult: 0x13,
  FileClose: 0x14,
  FileSetSize: 0x15,
  GetConnectionInfo: 0x16,
  SetConnectionOptions: 0x17,
  RenamePath: 0x18,
  SetFsBlockSize: 0x19,
  SetSocketBlockSize: 0x1a,
  FileLock: 0x1b,
  MakeLink: 0x1c,
  SetFileTime: 0x1e,
  RemovePathAndContents: 0x22,
} as const;

/** AFC status codes (the u64 in a STATUS packet). */
export const AfcStatus = {
  Success: 0,
  UnknownError: 1,
  OpHeaderInvalid: 2,
  NoResources: 3,
  ReadError: 4,
  WriteError: 5,
  UnknownPacketType: 6,
  InvalidArg: 7,
  ObjectNotFound: 8,
  ObjectIsDir: 9,
  PermDenied: 10,
  ServiceNotConnected: 11,
  OpTimeout: 12,
  TooMuchData: 13,
  EndOfData: 14,
  OpNotSupported: 15,
  ObjectExists: 16,
  ObjectBusy: 17,
  NoSpaceLeft: 18,
  OpWouldBlock: 19,
  IoError: 20,
  OpInterrupted: 21,
  OpInProgress: 22,
  InternalError: 23,
  MuxError: 30,
  NoMem: 31,
  NotEnoughData: 32,
  DirNotEmpty: 33,
} as const;

export interface AfcHeader {
  readonly entireLength: number;
  readonly thisLength: number;
  /** Echoed in the answer; any u64. */
  readonly packetNum: bigint;
  /** The opcode; a value beyond 32 bits reads as 0xFFFFFFFF (unknown). */
  readonly operation: number;
}

export interface AfcPacket {
  readonly header: AfcHeader;
  /** Fixed fields and data, concatenated; undefined when the sink refused a large body. */
  readonly body: Buffer | undefined;
}

/** Decode a header, or say why it is malformed. */
export function decodeAfcHeader(buf: Buffer, smallBody = AFC_SMALL_BODY): AfcHeader | string {
  if (buf.length < AFC_HEADER) return 'short header';
  if (!buf.subarray(0, 8).equals(AFC_MAGIC)) return 'bad magic';
  const entire = buf.readBigUInt64LE(8);
  const thisLength = buf.readBigUInt64LE(16);
  if (entire > BigInt(Number.MAX_SAFE_INTEGER)) return `entire_length ${entire} is too large`;
  if (thisLength < BigInt(AFC_HEADER)) return `this_length ${thisLength} is below the header size`;
  if (entire < thisLength) return `entire_length ${entire} is below this_length ${thisLength}`;
  if (thisLength - BigInt(AFC_HEADER) > BigInt(smallBody)) return `${thisLength - BigInt(AFC_HEADER)} bytes of fixed fields`;
  const op = buf.readBigUInt64LE(32);
  return {
    entireLength: Number(entire),
    thisLength: Number(thisLength),
    packetNum: buf.readBigUInt64LE(24),
    operation: op > 0xffffffffn ? 0xffffffff : Number(op),
  };
}

/** A packet: header, fixed fields, data. */
export function encodeAfcPacket(operation: number, packetNum: bigint, fixed: Buffer, data: Buffer = Buffer.alloc(0)): Buffer {
  const out = Buffer.allocUnsafe(AFC_HEADER + fixed.length + data.length);
  AFC_MAGIC.copy(out, 0);
  out.writeBigUInt64LE(BigInt(out.length), 8);
  out.writeBigUInt64LE(BigInt(AFC_HEADER + fixed.length), 16);
  out.writeBigUInt64LE(packetNum, 24);
  out.writeBigUInt64LE(BigInt(operation), 32);
  fixed.copy(out, AFC_HEADER);
  data.copy(out, AFC_HEADER + fixed.length);
  return out;
}

export function u64(value: number | bigint): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeBigUInt64LE(BigInt(value));
  return b;
}

export function encodeStatus(packetNum: bigint, code: number): Buffer {
  return encodeAfcPacket(AfcOp.Status, packetNum, u64(code));
}

export function encodeData(packetNum: bigint, data: Buffer): Buffer {
  return encodeAfcPacket(AfcOp.Data, packetNum, Buffer.alloc(0), data);
}

/** `key\0value\0...`, the layout of GetFileInfo and GetDeviceInfo answers. */
export function encodeKeyValues(values: Readonly<Record<string, string>>): Buffer {
  return Buffer.from(Object.entries(values).map(([k, v]) => `${k}\0${v}\0`).join(''), 'utf8');
}

export interface AfcPacketSink {
  /** A body larger than the small limit is coming: true to buffer it (memory reserved), false to discard it. */
  admit(header: AfcHeader, bodyLength: number): boolean;
  onPacket(packet: AfcPacket): void;
  /** Malformed input: the owner closes the connection; the reader has stopped. */
  onBad(reason: string): void;
}

type ReaderState = { readonly kind: 'HEADER' } | { readonly kind: 'BODY'; readonly header: AfcHeader; readonly need: number } | { readonly kind: 'DISCARD'; readonly header: AfcHeader; left: number } | { readonly kind: 'STOPPED' };

export class AfcPacketReader {
  private state: ReaderState = { kind: 'HEADER' };
  private chunks: Buffer[] = [];
  private held = 0;

  constructor(
    private readonly sink: AfcPacketSink,
    private readonly smallBody = AFC_SMALL_BODY,
  ) {}

  /** Bytes held while a header or body is incomplete. */
  get heldBytes(): number {
    return this.held;
  }

  isStopped(): boolean {
    return this.state.kind === 'STOPPED';
  }

  /** Stop reading (the connection closed). */
  stop(): void {
    this.state = { kind: 'STOPPED' };
    this.chunks = [];
    this.held = 0;
  }

  push(data: Buffer): void {
    let rest = data;
    while (rest.length > 0) {
      const state = this.state;
      switch (state.kind) {
        case 'STOPPED':
          return;
        case 'DISCARD': {
          const n = Math.min(state.left, rest.length);
          state.left -= n;
          rest = rest.subarray(n);
          if (state.left === 0) this.emit(state.header, undefined);
          break;
        }
        case 'HEADER':
        case 'BODY': {
          const need = state.kind === 'HEADER' ? AFC_HEADER : state.need;
          const n = Math.min(need - this.held, rest.length);
          this.chunks.push(rest.subarray(0, n));
          this.held += n;
          rest = rest.subarray(n);
          if (this.held < need) return;
          const whole = this.chunks.length === 1 ? (this.chunks[0] ?? Buffer.alloc(0)) : Buffer.concat(this.chunks, this.held);
          this.chunks = [];
          this.held = 0;
          if (state.kind === 'HEADER') this.onHeader(whole);
          else this.emit(state.header, whole);
          break;
        }
      }
    }
  }

  private onHeader(bytes: Buffer): void {
    const header = decodeAfcHeader(bytes, this.smallBody);
    if (typeof header === 'string') {
      this.stop();
      this.sink.onBad(header);
      return;
    }
    const bodyLength = header.entireLength - AFC_HEADER;
    if (bodyLength === 0) {
      this.emit(header, Buffer.alloc(0));
    } else if (bodyLength <= this.smallBody || this.sink.admit(header, bodyLength)) {
      this.state = { kind: 'BODY', header, need: bodyLength };
    } else {
      this.state = { kind: 'DISCARD', header, left: bodyLength };
    }
  }

  private emit(header: AfcHeader, body: Buffer | undefined): void {
    this.state = { kind: 'HEADER' };
    this.sink.onPacket({ header, body });
  }
}
