/**
 * One mux session per device: the version handshake, the mux header's sequence fields, packet
 * dispatch, source ports, the coalesced ACK flush and the fair drain of a busy transport
 * (docs/usbmux-protocol.md §2.2–2.10).
 *
 *                    VERSION reply, major 1 (v1 header from now on) or
 *                    major 2 (send SETUP, v2 header from now on)
 *   awaiting-version ─────────────────────────────────────────────▶ active
 *        │                                                            │
 *        │ unknown major (UnsupportedVersionError),                   │ transport closed,
 *        │ no reply in time (VersionTimeoutError),                    │ shutdown()
 *        │ transport closed                                           │
 *        ▼                                                            ▼
 *       dead ◀────────────────────────────────────────────────────────┘
 *
 * v2 sequence fields: our tx_seq counts every packet we send (SETUP 0, then 1, 2, … u16 wrapping).
 * For rx_seq we copy the rx_seq field of the device's most recent packet, as usbmuxd does (§2.3);
 * usbmuxd2 puts the device's tx_seq there instead. Real devices accept both.
 *
 * Departures from usbmuxd, on purpose: a connect timeout and a VERSION timeout (usbmuxd waits
 * forever), round-robin fairness when the transport is busy, a Map for port-pair lookup, and the
 * tolerant packet decoder (packet-decoder.ts).
 */
import type { Logger } from '../log.js';
import type { ConnectOptions, DeviceInfo, MuxConnection, MuxDevice } from './api.js';
import { Connection } from './connection.js';
import type { ConnectionHost } from './connection.js';
import {
  ControlType,
  MAX_PORT,
  MUX_HEADER_V1,
  MUX_HEADER_V2,
  Protocol,
  SETUP_RX_SEQ,
  SHUTDOWN_GRACE_MS,
  TCP_HEADER_SIZE,
  TCP_OVERHEAD,
  TcpFlag,
  VERSION_MAJOR,
  VERSION_MINOR,
} from './constants.js';
import { DeviceGoneError, NoFreePortError, UnsupportedVersionError, VersionTimeoutError } from './errors.js';
import { PacketDecoder } from './packet-decoder.js';
import type { PacketSink } from './packet-decoder.js';
import type { Transport, TransportSink } from './transport.js';
import type { MuxHeaderSize, MuxSeq, TcpHeader } from './wire.js';
import {
  decodeControlBody,
  decodeMuxHeader,
  decodeTcpHeader,
  decodeVersionBody,
  encodeSetupPacket,
  encodeTcpPacket,
  encodeVersionPacket,
  formatTcpFlags,
} from './wire.js';

export type SessionState = 'awaiting-version' | 'active' | 'dead';

/** The registry's side of a session. */
export interface SessionOwner {
  /** Handshake complete. */
  onActive(session: MuxSession): void;
  /** The session is over (called once); `err` says why when it was not an orderly close. */
  onDead(session: MuxSession, err: Error | undefined): void;
}

export interface SessionOptions {
  readonly id: number;
  readonly info: DeviceInfo;
  /** Logger bound to `{ dev }`. */
  readonly log: Logger;
  readonly connectTimeoutMs: number;
  readonly versionTimeoutMs: number;
  readonly ackDelayMs: number;
  /** Receive window we advertise per connection, in bytes. */
  readonly window: number;
  /** See PacketDecoder: a transfer not a multiple of this ends any packet in progress. */
  readonly shortTransferQuantum: number;
}

export interface SessionStats {
  /** Packets with a protocol number we do not handle. */
  unknownProtocol: number;
  /** TCP packets that arrived before the handshake finished. */
  beforeActive: number;
  /** TCP packets too short for a TCP header. */
  malformedTcp: number;
  /** Anonymous RSTs sent for unknown port pairs. */
  anonymousRsts: number;
}

/** Port pair → Map key: our port in the high half, the device's in the low half. */
function pairKey(localPort: number, remotePort: number): number {
  return localPort * 0x10000 + remotePort;
}

export class MuxSession implements MuxDevice, TransportSink, PacketSink, ConnectionHost {
  readonly id: number;
  readonly info: DeviceInfo;
  private state: SessionState = 'awaiting-version';
  /** Set once the handshake completed; stays true for the registry's `detached` decision. */
  private announced = false;
  private headerSize: MuxHeaderSize = MUX_HEADER_V1;
  /** u16: tx_seq of our next v2 packet. */
  private txSeq = 0;
  /** u16: rx_seq we put in our v2 headers (the device's last rx_seq field, usbmuxd style). */
  private rxSeq = SETUP_RX_SEQ;
  /** Reused for every outgoing packet's mux sequence fields (no allocation per packet). */
  private readonly outSeq: MuxSeq = { headerSize: MUX_HEADER_V1, txSeq: 0, rxSeq: 0 };
  /** Reused for every outgoing TCP header. */
  private readonly outTcp: TcpHeader = { sport: 0, dport: 0, seq: 0, ack: 0, flags: 0, window: 0 };
  /** The transport returned false from send and has not drained yet. */
  private busy = false;
  /** The transport reported onClose: nothing more can be sent. */
  private transportClosed = false;
  /** The one `transport.close()` promise, once asked for. */
  private closing: Promise<void> | undefined;
  private readonly connections = new Map<number, Connection>();
  private readonly localPorts = new Set<number>();
  /** Next source port to try: from 1, u16, wraps, never 0. */
  private nextPort = 1;
  /** Connections owing an ACK; flushed once per event-loop turn. */
  private readonly ackDirty = new Set<Connection>();
  private ackFlushScheduled = false;
  /** Connections waiting for the transport to drain, served round-robin. */
  private readonly drainQueue = new Set<Connection>();
  private readonly drainWaiters: (() => void)[] = [];
  private versionTimer: NodeJS.Timeout | undefined;
  private readonly decoder: PacketDecoder;
  private readonly log: Logger;
  private readonly maxPayload: number;
  readonly stats: SessionStats = { unknownProtocol: 0, beforeActive: 0, malformedTcp: 0, anonymousRsts: 0 };

  constructor(
    private readonly transport: Transport,
    private readonly owner: SessionOwner,
    private readonly options: SessionOptions,
  ) {
    this.id = options.id;
    this.info = options.info;
    this.log = options.log;
    this.decoder = new PacketDecoder(this, this.log, this.options.shortTransferQuantum);
    this.maxPayload = transport.maxPacketSize - TCP_OVERHEAD;
  }

  get visible(): boolean {
    return this.state === 'active';
  }

  get currentState(): SessionState {
    return this.state;
  }

  /** True once `attached` was announced for this device. */
  get wasAnnounced(): boolean {
    return this.announced;
  }

  /** The packet decoder's counters (anomalies, copies). */
  get decoderStats(): PacketDecoder['stats'] {
    return this.decoder.stats;
  }

  /** Open the transport and send VERSION (v1 header, major 2). */
  start(): void {
    this.versionTimer = setTimeout(this.onVersionTimeout, this.options.versionTimeoutMs);
    this.versionTimer.unref();
    this.transport.start(this);
    this.log.debug('sending VERSION');
    this.transmit(encodeVersionPacket(VERSION_MAJOR, VERSION_MINOR));
  }

  // ── MuxDevice ────────────────────────────────────────────────────────────────────────────

  connect(port: number, options?: ConnectOptions): Promise<MuxConnection> {
    if (this.state === 'dead') return Promise.reject(new DeviceGoneError(this.id));
    // Any u16 goes to the phone, port 0 included: usbmuxd sends that SYN too and the phone's RST
    // makes it ConnectionRefusedError (Result 3). Anything else is a caller bug, not wire input.
    if (!Number.isInteger(port) || port < 0 || port > MAX_PORT) {
      return Promise.reject(new RangeError(`port out of range: ${port}`));
    }
    const localPort = this.allocatePort();
    if (localPort === undefined) return Promise.reject(new NoFreePortError(this.id));
    return new Promise<MuxConnection>((resolve, reject) => {
      const conn = new Connection(
        this,
        {
          deviceId: this.id,
          localPort,
          remotePort: port,
          window: this.options.window,
          maxPayload: this.maxPayload,
          ackDelayMs: this.options.ackDelayMs,
          log: this.log.child({ sport: localPort, dport: port }),
        },
        { resolve, reject },
      );
      this.connections.set(pairKey(localPort, port), conn);
      this.localPorts.add(localPort);
      conn.armConnectTimer(options?.timeoutMs ?? this.options.connectTimeoutMs);
      // Before the handshake completes the SYN waits; `activate` sends it.
      if (this.state === 'active') conn.sendSyn();
    });
  }

  private allocatePort(): number | undefined {
    for (let tries = 0; tries < MAX_PORT; tries++) {
      const port = this.nextPort;
      this.nextPort = port === MAX_PORT ? 1 : port + 1;
      if (!this.localPorts.has(port)) return port;
    }
    return undefined;
  }

  // ── TransportSink ────────────────────────────────────────────────────────────────────────

  onData(chunk: Buffer): void {
    if (this.state === 'dead') return;
    this.decoder.push(chunk);
  }

  onDrain(): void {
    this.busy = false;
    this.runDrain();
    if (!this.isBusy()) {
      for (const wake of this.drainWaiters.splice(0)) wake();
    }
  }

  onClose(err?: Error): void {
    this.transportClosed = true;
    if (this.state === 'dead') return;
    if (err === undefined) this.log.info('transport closed');
    else this.log.info({ err }, 'transport closed with error');
    this.die(err);
  }

  // ── PacketSink ───────────────────────────────────────────────────────────────────────────

  onPacket(packet: Buffer): void {
    if (this.state === 'dead') return;
    const header = decodeMuxHeader(packet, this.headerSize);
    if (this.headerSize === MUX_HEADER_V2) this.rxSeq = header.rxSeq;
    switch (header.protocol) {
      case Protocol.VERSION:
        if (this.state === 'awaiting-version') this.onVersion(packet);
        else this.log.debug('VERSION after the handshake ignored');
        return;
      case Protocol.CONTROL:
        this.onControl(packet);
        return;
      case Protocol.TCP:
        if (this.state === 'active') this.onTcp(packet);
        else this.stats.beforeActive++;
        return;
      default:
        this.stats.unknownProtocol++;
        this.log.debug({ protocol: header.protocol, length: header.length }, 'unknown mux protocol; dropped');
    }
  }

  private onVersion(packet: Buffer): void {
    const body = decodeVersionBody(packet, MUX_HEADER_V1);
    if (body === undefined) {
      this.log.warn({ length: packet.length }, 'short VERSION packet ignored');
      return;
    }
    if (body.major === 2) {
      this.log.info({ major: body.major, minor: body.minor }, 'device speaks mux v2; sending SETUP');
      this.headerSize = MUX_HEADER_V2;
      this.outSeq.headerSize = MUX_HEADER_V2;
      this.decoder.setHeaderSize(MUX_HEADER_V2);
      // SETUP resets the counters and carries them: tx_seq 0, rx_seq 0xFFFF; the next packet has 1.
      this.txSeq = 0;
      this.rxSeq = SETUP_RX_SEQ;
      this.transmit(encodeSetupPacket(this.txSeq, this.rxSeq));
      this.txSeq = 1;
    } else if (body.major === 1) {
      this.log.info({ major: body.major, minor: body.minor }, 'device speaks mux v1');
    } else {
      const err = new UnsupportedVersionError(body.major, body.minor);
      this.log.error({ err }, 'unsupported mux version; dropping the device');
      this.die(err);
      return;
    }
    this.activate();
  }

  private activate(): void {
    this.state = 'active';
    this.announced = true;
    if (this.versionTimer !== undefined) clearTimeout(this.versionTimer);
    this.versionTimer = undefined;
    for (const conn of this.connections.values()) conn.sendSyn();
    this.owner.onActive(this);
  }

  private readonly onVersionTimeout = (): void => {
    this.versionTimer = undefined;
    if (this.state !== 'awaiting-version') return;
    const err = new VersionTimeoutError(this.options.versionTimeoutMs);
    this.log.warn({ err }, 'no VERSION reply; dropping the device');
    this.die(err);
  };

  private onControl(packet: Buffer): void {
    const body = decodeControlBody(packet, this.headerSize);
    if (body === undefined) return;
    const fields = { controlType: body.type };
    const message = `device: ${body.message}`;
    switch (body.type) {
      case ControlType.ERROR:
        this.log.error(fields, message);
        return;
      case ControlType.WARNING:
        this.log.warn(fields, message);
        return;
      case ControlType.INFO:
        this.log.info(fields, message);
        return;
      default:
        this.log.debug(fields, message);
    }
  }

  private onTcp(packet: Buffer): void {
    const tcp = decodeTcpHeader(packet, this.headerSize);
    if (tcp === undefined) {
      this.stats.malformedTcp++;
      this.log.debug({ length: packet.length }, 'TCP packet too short; dropped');
      return;
    }
    const payload = packet.subarray(this.headerSize + TCP_HEADER_SIZE);
    if (this.log.isLevelEnabled('trace')) this.traceTcp('[IN]', tcp, payload.length);
    // Incoming: our port is the packet's destination, the device's port its source.
    const conn = this.connections.get(pairKey(tcp.dport, tcp.sport));
    if (conn !== undefined) {
      conn.onSegment(tcp, payload);
      return;
    }
    if ((tcp.flags & TcpFlag.RST) !== 0) return;
    this.sendAnonymousRst(tcp);
  }

  /** RST for an unknown port pair: ports swapped, seq 0, ack = their seq, window 0 (§2.9). */
  private sendAnonymousRst(incoming: TcpHeader): void {
    this.stats.anonymousRsts++;
    const tcp = this.outTcp;
    tcp.sport = incoming.dport;
    tcp.dport = incoming.sport;
    tcp.seq = 0;
    tcp.ack = incoming.seq;
    tcp.flags = TcpFlag.RST;
    tcp.window = 0;
    this.sendTcp(tcp, undefined);
  }

  // ── ConnectionHost ───────────────────────────────────────────────────────────────────────

  sendSegment(conn: Connection, flags: number, payload: Buffer | readonly Buffer[] | undefined): void {
    const tcp = this.outTcp;
    tcp.sport = conn.localPort;
    tcp.dport = conn.remotePort;
    tcp.seq = conn.txSeq;
    tcp.ack = conn.txAck;
    tcp.flags = flags;
    tcp.window = conn.window;
    const length = this.sendTcp(tcp, payload);
    conn.noteSent(length);
  }

  isBusy(): boolean {
    return this.busy;
  }

  ackOwed(conn: Connection): void {
    this.ackDirty.add(conn);
    if (this.ackFlushScheduled) return;
    this.ackFlushScheduled = true;
    setImmediate(this.flushAcks);
  }

  wantsDrain(conn: Connection): void {
    this.drainQueue.add(conn);
  }

  released(conn: Connection): void {
    this.connections.delete(pairKey(conn.localPort, conn.remotePort));
    this.localPorts.delete(conn.localPort);
    this.ackDirty.delete(conn);
    this.drainQueue.delete(conn);
  }

  /** Once per event-loop turn: every connection owing an ACK sends one (unless data carried it). */
  private readonly flushAcks = (): void => {
    this.ackFlushScheduled = false;
    for (const conn of this.ackDirty) conn.flushAck();
    this.ackDirty.clear();
  };

  /** Round-robin: one segment per waiting connection per pass, until busy again or all served. */
  private runDrain(): void {
    while (!this.isBusy() && this.drainQueue.size > 0) {
      for (const conn of this.drainQueue) {
        if (this.isBusy()) break;
        if (!conn.drainTurn()) this.drainQueue.delete(conn);
      }
    }
  }

  // ── sending ──────────────────────────────────────────────────────────────────────────────

  /** Encode (the one copy, see wire.ts) and send one TCP packet; returns the payload length. */
  private sendTcp(tcp: TcpHeader, payload: Buffer | readonly Buffer[] | undefined): number {
    const packet = encodeTcpPacket(this.nextSeq(), tcp, payload);
    const payloadLength = packet.length - this.headerSize - TCP_HEADER_SIZE;
    if (this.log.isLevelEnabled('trace')) this.traceTcp('[OUT]', tcp, payloadLength);
    this.transmit(packet);
    return payloadLength;
  }

  private nextSeq(): MuxSeq {
    const seq = this.outSeq;
    seq.txSeq = this.txSeq;
    seq.rxSeq = this.rxSeq;
    if (this.headerSize === MUX_HEADER_V2) this.txSeq = (this.txSeq + 1) & 0xffff;
    return seq;
  }

  private transmit(packet: Buffer): void {
    if (this.transportClosed) return;
    if (!this.transport.send(packet)) this.busy = true;
  }

  private traceTcp(direction: string, tcp: TcpHeader, length: number): void {
    this.log.trace(
      `${direction} dev=${this.id} sport=${tcp.sport} dport=${tcp.dport} seq=${tcp.seq} ack=${tcp.ack} flags=${formatTcpFlags(tcp.flags)} window=${tcp.window} len=${length}`,
    );
  }

  // ── teardown ─────────────────────────────────────────────────────────────────────────────

  /**
   * Daemon shutdown: RST every connection, let a busy transport drain those RSTs (at most
   * SHUTDOWN_GRACE_MS, like usbmuxd's 100 ms), then close the transport.
   */
  async shutdown(): Promise<void> {
    if (this.state !== 'dead') {
      for (const conn of [...this.connections.values()]) conn.reset();
      if (this.busy && !this.transportClosed) await this.waitForDrain(SHUTDOWN_GRACE_MS);
      this.die(undefined);
    }
    await this.closeTransport();
  }

  /** Close the transport once; every caller gets the same promise. */
  private closeTransport(): Promise<void> {
    this.closing ??= this.transport.close();
    return this.closing;
  }

  private waitForDrain(limitMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, limitMs);
      this.drainWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** End the session once: connections end as device-gone, the owner hears, the transport closes. */
  private die(err: Error | undefined): void {
    if (this.state === 'dead') return;
    this.state = 'dead';
    if (this.versionTimer !== undefined) clearTimeout(this.versionTimer);
    this.versionTimer = undefined;
    this.decoder.reset();
    for (const conn of [...this.connections.values()]) conn.deviceGone(err);
    this.ackDirty.clear();
    this.drainQueue.clear();
    for (const wake of this.drainWaiters.splice(0)) wake();
    this.owner.onDead(this, err);
    this.closeTransport().catch((closeErr: unknown) => {
      this.log.warn({ err: closeErr }, 'closing the transport failed');
    });
  }
}
