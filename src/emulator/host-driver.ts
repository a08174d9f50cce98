/**
 * A scripted, synchronous stand-in for the host, for tests of the emulated phone (and for anyone
 * who wants to poke it by hand). It builds host packets with the EMULATOR's codec and records
 * what the phone sends. It is not a host engine: no state machine, no flow control of its own.
 */
import {
  HEADER_V1,
  HEADER_V2,
  Protocol,
  TCP_HEADER,
  TcpFlag,
  decodeMuxHeader,
  decodeTcpHeader,
  decodeVersionBody,
  encodeMux,
  encodeSetup,
  encodeTcp,
  encodeVersion,
} from './codec.js';
import type { MuxHeader, SeqFields, TcpHeader, VersionBody } from './codec.js';
import type { EmulatedIPhone, HostLink } from './device.js';

export interface SeenPacket {
  readonly raw: Buffer;
  readonly mux: MuxHeader;
  /** For protocol 6. */
  readonly tcp?: TcpHeader;
  /** TCP payload, CONTROL body, VERSION body. */
  readonly body: Buffer;
}

export class HostDriver implements HostLink {
  /** Every transfer the phone sent, as sent. */
  readonly transfers: Buffer[] = [];
  /** Header size the driver uses to read the phone's packets (and to write its own). */
  headerSize: 8 | 16 = HEADER_V1;
  /** Next tx_seq the driver puts in a v2 header. */
  txSeq = 0;

  constructor(readonly device: EmulatedIPhone) {
    device.connect(this);
  }

  sendToHost(transfer: Buffer): void {
    this.transfers.push(Buffer.from(transfer));
  }

  /** VERSION (+ SETUP for v2) the way usbmuxd does; returns the phone's reply body. */
  handshake(major = 2): VersionBody | undefined {
    this.device.receive(encodeVersion({ major, minor: 0, padding: 0 }));
    const reply = this.transfers.shift();
    if (reply === undefined) return undefined;
    const body = decodeVersionBody(reply, HEADER_V1);
    if (body?.major === 2) {
      this.headerSize = HEADER_V2;
      this.txSeq = 1;
      this.device.receive(encodeSetup({ txSeq: 0, rxSeq: 0xffff }));
    }
    return body;
  }

  /** Sequence fields for the next host packet (v2), or undefined (v1). */
  seq(): SeqFields | undefined {
    if (this.headerSize !== HEADER_V2) return undefined;
    const seq = { txSeq: this.txSeq, rxSeq: 0 };
    this.txSeq = (this.txSeq + 1) & 0xffff;
    return seq;
  }

  /** Send one TCP packet as one transfer. */
  tcp(header: Omit<TcpHeader, 'window'> & { readonly window?: number }, payload: Buffer = Buffer.alloc(0)): void {
    this.device.receive(encodeTcp({ window: 131072, ...header }, payload, this.seq()));
  }

  /** Send any mux packet with the current header. */
  packet(protocol: number, body: Buffer): void {
    this.device.receive(encodeMux(protocol, body, this.seq()));
  }

  /** Decode and remove everything the phone sent so far (one packet per transfer). */
  take(): SeenPacket[] {
    const out = this.transfers.splice(0).map((raw) => this.decode(raw));
    return out;
  }

  /** Decode one transfer with the driver's current header size. */
  decode(raw: Buffer): SeenPacket {
    const protocol = raw.readUInt32BE(0);
    const size = protocol === Protocol.Version ? HEADER_V1 : this.headerSize;
    const mux = decodeMuxHeader(raw, size);
    if (mux === undefined) throw new Error(`short packet ${raw.toString('hex')}`);
    if (protocol !== Protocol.Tcp) return { raw, mux, body: raw.subarray(size) };
    const tcp = decodeTcpHeader(raw, size);
    if (tcp === undefined) throw new Error(`short TCP packet ${raw.toString('hex')}`);
    return { raw, mux, tcp, body: raw.subarray(size + TCP_HEADER) };
  }

  /** SYN from `hostPort` to `port`; returns the phone's answer (SYN|ACK or RST). */
  open(port: number, hostPort: number, window = 131072): SeenPacket | undefined {
    this.tcp({ sport: hostPort, dport: port, seq: 0, ack: 0, flags: TcpFlag.SYN, window });
    const answer = this.take()[0];
    if (answer?.tcp?.flags === (TcpFlag.SYN | TcpFlag.ACK)) {
      this.tcp({ sport: hostPort, dport: port, seq: 1, ack: (answer.tcp.seq + 1) >>> 0, flags: TcpFlag.ACK, window });
    }
    return answer;
  }
}
