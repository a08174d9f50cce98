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
 * The session is the device's link in the directory (src/devices): `context.ready()` once the
 * handshake is done, `context.gone()` once it is dead. A device that breaks the protocol is dealt
 * with in one place, `onViolation`, as its error's `wire` says (mux/errors.ts).
 *
 * Departures from usbmuxd, on purpose: a connect timeout and a VERSION timeout (usbmuxd waits
 * forever), round-robin fairness when the transport is busy, a Map for port-pair lookup, and the
 * tolerant packet decoder (packet-decoder.ts).
 */
import type { ConnectOptions, DeviceConnection, DeviceLink, LinkContext } from '../devices/api.js';
import { DeviceGoneError } from '../devices/errors.js';
import type { Logger } from '../log.js';
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
import { MuxProtocolError, NoFreePortError, UnsupportedVersionError, VersionTimeoutError } from './errors.js';
import { PacketDecoder } from './packet-decoder.js';
import type { PacketSink } from './packet-decoder.js';
import type { ChunkRecycler, Transport, TransportSink } from './transport.js';
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

export interface SessionOptions {
  readonly connectTimeoutMs: number;
  /** See ConnectionOptions.endTimeoutMs. */
  readonly endTimeoutMs: number;
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

export class MuxSession implements DeviceLink, TransportSink, PacketSink, ConnectionHost {
  readonly id: number;
  private state: SessionState = 'awaiting-version';
  private headerSize: MuxHeaderSize = MUX_HEADER_V1;
  /** u16: tx_seq of our next v2 packet. */
  private txSeq = 0;
  /** u16: rx_seq we put in our v2 headers (the device's last rx_seq field, usbmuxd style). */
  private rxSeq = SETUP_RX_SEQ;
  /** Reused for every outgoing packet's mux sequence fields (no allocation per packet). */
  private readonly outSeq: MuxSeq = { headerSize: MUX_HEADER_V1, txSeq: 0, rxSeq: 0 };
  /** Reused for anonymous RSTs (connections keep their own header). */
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
  /** Connections that asked for `flushTurn` this event-loop turn. */
  private readonly turnSet = new Set<Connection>();
  private turnScheduled = false;
  /** Connections waiting for the transport to drain, served round-robin. */
  private readonly drainQueue = new Set<Connection>();
  private readonly drainWaiters: (() => void)[] = [];
  private versionTimer: NodeJS.Timeout | undefined;
  private readonly decoder: PacketDecoder;
  private readonly log: Logger;
  private readonly maxPayload: number;
  /** The transport's IN buffer reuse, when it has one (see ChunkRecycler). */
  private readonly recycler: ChunkRecycler | undefined;
  /** Allocates outgoing packets: the transport's reused buffers, when it offers them. */
  private readonly allocPacket: ((length: number) => Buffer) | undefined;
  readonly stats: SessionStats = { unknownProtocol: 0, beforeActive: 0, malformedTcp: 0, anonymousRsts: 0 };

  constructor(
    private readonly transport: Transport,
    private readonly context: LinkContext,
    private readonly options: SessionOptions,
  ) {
    this.id = context.id;
    this.log = context.log;
    this.decoder = new PacketDecoder(this, this.log, this.options.shortTransferQuantum);
    this.maxPayload = transport.maxPacketSize - TCP_OVERHEAD;
    this.recycler = transport.recycler;
    this.allocPacket = transport.allocPacket === undefined ? undefined : (length) => transport.allocPacket?.(length) ?? Buffer.allocUnsafe(length);
  }

  get currentState(): SessionState {
    return this.state;
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

  // ── DeviceLink ───────────────────────────────────────────────────────────────────────────

  connect(port: number, options?: ConnectOptions): Promise<DeviceConnection> {
    if (this.state === 'dead') return Promise.reject(new DeviceGoneError(this.id));
    // Any u16 goes to the phone, port 0 included: usbmuxd sends that SYN too and the phone's RST
    // makes it ConnectionRefusedError (Result 3). Anything else is a caller bug, not wire input.
    if (!Number.isInteger(port) || port < 0 || port > MAX_PORT) {
      return Promise.reject(new RangeError(`port out of range: ${port}`));
    }
    const localPort = this.allocatePort();
    if (localPort === undefined) return Promise.reject(new NoFreePortError(this.id));
    return new Promise<DeviceConnection>((resolve, reject) => {
      const conn = new Connection(
        this,
        {
          deviceId: this.id,
          localPort,
          remotePort: port,
          window: this.options.window,
          maxPayload: this.maxPayload,
          ackDelayMs: this.options.ackDelayMs,
          connectTimeoutMs: options?.timeoutMs ?? this.options.connectTimeoutMs,
          endTimeoutMs: this.options.endTimeoutMs,
          log: this.log.child({ sport: localPort, dport: port }),
          recycler: this.recycler,
        },
        { resolve, reject },
      );
      this.connections.set(pairKey(localPort, port), conn);
      this.localPorts.add(localPort);
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
    // The decoder holds the start of a packet that goes on in the next transfer: its bytes are in
    // this chunk, so the chunk's buffer must not be reused (the packet is joined by a copy later).
    if (this.decoder.pendingBytes > 0) this.recycler?.keep(chunk);
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
      this.onViolation(new UnsupportedVersionError(body.major, body.minor), undefined);
      return;
    }
    this.activate();
  }

  private activate(): void {
    this.state = 'active';
    if (this.versionTimer !== undefined) clearTimeout(this.versionTimer);
    this.versionTimer = undefined;
    for (const conn of this.connections.values()) conn.sendSyn();
    this.context.ready();
  }

  private readonly onVersionTimeout = (): void => {
    this.versionTimer = undefined;
    if (this.state !== 'awaiting-version') return;
    this.onViolation(new VersionTimeoutError(this.options.versionTimeoutMs), undefined);
  };

  /**
   * The one place a device's protocol violation is logged and acted on, as its `wire` says: reset
   * the connection it happened on, or drop the device. Anything else thrown here is a bug of ours.
   */
  private onViolation(err: unknown, conn: Connection | undefined): void {
    if (!(err instanceof MuxProtocolError)) throw err;
    switch (err.wire) {
      case 'rst-connection':
        this.log.warn({ err, sport: conn?.localPort, dport: conn?.remotePort }, 'connection reset for a protocol violation');
        conn?.resetForViolation();
        return;
      case 'drop-device':
        this.log.warn({ err }, 'device dropped for a protocol violation');
        this.die(err);
        return;
    }
  }

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
      try {
        conn.onSegment(tcp, payload);
      } catch (err) {
        this.onViolation(err, conn);
      }
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

  /**
   * A connection whose send finds the transport full waits for its drain: it is queued for
   * `drainTurn`, and it sends nothing more until then. One segment per connection may thus go
   * beyond the transport's high-water mark (a Node stream's `write` accepts past it too).
   */
  send(conn: Connection, tcp: TcpHeader, payload: Buffer | readonly Buffer[] | undefined): boolean {
    this.sendTcp(tcp, payload);
    if (!this.busy) return true;
    this.drainQueue.add(conn);
    return false;
  }

  wantsTurn(conn: Connection): void {
    this.turnSet.add(conn);
    if (this.turnScheduled) return;
    this.turnScheduled = true;
    setImmediate(this.flushTurns);
  }

  released(conn: Connection): void {
    this.connections.delete(pairKey(conn.localPort, conn.remotePort));
    this.localPorts.delete(conn.localPort);
    this.turnSet.delete(conn);
    this.drainQueue.delete(conn);
  }

  /** Once per event-loop turn: owed ACKs and deferred short tails (Connection.flushTurn). */
  private readonly flushTurns = (): void => {
    this.turnScheduled = false;
    for (const conn of this.turnSet) conn.flushTurn();
    this.turnSet.clear();
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

  /** A method, not a field read: a send inside the caller's loop may change it under narrowing. */
  private isBusy(): boolean {
    return this.busy;
  }

  /** Encode (the one copy, see wire.ts) and send one TCP packet. */
  private sendTcp(tcp: TcpHeader, payload: Buffer | readonly Buffer[] | undefined): void {
    const packet = encodeTcpPacket(this.nextSeq(), tcp, payload, this.allocPacket);
    if (this.log.isLevelEnabled('trace')) this.traceTcp('[OUT]', tcp, packet.length - this.headerSize - TCP_HEADER_SIZE);
    this.transmit(packet);
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
    this.turnSet.clear();
    this.drainQueue.clear();
    for (const wake of this.drainWaiters.splice(0)) wake();
    this.context.gone(err);
    this.closeTransport().catch((closeErr: unknown) => {
      this.log.warn({ err: closeErr }, 'closing the transport failed');
    });
  }
}
