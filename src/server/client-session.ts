/**
 * One client of the daemon socket: a state machine from accept to close.
 *
 *                 ┌───────────────────────── reply written ──────────────────────────┐
 *                 ▼                                                                  │
 *   accept ──▶ command ──(ReadBUID / *PairRecord: store call in flight)──▶ busy ─────┘
 *               │  │ ▲
 *               │  │ └──── refused / gone (Result 2 or 3) ────────┐
 *               │  └──── Connect (device.connect pending) ──▶ connecting ──Result 0──▶ tunnel
 *               └──── Listen (Result 0, Attached × visible) ──▶ listening
 *
 *   any state ──(socket closed, bad frame, input while listening, server close)──▶ closed
 *   command ──(deadline: no request in time, a frame left half-sent, replies left unread)──▶ closed
 *
 * The client's EOF (it shut down its writing side; the server keeps sockets half-open) is not a
 * state: frames already received are still answered, and our side ends once nothing is owed: in
 * command or listening state at once, in `busy` once the reply is written. A client that ends
 * while its Connect is pending is gone, as in usbmuxd: our side ends, and the connection is reset
 * when it arrives. In a tunnel the EOF is the tunnel's (it finishes the device connection).
 *
 * Frames are handled one at a time and in order: while `busy` or `connecting`, input is only
 * buffered in the decoder (the socket is paused above a limit). In `connecting`, bytes the client
 * sends after Connect are not commands: at Result 0 they go to the device (see `handOff`).
 * usbmuxd's CONNECTING2 state is not needed: Node writes a socket's data in order, so the Result
 * always precedes tunnel bytes.
 *
 * Deadlines (command state only, while the client owes us something; never while we work, never
 * for listeners and tunnels): the first request within `requestTimeoutMs` of accept, each frame
 * complete within `requestTimeoutMs` of its first byte, replies taken within `requestTimeoutMs`
 * once reading is paused for them, and the next request within `idleTimeoutMs` of the last reply.
 * Replies and notifications go through an Outbox (outbox.ts): bounded per client and in total.
 */
import type { Socket } from 'node:net';
import type { Device, DeviceConnection, DeviceDirectory } from '../devices/index.js';
import { isStorageFault, PairRecordIoError } from '../pairrecords/index.js';
import type { PairRecordStore } from '../pairrecords/index.js';
import type { PlistDict } from '../plist/index.js';
import type { Logger } from '../log.js';
import { isMuxdError } from '../errors.js';
import {
  BadCommandError, ClientIdleError, errorToResult, InputWhileListeningError, ListenerOverflowError, RequestTimeoutError, Result, SlowReaderError,
  UnknownDeviceError,
} from './errors.js';
import type { ManualDevices } from './options.js';
import { FrameDecoder } from './framing.js';
import type { Frame } from './framing.js';
import {
  attachedDict,
  decodeRequest,
  encodeAttached,
  encodeDetached,
  encodePaired,
  encodePlistMessage,
  encodeResult,
  switchesToPlist,
} from './messages.js';
import type { ClientIdentity, DeviceRecord, Dialect, Request } from './messages.js';
import { chooseAddressLayout } from './address-layout.js';
import type { AddressLayout } from './network-address.js';
import { Outbox } from './outbox.js';
import type { OutputBudget, Overflow } from './outbox.js';
import { Tunnel } from './tunnel.js';

export type SessionState = 'command' | 'busy' | 'listening' | 'connecting' | 'tunnel' | 'closed';

/** Pause reading while this much input waits behind a pending command or connect. */
const MAX_PENDING_INPUT = 256 * 1024;
/** Stop reading requests while this many reply bytes wait for a client that does not read them. */
const MAX_REPLY_BACKLOG = 1024 * 1024;

/** What the client owes us while a deadline runs: the error it is closed with when it passes. */
type Owed = 'first-request' | 'frame' | 'read' | 'idle';

/** The bounds each session keeps (ServerOptions' defaults are in options.ts). */
export interface SessionLimits {
  readonly maxFrameBytes: number;
  readonly requestTimeoutMs: number;
  readonly idleTimeoutMs: number;
  /** Unread replies of a command client beyond which it is closed (unless it had none unread). */
  readonly maxReplyBacklogBytes: number;
  /** Unread notifications of a listener beyond which it is closed. */
  readonly maxListenerBacklogBytes: number;
}

/** What the server gives each session. */
export interface SessionContext {
  readonly directory: DeviceDirectory;
  readonly store: PairRecordStore;
  readonly limits: SessionLimits;
  /** Unread bytes over all clients. */
  readonly budget: OutputBudget;
  /** AddDevice / RemoveDevice; undefined when network devices are off. */
  readonly manualDevices: ManualDevices | undefined;
  /** Sessions currently in `listening` (for ListListeners). */
  listeners(): Iterable<ClientSession>;
  /** The session entered `listening`: it gets live device events from now on. */
  onListening(session: ClientSession): void;
  /** The socket closed; called once. */
  onClosed(session: ClientSession): void;
}

export function deviceRecord(device: Device): DeviceRecord {
  return { deviceId: device.id, info: device.info };
}

export class ClientSession {
  /** Accept order, from 0 (usbmuxd's client numbering, used in ListListeners' "ID String"). */
  readonly number: number;
  readonly identity: ClientIdentity = {};
  private state: SessionState = 'command';
  private dialect: Dialect = 'binary';
  private readonly socket: Socket;
  private readonly ctx: SessionContext;
  private readonly log: Logger;
  private decoder: FrameDecoder | undefined;
  private tunnel: Tunnel | undefined;
  private readonly outbox: Outbox;
  /** Reading is paused until the client takes its replies. */
  private awaitingDrain = false;
  /** The client sent EOF: end our side once nothing more is owed. */
  private inputEnded = false;
  /** A request was handled: from now on silence is idleness, not a missing first request. */
  private served = false;
  private deadline: NodeJS.Timeout | undefined;
  private owed: Owed | undefined;

  constructor(socket: Socket, number: number, ctx: SessionContext, log: Logger) {
    this.socket = socket;
    this.number = number;
    this.ctx = ctx;
    this.log = log;
    this.decoder = new FrameDecoder(ctx.limits.maxFrameBytes);
    this.outbox = new Outbox(socket, ctx.budget, this.onOverflow);
    socket.on('data', this.onSocketData);
    socket.once('end', this.onSocketEnd);
    socket.once('close', this.onSocketClose);
    this.armDeadline();
  }

  get currentState(): SessionState {
    return this.state;
  }

  /** Server shutdown: reset a tunnel (RST to the device) and drop the client. */
  destroy(): void {
    if (this.tunnel !== undefined) this.tunnel.destroy();
    else this.socket.destroy();
  }

  // ---- listener notifications (called by the server for `listening` sessions) ----------------

  notifyAttached(device: Device): void {
    if (!this.sees(device)) return;
    this.notify(encodeAttached(this.dialect, deviceRecord(device), this.addressLayout()));
  }

  notifyDetached(device: Device): void {
    if (this.sees(device)) this.notify(encodeDetached(this.dialect, device.id));
  }

  notifyPaired(device: Device): void {
    if (this.sees(device)) this.notify(encodePaired(this.dialect, device.id));
  }

  /** How this client reads NetworkAddress, from what its hello said. */
  private addressLayout(): AddressLayout {
    return chooseAddressLayout(this.identity).layout;
  }

  /** Binary (v0) clients' device records cannot say Network: they are told of USB devices only. */
  private sees(device: Device): boolean {
    return this.dialect === 'plist' || device.info.connectionType === 'USB';
  }

  private notify(frame: Buffer): void {
    if (this.state !== 'listening') return;
    this.outbox.send(frame, this.ctx.limits.maxListenerBacklogBytes);
  }

  /** The outbox refused a frame: the client is closed, with the reason. */
  private readonly onOverflow = (overflow: Overflow): void => {
    const listening = this.state === 'listening';
    if (overflow.kind === 'budget') {
      this.fail(new SlowReaderError(`closed with ${overflow.unread} bytes unread, the most of any client, when all clients' unread bytes reached ${overflow.total}`));
    } else if (listening) {
      this.fail(new ListenerOverflowError(`listener has ${overflow.unread} unread bytes (limit ${overflow.limit})`));
    } else {
      this.fail(new SlowReaderError(`client has ${overflow.unread} reply bytes unread (limit ${overflow.limit})`));
    }
  };

  // ---- deadlines ------------------------------------------------------------------------------

  /** In command state, waiting for the client: start the deadline for what it owes (kept if already running for that). */
  private armDeadline(): void {
    if (this.state !== 'command' || this.socket.destroyed) return;
    const owed: Owed = this.awaitingDrain ? 'read' : this.decoder?.midFrame === true ? 'frame' : this.served ? 'idle' : 'first-request';
    if (this.deadline !== undefined && this.owed === owed) return;
    this.clearDeadline();
    const { requestTimeoutMs, idleTimeoutMs } = this.ctx.limits;
    this.owed = owed;
    this.deadline = setTimeout(this.onDeadline, owed === 'idle' ? idleTimeoutMs : requestTimeoutMs);
    this.deadline.unref();
  }

  private clearDeadline(): void {
    if (this.deadline === undefined) return;
    clearTimeout(this.deadline);
    this.deadline = undefined;
    this.owed = undefined;
  }

  private readonly onDeadline = (): void => {
    const owed = this.owed;
    this.deadline = undefined;
    this.owed = undefined;
    if (this.state !== 'command') return;
    const { requestTimeoutMs, idleTimeoutMs } = this.ctx.limits;
    switch (owed) {
      case 'first-request':
        this.fail(new RequestTimeoutError(`no request within ${requestTimeoutMs} ms of connecting`));
        break;
      case 'frame':
        this.fail(new RequestTimeoutError(`a frame was left incomplete for ${requestTimeoutMs} ms (${this.decoder?.bufferedBytes ?? 0} bytes buffered)`));
        break;
      case 'read':
        this.fail(new SlowReaderError(`replies left unread for ${requestTimeoutMs} ms (${this.outbox.unread} bytes)`));
        break;
      case 'idle':
        this.fail(new ClientIdleError(`no request for ${idleTimeoutMs} ms`));
        break;
      case undefined:
        break;
    }
  };

  // ---- input ----------------------------------------------------------------------------------

  private readonly onSocketData = (chunk: Buffer): void => {
    switch (this.state) {
      case 'command':
        this.decoder?.push(chunk);
        this.processFrames();
        break;
      case 'busy':
      case 'connecting':
        this.decoder?.push(chunk);
        if ((this.decoder?.bufferedBytes ?? 0) > MAX_PENDING_INPUT) this.socket.pause();
        break;
      case 'listening':
        this.fail(new InputWhileListeningError('a listening client sent data'));
        break;
      case 'tunnel':
      case 'closed':
        break;
    }
  };

  private readonly onSocketEnd = (): void => {
    this.inputEnded = true;
    this.endIfIdle();
  };

  /**
   * After the client's EOF: end our side unless a reply or a Connect is still in the works, once
   * every reply it was owed has left the outbox.
   */
  private endIfIdle(): void {
    if (!this.inputEnded || this.awaitingDrain) return;
    if (this.state === 'command' || this.state === 'listening' || this.state === 'connecting') this.outbox.whenDrained(this.endOurSide);
  }

  private readonly endOurSide = (): void => {
    if (!this.socket.destroyed && !this.socket.writableEnded) this.socket.end();
  };

  private readonly onReplyDrain = (): void => {
    this.awaitingDrain = false;
    if (this.state === 'command') this.processFrames();
  };

  private readonly onSocketClose = (): void => {
    const previous = this.state;
    this.state = 'closed';
    this.decoder = undefined;
    this.clearDeadline();
    this.outbox.close();
    this.log.info({ state: previous }, 'client closed');
    this.ctx.onClosed(this);
  };

  /** Handle buffered frames in order until one needs to wait or none is complete. */
  private processFrames(): void {
    while (this.state === 'command' && this.decoder !== undefined) {
      if (this.outbox.unread > MAX_REPLY_BACKLOG) {
        // A client that pipelines requests but never reads the replies: stop reading until it does.
        if (!this.awaitingDrain) {
          this.awaitingDrain = true;
          this.socket.pause();
          this.outbox.whenDrained(this.onReplyDrain);
        }
        this.armDeadline();
        return;
      }
      let frame: Frame | undefined;
      try {
        frame = this.decoder.read();
      } catch (err) {
        this.fail(err);
        return;
      }
      if (frame === undefined) break;
      this.clearDeadline();
      this.served = true;
      this.handleFrame(frame);
    }
    if (this.state === 'command' && this.socket.isPaused()) this.socket.resume();
    this.armDeadline();
    this.endIfIdle();
  }

  private handleFrame(frame: Frame): void {
    if (switchesToPlist(frame)) this.dialect = 'plist';
    let decoded;
    try {
      decoded = decodeRequest(frame);
    } catch (err) {
      this.replyError(frame.tag, err);
      return;
    }
    Object.assign(this.identity, decoded.identity);
    this.log.debug({ tag: frame.tag, request: decoded.request.type }, 'request');
    try {
      this.dispatch(decoded.request, frame.tag);
    } catch (err) {
      // A bug answering this request (a reply that cannot be encoded, say): this client is
      // closed, and the daemon and its other clients carry on.
      this.log.error({ err, tag: frame.tag, request: decoded.request.type }, 'request failed unexpectedly; closing client');
      this.socket.destroy();
    }
  }

  private dispatch(request: Request, tag: number): void {
    switch (request.type) {
      case 'Listen':
        this.startListening(tag);
        return;
      case 'Connect':
        this.connect(request.deviceId, request.port, tag);
        return;
      case 'ListDevices':
        this.replyPlist(tag, { DeviceList: this.ctx.directory.list().map((d) => attachedDict(deviceRecord(d), this.addressLayout())) });
        return;
      case 'ListListeners':
        this.replyPlist(tag, { ListenerList: [...this.ctx.listeners()].map((s) => this.listenerDict(s)) });
        return;
      case 'ReadBUID':
        this.runAsync(tag, this.ctx.store.systemBuid().then((buid) => ({ BUID: buid })));
        return;
      case 'ReadPairRecord':
        this.runAsync(tag, this.ctx.store.read(request.pairRecordId).then((data) => ({ PairRecordData: data })));
        return;
      case 'SavePairRecord': {
        const { pairRecordId, data, deviceId } = request;
        this.runAsync(tag, this.ctx.store.save(pairRecordId, data).then(() => this.afterSave(pairRecordId, deviceId)));
        return;
      }
      case 'DeletePairRecord':
        this.runAsync(tag, this.ctx.store.delete(request.pairRecordId).then(() => Result.OK));
        return;
      case 'AddDevice': {
        const manual = this.ctx.manualDevices;
        if (manual === undefined) {
          this.replyError(tag, new BadCommandError('network devices are off (--no-network)'));
          return;
        }
        this.runAsync(tag, manual.add(request.address, request.udid).then(() => Result.OK));
        return;
      }
      case 'RemoveDevice': {
        const manual = this.ctx.manualDevices;
        if (manual === undefined) {
          this.replyError(tag, new BadCommandError('network devices are off (--no-network)'));
          return;
        }
        this.replyResult(tag, manual.remove({ udid: request.udid, address: request.address }) ? Result.OK : Result.BADDEV);
        return;
      }
    }
  }

  /** SavePairRecord succeeded: raise Paired when DeviceID names a device with this serial. */
  private afterSave(pairRecordId: string, deviceId: number | undefined): number {
    if (deviceId === undefined || deviceId === 0) return Result.OK;
    const device = this.ctx.directory.get(deviceId);
    if (device?.info.serial !== pairRecordId) {
      // The client's mistake, not ours: warn (any client can cause it at will).
      this.log.warn({ deviceId, pairRecordId }, 'SavePairRecord: DeviceID does not name a device with this serial; no Paired sent');
      return Result.OK;
    }
    this.ctx.directory.markPaired(deviceId);
    return Result.OK;
  }

  /** A store call: `busy` until it settles, then the reply (a dict, or a Result number). */
  private runAsync(tag: number, work: Promise<PlistDict | number>): void {
    this.state = 'busy';
    work.then(
      (outcome) => {
        if (this.state !== 'busy') return;
        if (typeof outcome === 'number') this.replyResult(tag, outcome);
        else this.replyPlist(tag, outcome);
      },
      (err: unknown) => {
        if (this.state !== 'busy') return;
        const result = errorToResult(err);
        // Disk trouble (ENOSPC, EROFS, EACCES), a file planted in the directory, a full store:
        // the operator's business, so warn (with the errno when there is one).
        if (isStorageFault(err)) this.log.warn({ err, errno: err instanceof PairRecordIoError ? err.errno : undefined, result }, 'pair-record storage failed');
        else if (isMuxdError(err)) this.log.info({ err, result }, 'command failed');
        else this.log.error({ err, result }, 'command failed unexpectedly');
        this.replyResult(tag, result);
      },
    ).finally(() => {
      if (this.state !== 'busy') return;
      this.state = 'command';
      this.processFrames();
    }).catch((err: unknown) => {
      this.log.error({ err }, 'session failed after a command');
      this.socket.destroy();
    });
  }

  private startListening(tag: number): void {
    this.replyResult(tag, Result.OK);
    this.state = 'listening';
    this.clearDeadline();
    for (const device of this.ctx.directory.list()) this.notifyAttached(device);
    this.ctx.onListening(this);
    this.log.info('client listening');
    // Requests pipelined behind the Listen are input while listening too, whichever chunk they came in.
    if ((this.decoder?.bufferedBytes ?? 0) > 0) this.fail(new InputWhileListeningError('a listening client sent data'));
  }

  private listenerDict(listener: ClientSession): PlistDict {
    const progName = listener.identity.progName ?? 'unknown';
    const dict: PlistDict = {
      Blacklisted: false,
      ConnType: 0,
      // usbmuxd puts the REQUESTING client's number here, not the listener's.
      'ID String': `${this.number}-${progName}`,
      ProgName: progName,
      kLibUSBMuxVersion: listener.identity.libusbmuxVersion ?? 0,
    };
    if (listener.identity.bundleId !== undefined) dict['BundleID'] = listener.identity.bundleId;
    return dict;
  }

  // ---- Connect --------------------------------------------------------------------------------

  private connect(deviceId: number, port: number, tag: number): void {
    const device = this.ctx.directory.get(deviceId);
    if (device === undefined) {
      this.replyError(tag, new UnknownDeviceError(`Connect to unknown device ${deviceId}`));
      return;
    }
    this.state = 'connecting';
    this.log.debug({ deviceId, port }, 'connecting');
    device.connect(port).then(
      (conn) => {
        this.onConnected(conn, tag, deviceId, port);
      },
      (err: unknown) => {
        this.onConnectFailed(err, tag, deviceId, port);
      },
    );
  }

  private onConnected(conn: DeviceConnection, tag: number, deviceId: number, port: number): void {
    if (this.state !== 'connecting') {
      // The client left while we were connecting: abort at the device.
      conn.reset();
      return;
    }
    this.log.info({ deviceId, port, sport: conn.localPort }, 'connected');
    this.reply(encodeResult(this.dialect, tag, Result.OK));
    this.handOff(conn);
  }

  private onConnectFailed(err: unknown, tag: number, deviceId: number, port: number): void {
    if (this.state !== 'connecting') return;
    const result = errorToResult(err);
    if (isMuxdError(err)) this.log.info({ deviceId, port, err, result }, 'connect failed');
    else this.log.error({ deviceId, port, err, result }, 'connect failed unexpectedly');
    this.replyResult(tag, result);
    this.state = 'command';
    this.processFrames();
  }

  /**
   * The one place a socket leaves command mode for the tunnel (undici's onUpgrade): the command
   * listener goes, the decoder's unparsed bytes (everything the client sent after Connect) are
   * taken, the decoder is dropped, and the tunnel delivers those bytes to the device first.
   */
  private handOff(conn: DeviceConnection): void {
    if (this.state !== 'connecting' || this.decoder === undefined || this.tunnel !== undefined) {
      throw new Error(`handOff in state ${this.state}`);
    }
    this.socket.removeListener('data', this.onSocketData);
    this.clearDeadline();
    // Replies still held go out before the first tunnel byte; the mux window bounds memory from here.
    this.outbox.close(true);
    const leftover = this.decoder.takeRemaining();
    this.decoder = undefined;
    this.state = 'tunnel';
    this.tunnel = new Tunnel(this.socket, conn, this.log.child({ sport: conn.localPort, dport: conn.remotePort }));
    this.tunnel.start(leftover);
  }

  // ---- output ---------------------------------------------------------------------------------

  /** A request we refuse without doing anything: logged (info; error when not one of ours) and answered via errorToResult. */
  private replyError(tag: number, err: unknown): void {
    const result = errorToResult(err);
    if (isMuxdError(err)) this.log.info({ err, tag, result }, 'request refused');
    else this.log.error({ err, tag, result }, 'request refused unexpectedly');
    this.replyResult(tag, result);
  }

  private replyResult(tag: number, number: number): void {
    this.reply(encodeResult(this.dialect, tag, number));
  }

  private replyPlist(tag: number, dict: PlistDict): void {
    this.reply(encodePlistMessage(tag, dict));
  }

  private reply(frame: Buffer): void {
    this.outbox.send(frame, this.ctx.limits.maxReplyBacklogBytes);
  }

  /** Close the client for a protocol violation; logged once, here. */
  private fail(err: unknown): void {
    if (this.state === 'closed' || this.socket.destroyed) return;
    this.clearDeadline();
    this.log.warn({ err, state: this.state }, 'closing client');
    this.socket.destroy();
  }
}
