/**
 * Packets a well-behaved phone never sends, on demand, for robustness and soak tests of the host.
 * Each method sends immediately (one transfer per packet) and bumps `stats.hostileOut`. None of
 * them changes the phone's own connection state.
 */
import { MUX_MAGIC, Protocol, TCP_HEADER, TcpFlag, encodeMux, encodeTcp, encodeTcpHeader } from './codec.js';
import type { SeqFields, TcpHeader } from './codec.js';
import type { FaultKnobs } from './options.js';
import type { EmulatorStats } from './stats.js';
import type { DeviceTcpConnection } from './tcp-connection.js';

/** What the hostile helpers need of the phone. */
export interface HostileTarget {
  readonly stats: EmulatorStats;
  readonly faults: FaultKnobs;
  readonly version: 1 | 2;
  readonly openConnections: readonly DeviceTcpConnection[];
  sendRaw(transfer: Buffer): void;
  nextSeq(): SeqFields | undefined;
  maxPayload(): number;
}

const EMPTY = Buffer.alloc(0);

export class HostileActions {
  /** State of the deterministic junk generator (a 32-bit LCG), so runs are reproducible. */
  private junkState = 0x12345678;

  constructor(private readonly target: HostileTarget) {}

  /** `count` transfers of 1..64 junk bytes each (reproducible from run to run). */
  garbage(count: number): void {
    for (let n = 0; n < count; n++) {
      const length = 1 + (this.nextJunk() % 64);
      const junk = Buffer.allocUnsafe(length);
      for (let k = 0; k < length; k++) junk[k] = this.nextJunk() & 0xff;
      this.send(junk);
    }
  }

  /**
   * Data on an open connection that overruns the host's window by `extra` bytes (capped by the
   * phone's packet size). Returns the payload size sent, or 0 when no connection is open.
   */
  dataBeyondWindow(extra = 1024, conn: DeviceTcpConnection | undefined = this.target.openConnections[0]): number {
    if (conn === undefined) return 0;
    const view = conn.hostView;
    const size = Math.max(1, Math.min(this.target.maxPayload(), view.window - conn.inFlight + extra));
    const header: TcpHeader = { sport: conn.port, dport: conn.hostPort, seq: view.sndNext, ack: view.rcvNext, flags: TcpFlag.ACK, window: this.target.faults.window };
    this.send(encodeTcp(header, Buffer.alloc(size, 0xee), this.target.nextSeq()));
    return size;
  }

  /** SYN|ACK for a connection the host never opened. */
  synAckForUnopened(hostPort: number, devicePort: number): void {
    this.tcp({ sport: devicePort, dport: hostPort, seq: 0, ack: 1, flags: TcpFlag.SYN | TcpFlag.ACK, window: this.target.faults.window }, EMPTY);
  }

  /** `count` RSTs to host ports `firstHostPort`, `firstHostPort + 1`, ... from `devicePort`. */
  rstStorm(count: number, devicePort = 62078, firstHostPort = 1): void {
    for (let n = 0; n < count; n++) {
      this.tcp({ sport: devicePort, dport: (firstHostPort + n) & 0xffff, seq: 0, ack: 0, flags: TcpFlag.RST, window: 0 }, EMPTY);
    }
  }

  /** ACK with data for a port pair that has no connection. */
  unknownPort(hostPort = 4242, devicePort = 4242, payload: Buffer = Buffer.from('who are you?')): void {
    this.tcp({ sport: devicePort, dport: hostPort, seq: 1, ack: 1, flags: TcpFlag.ACK, window: this.target.faults.window }, payload);
  }

  /** A v2 TCP packet whose magic is wrong (sent with the 16-byte header even on v1). */
  wrongMagic(hostPort = 1, devicePort = 62078, magic = 0xdeadbeef): void {
    const seq = this.target.nextSeq() ?? { txSeq: 0, rxSeq: 0 };
    this.send(encodeTcp({ sport: devicePort, dport: hostPort, seq: 1, ack: 1, flags: TcpFlag.ACK, window: 0 }, Buffer.from('bad magic'), { ...seq, magic }));
  }

  /** A TCP packet too short to hold its TCP header (its length field is consistent). */
  truncated(): void {
    const header = encodeTcpHeader({ sport: 62078, dport: 1, seq: 1, ack: 1, flags: TcpFlag.ACK, window: 0 });
    this.send(encodeMux(Protocol.Tcp, header.subarray(0, TCP_HEADER / 2), this.target.nextSeq()));
  }

  /** A transfer whose length field claims `claimed` bytes more than it holds. */
  lengthMismatch(claimed = 100): void {
    const packet = encodeMux(Protocol.Tcp, Buffer.alloc(TCP_HEADER), this.target.nextSeq());
    packet.writeUInt32BE(packet.length + claimed, 4);
    this.send(packet);
  }

  /** A packet with a protocol number the host does not know. */
  unknownProtocol(protocol = 0x42, body: Buffer = Buffer.from('????')): void {
    this.send(encodeMux(protocol, body, this.target.nextSeq()));
  }

  /** A v2 header carrying the right magic but sent while v1 is in use (header-size confusion). */
  v2HeaderOnV1(): void {
    if (this.target.version !== 1) return;
    this.send(encodeMux(Protocol.Tcp, encodeTcpHeader({ sport: 62078, dport: 1, seq: 0, ack: 0, flags: TcpFlag.ACK, window: 0 }), { txSeq: 0, rxSeq: 0, magic: MUX_MAGIC }));
  }

  private tcp(header: TcpHeader, payload: Buffer): void {
    this.send(encodeTcp(header, payload, this.target.nextSeq()));
  }

  private send(transfer: Buffer): void {
    this.target.stats.hostileOut++;
    this.target.sendRaw(transfer);
  }

  private nextJunk(): number {
    this.junkState = (Math.imul(this.junkState, 1664525) + 1013904223) >>> 0;
    return this.junkState >>> 8;
  }
}
