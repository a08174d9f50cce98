/**
 * A slow, obviously-correct reference codec for the mux wire format, written against DataView and
 * plain Uint8Arrays straight from docs/usbmux-protocol.md §2.1–2.6. It is the oracle for the
 * property tests of src/mux/wire.ts and the baseline of the codec benchmark. Never used by the product.
 */

export interface RefMuxHeader {
  protocol: number;
  length: number;
  /** v2 only */
  txSeq?: number;
  rxSeq?: number;
}

export interface RefTcp {
  sport: number;
  dport: number;
  seq: number;
  ack: number;
  flags: number;
  /** bytes; the wire carries bytes / 256 */
  window: number;
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A whole packet: header (8 bytes for v1, 16 for v2) then `body`. */
export function refEncodePacket(version: 1 | 2, protocol: number, body: Uint8Array, txSeq = 0, rxSeq = 0): Uint8Array {
  const headerSize = version === 2 ? 16 : 8;
  const out = new Uint8Array(headerSize + body.length);
  const dv = view(out);
  dv.setUint32(0, protocol, false);
  dv.setUint32(4, out.length, false);
  if (version === 2) {
    dv.setUint32(8, 0xfeedface, false);
    dv.setUint16(12, txSeq, false);
    dv.setUint16(14, rxSeq, false);
  }
  out.set(body, headerSize);
  return out;
}

export function refDecodeHeader(version: 1 | 2, bytes: Uint8Array): RefMuxHeader {
  const dv = view(bytes);
  const header: RefMuxHeader = { protocol: dv.getUint32(0, false), length: dv.getUint32(4, false) };
  if (version === 2) {
    if (dv.getUint32(8, false) !== 0xfeedface) throw new Error('bad magic');
    header.txSeq = dv.getUint16(12, false);
    header.rxSeq = dv.getUint16(14, false);
  }
  return header;
}

export function refVersionBody(major: number, minor: number): Uint8Array {
  const body = new Uint8Array(12);
  const dv = view(body);
  dv.setUint32(0, major, false);
  dv.setUint32(4, minor, false);
  return body;
}

export function refTcpBody(tcp: RefTcp, payload: Uint8Array): Uint8Array {
  const body = new Uint8Array(20 + payload.length);
  const dv = view(body);
  dv.setUint16(0, tcp.sport, false);
  dv.setUint16(2, tcp.dport, false);
  dv.setUint32(4, tcp.seq, false);
  dv.setUint32(8, tcp.ack, false);
  dv.setUint8(12, 0x50);
  dv.setUint8(13, tcp.flags);
  dv.setUint16(14, Math.floor(tcp.window / 256), false);
  dv.setUint16(16, 0, false);
  dv.setUint16(18, 0, false);
  body.set(payload, 20);
  return body;
}

export function refDecodeTcp(body: Uint8Array): { tcp: RefTcp; payload: Uint8Array } {
  const dv = view(body);
  return {
    tcp: {
      sport: dv.getUint16(0, false),
      dport: dv.getUint16(2, false),
      seq: dv.getUint32(4, false),
      ack: dv.getUint32(8, false),
      flags: dv.getUint8(13),
      window: dv.getUint16(14, false) * 256,
    },
    payload: body.subarray(20),
  };
}

/** Hex of bytes, lowercase, no separators (fixtures are compared after removing spaces). */
export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** Bytes from a fixture string that may contain spaces. */
export function fromHex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ''), 'hex');
}
