/**
 * The emulated phone's own codec for usbmux packets on the bulk pipe.
 *
 * Deliberately independent of src/mux/wire.ts: if both sides shared one codec, a symmetric bug
 * (say, a swapped field) would round-trip perfectly and never be seen. This one is written for
 * readability, straight from the protocol table, and pinned by hex fixtures in codec.test.ts.
 *
 *   mux header v1 (8 bytes)            mux header v2 (16 bytes)
 *   +0 protocol  u32 BE                +0 protocol u32 BE   +8  magic 0xFEEDFACE
 *   +4 length    u32 BE (whole pkt)    +4 length   u32 BE   +12 tx_seq u16  +14 rx_seq u16
 *
 *   TCP header (20 bytes, inside protocol 6)
 *   +0 sport u16  +2 dport u16  +4 seq u32  +8 ack u32  +12 0x50  +13 flags
 *   +14 window u16 (= bytes >> 8)  +16 checksum 0  +18 urgent 0
 *
 * Every multi-byte field is big-endian. Decoders never throw: they return `undefined` for input
 * that does not hold what was asked for, and the caller counts it as garbage.
 */

export const MUX_MAGIC = 0xfeedface;
export const HEADER_V1 = 8;
export const HEADER_V2 = 16;
export const TCP_HEADER = 20;
export const VERSION_BODY = 12;
/** Largest mux packet either side accepts (usbmuxd drops reassembled packets above this). */
export const MAX_MUX_PACKET = 65536;

/** Mux protocol numbers. */
export const Protocol = {
  Version: 0,
  Control: 1,
  Setup: 2,
  Tcp: 6,
} as const;

/** TCP flag bits. */
export const TcpFlag = {
  FIN: 0x01,
  SYN: 0x02,
  RST: 0x04,
  PSH: 0x08,
  ACK: 0x10,
  URG: 0x20,
} as const;

/** Types of CONTROL messages the device sends (the host only logs them). */
export const ControlType = {
  Error: 3,
  Warning2: 4,
  Warning: 5,
  Info: 7,
} as const;

export type HeaderSize = typeof HEADER_V1 | typeof HEADER_V2;

export interface MuxHeader {
  readonly protocol: number;
  /** Whole packet length, header included. */
  readonly length: number;
  readonly headerSize: HeaderSize;
  /** v2 only (0 for v1). */
  readonly magic: number;
  /** v2 only (0 for v1). */
  readonly txSeq: number;
  /** v2 only (0 for v1). */
  readonly rxSeq: number;
}

/** v2 sequence fields for a packet being encoded; absent = v1 (8-byte header). */
export interface SeqFields {
  readonly txSeq: number;
  readonly rxSeq: number;
  /** Override the magic (hostile packets only). */
  readonly magic?: number;
}

export interface TcpHeader {
  readonly sport: number;
  readonly dport: number;
  readonly seq: number;
  readonly ack: number;
  readonly flags: number;
  /** Window in BYTES; on the wire it is `bytes >> 8` (encode) and `field << 8` (decode). */
  readonly window: number;
}

export interface VersionBody {
  readonly major: number;
  readonly minor: number;
  readonly padding: number;
}

/** Write the mux header at the start of `packet` (its length is the packet's). */
function writeMuxHeader(packet: Buffer, protocol: number, seq: SeqFields | undefined): void {
  packet.writeUInt32BE(protocol >>> 0, 0);
  packet.writeUInt32BE(packet.length, 4);
  if (seq === undefined) return;
  packet.writeUInt32BE((seq.magic ?? MUX_MAGIC) >>> 0, 8);
  packet.writeUInt16BE(seq.txSeq & 0xffff, 12);
  packet.writeUInt16BE(seq.rxSeq & 0xffff, 14);
}

/** Encode one mux packet. `seq` given → 16-byte v2 header, otherwise 8-byte v1 header. */
export function encodeMux(protocol: number, body: Buffer, seq?: SeqFields): Buffer {
  const headerSize = seq === undefined ? HEADER_V1 : HEADER_V2;
  const packet = Buffer.allocUnsafe(headerSize + body.length);
  writeMuxHeader(packet, protocol, seq);
  body.copy(packet, headerSize);
  return packet;
}

/** VERSION packet; always the 8-byte header (the peer parses it before the version is known). */
export function encodeVersion(version: VersionBody): Buffer {
  const body = Buffer.alloc(VERSION_BODY);
  body.writeUInt32BE(version.major >>> 0, 0);
  body.writeUInt32BE(version.minor >>> 0, 4);
  body.writeUInt32BE(version.padding >>> 0, 8);
  return encodeMux(Protocol.Version, body);
}

/** SETUP packet (host → device, v2): body is the single byte 0x07. */
export function encodeSetup(seq: SeqFields): Buffer {
  return encodeMux(Protocol.Setup, Buffer.from([0x07]), seq);
}

/** CONTROL packet (device → host): one type byte, then ASCII text. */
export function encodeControl(type: number, text: string, seq?: SeqFields): Buffer {
  const textBytes = Buffer.from(text, 'latin1');
  const body = Buffer.allocUnsafe(1 + textBytes.length);
  body.writeUInt8(type & 0xff, 0);
  textBytes.copy(body, 1);
  return encodeMux(Protocol.Control, body, seq);
}

/** Write the 20-byte TCP header into `buf` at `offset`. */
export function writeTcpHeader(buf: Buffer, offset: number, tcp: TcpHeader): void {
  buf.writeUInt16BE(tcp.sport & 0xffff, offset);
  buf.writeUInt16BE(tcp.dport & 0xffff, offset + 2);
  buf.writeUInt32BE(tcp.seq >>> 0, offset + 4);
  buf.writeUInt32BE(tcp.ack >>> 0, offset + 8);
  buf.writeUInt8(0x50, offset + 12); // data offset: 5 words, no options
  buf.writeUInt8(tcp.flags & 0xff, offset + 13);
  buf.writeUInt16BE(Math.min(Math.floor(tcp.window / 256), 0xffff), offset + 14);
  buf.writeUInt32BE(0, offset + 16); // checksum and urgent pointer: always 0
}

/** The 20-byte TCP header alone. */
export function encodeTcpHeader(tcp: TcpHeader): Buffer {
  const header = Buffer.allocUnsafe(TCP_HEADER);
  writeTcpHeader(header, 0, tcp);
  return header;
}

/** TCP packet: mux header + TCP header + payload, in one buffer (one bulk transfer). */
export function encodeTcp(tcp: TcpHeader, payload: Buffer, seq?: SeqFields): Buffer {
  const headerSize = seq === undefined ? HEADER_V1 : HEADER_V2;
  const packet = Buffer.allocUnsafe(headerSize + TCP_HEADER + payload.length);
  writeMuxHeader(packet, Protocol.Tcp, seq);
  writeTcpHeader(packet, headerSize, tcp);
  payload.copy(packet, headerSize + TCP_HEADER);
  return packet;
}

/** The `length` field, readable in either header version; undefined if fewer than 8 bytes. */
export function peekLength(buf: Buffer, offset = 0): number | undefined {
  if (buf.length - offset < HEADER_V1) return undefined;
  return buf.readUInt32BE(offset + 4);
}

/** Decode a mux header of the given size; undefined if the buffer is too short for it. */
export function decodeMuxHeader(packet: Buffer, headerSize: HeaderSize): MuxHeader | undefined {
  if (packet.length < headerSize) return undefined;
  const protocol = packet.readUInt32BE(0);
  const length = packet.readUInt32BE(4);
  if (headerSize === HEADER_V1) return { protocol, length, headerSize, magic: 0, txSeq: 0, rxSeq: 0 };
  return {
    protocol,
    length,
    headerSize,
    magic: packet.readUInt32BE(8),
    txSeq: packet.readUInt16BE(12),
    rxSeq: packet.readUInt16BE(14),
  };
}

/** Decode a VERSION body (12 bytes starting at `offset`); undefined if short. */
export function decodeVersionBody(packet: Buffer, offset: number): VersionBody | undefined {
  if (packet.length - offset < VERSION_BODY) return undefined;
  return {
    major: packet.readUInt32BE(offset),
    minor: packet.readUInt32BE(offset + 4),
    padding: packet.readUInt32BE(offset + 8),
  };
}

/** Decode the TCP header starting at `offset`; undefined if fewer than 20 bytes remain. */
export function decodeTcpHeader(packet: Buffer, offset: number): TcpHeader | undefined {
  if (packet.length - offset < TCP_HEADER) return undefined;
  return {
    sport: packet.readUInt16BE(offset),
    dport: packet.readUInt16BE(offset + 2),
    seq: packet.readUInt32BE(offset + 4),
    ack: packet.readUInt32BE(offset + 8),
    flags: packet.readUInt8(offset + 13),
    window: packet.readUInt16BE(offset + 14) * 256,
  };
}

/** Human-readable flag set, for diagnostics and test messages: e.g. "SYN|ACK". */
export function flagNames(flags: number): string {
  const names: string[] = [];
  for (const [name, bit] of Object.entries(TcpFlag)) if ((flags & bit) !== 0) names.push(name);
  return names.length === 0 ? 'none' : names.join('|');
}
