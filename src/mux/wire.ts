/**
 * Pure encoders and decoders for the mux packets on the bulk pipe (docs/usbmux-protocol.md §2).
 * No I/O and no hidden state: header fields in, bytes out, and back. All fields are big-endian.
 *
 *   mux v1 header (8):  protocol u32 | length u32
 *   mux v2 header (16): protocol u32 | length u32 | magic u32 (0xFEEDFACE) | tx_seq u16 | rx_seq u16
 *   TCP header (20):    sport u16 | dport u16 | seq u32 | ack u32 | 0x50 | flags u8 | window u16
 *                       | checksum u16 (0) | urgent u16 (0)       window on the wire = bytes >> 8
 *
 * `length` always counts the whole packet, header included.
 */
import {
  MUX_HEADER_V1,
  MUX_HEADER_V2,
  MUX_MAGIC,
  Protocol,
  SETUP_BODY,
  TCP_DATA_OFFSET,
  TCP_HEADER_SIZE,
  VERSION_BODY_SIZE,
  WINDOW_SHIFT,
} from './constants.js';

/** Mux header size in bytes: 8 (v1 or version not yet known) or 16 (v2). */
export type MuxHeaderSize = typeof MUX_HEADER_V1 | typeof MUX_HEADER_V2;

/** A decoded mux header; for v1 headers `magic`, `txSeq` and `rxSeq` are 0. */
export interface MuxHeader {
  protocol: number;
  /** Whole packet in bytes, header included. */
  length: number;
  magic: number;
  txSeq: number;
  rxSeq: number;
}

/** The mux-level sequence fields a sender puts in a v2 header (ignored for v1). */
export interface MuxSeq {
  headerSize: MuxHeaderSize;
  /** u16, the sender's packet counter. */
  txSeq: number;
  /** u16, see session.ts for what usbmuxd puts here. */
  rxSeq: number;
}

/** The fields of the 20-byte TCP header we use. */
export interface TcpHeader {
  sport: number;
  dport: number;
  /** u32 */
  seq: number;
  /** u32 */
  ack: number;
  /** TcpFlag bits. */
  flags: number;
  /** Window in BYTES; the wire carries bytes >> 8, so only multiples of 256 below 2^24 round-trip. */
  window: number;
}

export interface VersionBody {
  major: number;
  minor: number;
}

export interface ControlBody {
  type: number;
  message: string;
}

/**
 * Counts the copies made by `encodeTcpPacket`, the one copy site of the host → device path. Read by
 * bench/mux-throughput.ts to report copies per byte; one increment per packet, never reset here.
 */
export const outCopyStats = { copies: 0, bytes: 0 };

function allocUnsafe(length: number): Buffer {
  return Buffer.allocUnsafe(length);
}

/** Write a mux header at offset 0 of `buf`. For v1 only protocol and length are written. */
export function writeMuxHeader(buf: Buffer, protocol: number, length: number, seq: MuxSeq): void {
  buf.writeUInt32BE(protocol, 0);
  buf.writeUInt32BE(length, 4);
  if (seq.headerSize === MUX_HEADER_V2) {
    buf.writeUInt32BE(MUX_MAGIC, 8);
    buf.writeUInt16BE(seq.txSeq & 0xffff, 12);
    buf.writeUInt16BE(seq.rxSeq & 0xffff, 14);
  }
}

/** VERSION, always with the v1 header (the peer cannot know the version yet): 20 bytes. */
export function encodeVersionPacket(major: number, minor: number): Buffer {
  const length = MUX_HEADER_V1 + VERSION_BODY_SIZE;
  const buf = Buffer.alloc(length);
  buf.writeUInt32BE(Protocol.VERSION, 0);
  buf.writeUInt32BE(length, 4);
  buf.writeUInt32BE(major, 8);
  buf.writeUInt32BE(minor, 12);
  // padding u32 stays 0
  return buf;
}

/** SETUP, always with the v2 header and the body byte 0x07: 17 bytes. */
export function encodeSetupPacket(txSeq: number, rxSeq: number): Buffer {
  const length = MUX_HEADER_V2 + 1;
  const buf = Buffer.allocUnsafe(length);
  writeMuxHeader(buf, Protocol.SETUP, length, { headerSize: MUX_HEADER_V2, txSeq, rxSeq });
  buf[MUX_HEADER_V2] = SETUP_BODY;
  return buf;
}

/**
 * One TCP packet: mux header + TCP header + payload, allocated once (`alloc`, the transport's
 * reused buffers, else allocUnsafe: every byte is written below). `payload` may be one buffer or
 * several views packed into this one segment.
 *
 * COPY: the payload bytes are copied into the packet here. This is the one copy of the
 * host → device path (libusb needs header and payload contiguous; node-usb has no scatter-gather).
 */
export function encodeTcpPacket(
  seq: MuxSeq,
  tcp: TcpHeader,
  payload: Buffer | readonly Buffer[] | undefined,
  alloc: (length: number) => Buffer = allocUnsafe,
): Buffer {
  let payloadLength = 0;
  if (payload !== undefined) {
    if (Buffer.isBuffer(payload)) payloadLength = payload.length;
    else for (const part of payload) payloadLength += part.length;
  }
  const offset = seq.headerSize + TCP_HEADER_SIZE;
  const length = offset + payloadLength;
  const buf = alloc(length);
  writeMuxHeader(buf, Protocol.TCP, length, seq);
  const h = seq.headerSize;
  buf.writeUInt16BE(tcp.sport, h);
  buf.writeUInt16BE(tcp.dport, h + 2);
  buf.writeUInt32BE(tcp.seq >>> 0, h + 4);
  buf.writeUInt32BE(tcp.ack >>> 0, h + 8);
  buf[h + 12] = TCP_DATA_OFFSET;
  buf[h + 13] = tcp.flags;
  buf.writeUInt16BE((tcp.window >>> WINDOW_SHIFT) & 0xffff, h + 14);
  buf.writeUInt32BE(0, h + 16); // checksum and urgent pointer: always 0
  if (payload !== undefined && payloadLength > 0) {
    if (Buffer.isBuffer(payload)) {
      payload.copy(buf, offset);
    } else {
      let at = offset;
      for (const part of payload) at += part.copy(buf, at);
    }
    outCopyStats.copies++;
    outCopyStats.bytes += payloadLength;
  }
  return buf;
}

/** Read a mux header of `headerSize` bytes; the caller checked that many bytes are present. */
export function decodeMuxHeader(packet: Buffer, headerSize: MuxHeaderSize): MuxHeader {
  const v2 = headerSize === MUX_HEADER_V2;
  return {
    protocol: packet.readUInt32BE(0),
    length: packet.readUInt32BE(4),
    magic: v2 ? packet.readUInt32BE(8) : 0,
    txSeq: v2 ? packet.readUInt16BE(12) : 0,
    rxSeq: v2 ? packet.readUInt16BE(14) : 0,
  };
}

/** VERSION body at `offset`, or undefined when fewer than 12 bytes are there. */
export function decodeVersionBody(packet: Buffer, offset: number): VersionBody | undefined {
  if (packet.length < offset + VERSION_BODY_SIZE) return undefined;
  return { major: packet.readUInt32BE(offset), minor: packet.readUInt32BE(offset + 4) };
}

/**
 * CONTROL body at `offset`: one type byte, then text. We take the body right after the header of
 * the negotiated size (usbmuxd always skips 16 bytes, which is wrong for v1, §2.4). Trailing NULs
 * are cut. Undefined when the body is empty.
 */
export function decodeControlBody(packet: Buffer, offset: number): ControlBody | undefined {
  const type = packet[offset];
  if (type === undefined) return undefined;
  let end = packet.length;
  while (end > offset + 1 && packet[end - 1] === 0) end--;
  return { type, message: packet.toString('latin1', offset + 1, end) };
}

/** TCP header at `offset`, or undefined when fewer than 20 bytes are there. Window in bytes. */
export function decodeTcpHeader(packet: Buffer, offset: number): TcpHeader | undefined {
  if (packet.length < offset + TCP_HEADER_SIZE) return undefined;
  return {
    sport: packet.readUInt16BE(offset),
    dport: packet.readUInt16BE(offset + 2),
    seq: packet.readUInt32BE(offset + 4),
    ack: packet.readUInt32BE(offset + 8),
    flags: packet.readUInt8(offset + 13),
    window: packet.readUInt16BE(offset + 14) << WINDOW_SHIFT,
  };
}

/** Human-readable TCP flags for logs, e.g. "SYN|ACK". */
export function formatTcpFlags(flags: number): string {
  const names: string[] = [];
  if (flags & 0x01) names.push('FIN');
  if (flags & 0x02) names.push('SYN');
  if (flags & 0x04) names.push('RST');
  if (flags & 0x08) names.push('PSH');
  if (flags & 0x10) names.push('ACK');
  if (flags & 0x20) names.push('URG');
  return names.length > 0 ? names.join('|') : '-';
}
