/**
 * EmulatedIPhone: the DEVICE side of the usbmux protocol, fed one host OUT transfer at a time.
 *
 *                    connect(link)
 *   [ DETACHED ] -------------------> [ AWAIT_VERSION ] --VERSION, reply major 1--> [ ACTIVE v1 ]
 *        ^                                   |
 *        |                                   +--VERSION, reply major 2--> [ AWAIT_SETUP ] --SETUP--> [ ACTIVE v2 ]
 *        |                                   +--VERSION, noVersionReply / reply major ∉ {1,2}: stay
 *        |  disconnect() (every connection told 'link-gone')
 *        +---------------------------------- any state
 *
 *   A VERSION in any later state (a host daemon restarted while the phone stayed plugged) drops
 *   all connections and starts the handshake again.
 *
 * The phone answers VERSION with the major it speaks, whatever the host asked for (the host then
 * accepts 1 or 2). The VERSION reply always uses the 8-byte header. Once v2 is agreed (SETUP seen), every packet
 * the phone sends has the 16-byte header with its own tx_seq (from 0, +1 per packet, wrapping at
 * 16 bits) and, as rx_seq, the tx_seq of the host's latest packet.
 *
 * Device-side TCP lives in tcp-connection.ts; this file routes packets to it. Host input that
 * makes no sense is counted in `stats`, never thrown.
 *
 * Initial sequence number: 0 by default. usbmuxd ignores the phone's seq and acks from its own
 * counter starting at 1 (as if the ISN were 0), so any other ISN would make a usbmuxd-style host's
 * acks meaningless to the phone. `initialSeq` lets tests pick another ISN for a stricter host.
 */
import {
  HEADER_V1,
  HEADER_V2,
  MAX_MUX_PACKET,
  MUX_MAGIC,
  Protocol,
  TCP_HEADER,
  TcpFlag,
  decodeMuxHeader,
  decodeTcpHeader,
  decodeVersionBody,
  encodeControl,
  encodeTcp,
  encodeVersion,
} from './codec.js';
import type { HeaderSize, SeqFields, TcpHeader } from './codec.js';
import { HostileActions } from './hostile.js';
import { DEFAULT_UDID, defaultFaults } from './options.js';
import type { EmulatorOptions, FaultKnobs } from './options.js';
import { Pairing } from './pairing.js';
import { Reassembler } from './reassembler.js';
import { coreServiceCatalog } from './lockdown.js';
import type { ServiceCatalog } from './service-catalog.js';
import type { Service } from './service.js';
import { defaultServices } from './services.js';
import { emptyStats } from './stats.js';
import type { EmulatorStats } from './stats.js';
import { DeviceTcpConnection } from './tcp-connection.js';
import type { ConnectionOwner } from './tcp-connection.js';

/** Where the phone's IN transfers go: one call = one device→host transfer. */
export interface HostLink {
  sendToHost(transfer: Buffer): void;
}

export type DeviceState = 'DETACHED' | 'AWAIT_VERSION' | 'AWAIT_SETUP' | 'ACTIVE';

function connectionKey(devicePort: number, hostPort: number): number {
  return devicePort * 0x10000 + hostPort;
}

export class EmulatedIPhone implements ConnectionOwner {
  readonly udid: string;
  readonly faults: FaultKnobs;
  readonly stats: EmulatorStats = emptyStats();
  /** Hostile packets for soak and robustness tests. */
  readonly hostile: HostileActions;
  /** Trust dialog, paired hosts, device key; runtime controls for tests (tapTrust() ...). */
  readonly pairing: Pairing;
  /** What lockdown's StartService can start; extra services register here (see extra/index.ts). */
  readonly catalog: ServiceCatalog;

  private readonly services: Map<number, Service>;
  private readonly connections = new Map<number, DeviceTcpConnection>();
  private readonly reassembler: Reassembler;
  private readonly protocolVersion: 1 | 2;
  private readonly versionMinor: number;
  private readonly initialSeq: (port: number) => number;
  private link: HostLink | undefined;
  private stateValue: DeviceState = 'DETACHED';
  private headerSize: HeaderSize = HEADER_V1;
  private txSeq = 0;
  /** tx_seq of the host's latest v2 packet (0xFFFF before any, like the host's own reset value). */
  private hostTxSeq = 0xffff;

  constructor(options: EmulatorOptions = {}) {
    this.udid = options.udid ?? DEFAULT_UDID;
    this.protocolVersion = options.protocolVersion ?? 2;
    this.versionMinor = options.versionMinor ?? 0;
    const isn = options.initialSeq ?? 0;
    this.initialSeq = typeof isn === 'number' ? () => isn : isn;
    this.faults = defaultFaults(options.faults);
    this.pairing = new Pairing(options.trust, options.identity);
    this.catalog = coreServiceCatalog();
    this.services = new Map(options.services ?? defaultServices(this.udid, this.stats, this.pairing, this.catalog));
    this.hostile = new HostileActions(this);
    this.reassembler = new Reassembler({
      onPacket: (packet) => {
        this.onPacket(packet);
      },
      onGarbage: () => {
        this.stats.garbageIn++;
      },
    });
  }

  get state(): DeviceState {
    return this.stateValue;
  }

  /** Mux header version in use: 2 from the v2 VERSION reply on, else 1. */
  get version(): 1 | 2 {
    return this.headerSize === HEADER_V2 ? 2 : 1;
  }

  /** Open connections right now. */
  get openConnections(): readonly DeviceTcpConnection[] {
    return [...this.connections.values()];
  }

  /** Serve `service` on `port` from now on (replaces any previous one). */
  listen(port: number, service: Service): void {
    this.services.set(port, service);
  }

  /** Stop listening on `port`; open connections stay. */
  unlisten(port: number): void {
    this.services.delete(port);
  }

  connect(link: HostLink): void {
    if (this.link !== undefined) this.disconnect();
    this.link = link;
    this.stateValue = 'AWAIT_VERSION';
    this.headerSize = HEADER_V1;
  }

  /** One host OUT transfer (it may hold part of a packet, or several). */
  receive(transfer: Buffer): void {
    if (this.link === undefined) return;
    this.stats.transfersIn++;
    this.reassembler.push(transfer);
  }

  /** The link went away: connections end silently, state back to DETACHED. */
  disconnect(): void {
    this.dropConnections();
    this.reassembler.reset();
    this.link = undefined;
    this.stateValue = 'DETACHED';
    this.headerSize = HEADER_V1;
  }

  /** Send a CONTROL message (3 error, 5 warning, 7 info) with the current header. */
  sendControl(type: number, text: string): void {
    this.stats.controlOut++;
    this.sendRaw(encodeControl(type, text, this.nextSeq()));
  }

  /** Send `count` transfers of deterministic junk bytes (1..64 bytes each). */
  injectGarbage(count: number): void {
    this.hostile.garbage(count);
  }

  // ---- ConnectionOwner -------------------------------------------------------------------

  maxPayload(): number {
    // `faults.maxPacket` is mutable at runtime: clamp rather than trust it.
    const maxPacket = Math.min(Math.max(this.faults.maxPacket, this.headerSize + TCP_HEADER + 1), MAX_MUX_PACKET);
    return maxPacket - this.headerSize - TCP_HEADER;
  }

  sendTcp(header: TcpHeader, payload: Buffer): void {
    this.sendRaw(encodeTcp(header, payload, this.nextSeq()));
  }

  forget(conn: DeviceTcpConnection): void {
    this.connections.delete(connectionKey(conn.port, conn.hostPort));
  }

  // ---- for HostileActions ----------------------------------------------------------------

  /** Send bytes as one transfer, as they are. */
  sendRaw(transfer: Buffer): void {
    if (this.link === undefined) return;
    this.stats.packetsOut++;
    this.link.sendToHost(transfer);
  }

  /** Sequence fields for the next packet (undefined while on the 8-byte header). */
  nextSeq(): SeqFields | undefined {
    if (this.headerSize !== HEADER_V2) return undefined;
    const seq = { txSeq: this.txSeq, rxSeq: this.hostTxSeq };
    this.txSeq = (this.txSeq + 1) & 0xffff;
    return seq;
  }

  // ---- input -----------------------------------------------------------------------------

  private onPacket(packet: Buffer): void {
    this.stats.packetsIn++;
    const protocol = packet.readUInt32BE(0);
    if (protocol === Protocol.Version && packet.length === HEADER_V1 + 12) {
      this.onVersion(packet);
      return;
    }
    const header = decodeMuxHeader(packet, this.headerSize);
    if (header === undefined || this.stateValue === 'AWAIT_VERSION') {
      this.stats.garbageIn++;
      return;
    }
    if (header.headerSize === HEADER_V2) {
      if (header.magic !== MUX_MAGIC) {
        this.stats.garbageIn++;
        return;
      }
      if (this.stateValue === 'ACTIVE' && header.txSeq !== ((this.hostTxSeq + 1) & 0xffff)) this.stats.hostSeqGaps++;
      this.hostTxSeq = header.txSeq;
    }
    switch (protocol) {
      case Protocol.Setup:
        this.onSetup(packet, header.headerSize);
        return;
      case Protocol.Tcp:
        this.onTcp(packet, header.headerSize);
        return;
      default:
        this.stats.garbageIn++; // VERSION of the wrong size, CONTROL from the host, unknown protocols
    }
  }

  private onVersion(packet: Buffer): void {
    this.stats.versionRequests++;
    const request = decodeVersionBody(packet, HEADER_V1);
    if (request === undefined || this.faults.noVersionReply) return;
    if (this.stateValue !== 'AWAIT_VERSION') this.dropConnections();
    const major = this.faults.versionMajor ?? this.protocolVersion;
    // From a v2 reply on, the host uses the 16-byte header (starting with SETUP).
    this.headerSize = major === 2 ? HEADER_V2 : HEADER_V1;
    this.stateValue = major === 1 ? 'ACTIVE' : major === 2 ? 'AWAIT_SETUP' : 'AWAIT_VERSION';
    this.stats.versionReplies++;
    this.sendRaw(encodeVersion({ major, minor: this.versionMinor, padding: 0 }));
  }

  private onSetup(packet: Buffer, headerSize: HeaderSize): void {
    // A SETUP is only meaningful right after a v2 reply; it carries a 16-byte header.
    if (this.stateValue !== 'AWAIT_SETUP' || packet.length !== HEADER_V2 + 1 || headerSize !== HEADER_V2) {
      this.stats.garbageIn++;
      return;
    }
    this.stats.setups++;
    this.txSeq = 0;
    this.stateValue = 'ACTIVE';
  }

  private onTcp(packet: Buffer, headerSize: HeaderSize): void {
    if (this.stateValue !== 'ACTIVE') {
      this.stats.earlyTcp++;
      return;
    }
    const tcp = decodeTcpHeader(packet, headerSize);
    if (tcp === undefined) {
      this.stats.garbageIn++;
      return;
    }
    const payload = packet.subarray(headerSize + TCP_HEADER);
    const conn = this.connections.get(connectionKey(tcp.dport, tcp.sport));
    if (conn !== undefined) {
      conn.onSegment(tcp, payload);
      return;
    }
    if (tcp.flags === TcpFlag.SYN) {
      this.onSyn(tcp);
      return;
    }
    this.stats.unknownConnection++;
    if ((tcp.flags & TcpFlag.RST) !== 0) {
      this.stats.rstIn++;
      return;
    }
    this.sendReset(tcp);
  }

  private onSyn(syn: TcpHeader): void {
    const service = this.services.get(syn.dport);
    if (service === undefined) {
      this.stats.refused++;
      this.sendReset(syn);
      return;
    }
    const conn = new DeviceTcpConnection(this, service, syn.dport, syn.sport, syn, this.initialSeq(syn.dport));
    // In the table before start() runs the service's onOpen, which may already close it.
    this.connections.set(connectionKey(syn.dport, syn.sport), conn);
    conn.start();
  }

  /** RST answering a packet that has no connection: ports swapped, ack = its seq (+1 for SYN). */
  private sendReset(to: TcpHeader): void {
    const ack = (to.seq + ((to.flags & TcpFlag.SYN) !== 0 ? 1 : 0)) >>> 0;
    this.stats.rstOut++;
    this.sendTcp({ sport: to.dport, dport: to.sport, seq: 0, ack, flags: TcpFlag.RST, window: 0 }, Buffer.alloc(0));
  }

  private dropConnections(): void {
    const open = [...this.connections.values()];
    this.connections.clear();
    for (const conn of open) conn.linkGone();
  }
}
