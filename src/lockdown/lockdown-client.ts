/**
 * A lockdownd client (device port 62078), over any byte stream: one request at a time, each with a
 * bounded round trip, over a PlistConnection (plain, or TLS after StartSession).
 *
 *   request ──▶ { Label: "usbmuxd", Request, ... } (XML)
 *   reply   ◀── { Request, ...values }           → resolves
 *           ◀── { Request, Error: "..." }         → LockdownError (lockdownError = the string)
 *           ◀── nothing within timeoutMs          → LockdownTimeoutError, connection reset
 *           ◀── a reply nobody asked for, or one echoing another Request → LockdownProtocolError
 *
 * Requests queue behind each other (lockdownd answers strictly in order, one at a time).
 */
import type { Duplex } from 'node:stream';
import type { Logger } from '../log.js';
import type { Device } from '../devices/index.js';
import { isPlistInteger } from '../plist/index.js';
import type { PlistDict, PlistValue } from '../plist/index.js';
import { LockdownClosedError, LockdownError, LockdownProtocolError, LockdownTimeoutError } from './errors.js';
import { DeviceDuplex } from './device-duplex.js';
import { PlistConnection } from './plist-connection.js';
import type { PlistConnectionHandler, TlsCredentials } from './plist-connection.js';

export const LOCKDOWN_PORT = 62078;
export const LOCKDOWN_TYPE = 'com.apple.mobile.lockdown';
/** The Label usbmuxd's preflight puts in every request. */
export const LOCKDOWN_LABEL = 'usbmuxd';
/** Default bound on one lockdown round trip. */
export const LOCKDOWN_TIMEOUT_MS = 10_000;

export interface LockdownClientOptions {
  readonly log: Logger;
  /** Bound on each round trip (and on the TLS handshake), ms. */
  readonly timeoutMs?: number;
  readonly label?: string;
}

export interface StartSessionRequest extends TlsCredentials {
  readonly hostId: string;
  readonly systemBuid: string;
}

export interface StartedService {
  readonly port: number;
  readonly enableServiceSsl: boolean;
}

interface Pending {
  readonly request: string;
  readonly resolve: (reply: PlistDict) => void;
  readonly reject: (err: Error) => void;
  readonly timer: NodeJS.Timeout;
}

export class LockdownClient implements PlistConnectionHandler {
  private readonly conn: PlistConnection;
  private readonly log: Logger;
  private readonly timeoutMs: number;
  private readonly label: string;
  private pending: Pending | undefined;
  /** The previous request's settlement: the next one is sent only after it. */
  private queue: Promise<unknown> = Promise.resolve();
  private closeReason: Error | undefined;
  private sessionId: string | undefined;

  /** Open a connection to lockdownd on `device` through the directory. */
  static async connect(device: Device, options: LockdownClientOptions): Promise<LockdownClient> {
    const conn = await device.connect(LOCKDOWN_PORT, { timeoutMs: options.timeoutMs ?? LOCKDOWN_TIMEOUT_MS });
    return new LockdownClient(new DeviceDuplex(conn), options);
  }

  constructor(stream: Duplex, options: LockdownClientOptions) {
    this.log = options.log;
    this.timeoutMs = options.timeoutMs ?? LOCKDOWN_TIMEOUT_MS;
    this.label = options.label ?? LOCKDOWN_LABEL;
    this.conn = new PlistConnection(stream, this, options.log);
  }

  get closed(): boolean {
    return this.closeReason !== undefined;
  }

  /** Send one request and await its reply. */
  request(request: string, fields: PlistDict = {}): Promise<PlistDict> {
    const run = (): Promise<PlistDict> => this.roundTrip(request, fields);
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private roundTrip(request: string, fields: PlistDict): Promise<PlistDict> {
    if (this.closeReason !== undefined) return Promise.reject(this.closeReason);
    return new Promise<PlistDict>((resolve, reject) => {
      if (this.log.isLevelEnabled('trace')) this.log.trace({ request }, 'lockdown request');
      this.conn.send({ Label: this.label, Request: request, ...fields });
      const timer = setTimeout(() => {
        this.close(new LockdownTimeoutError(`no reply to ${request} within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.pending = { request, resolve, reject, timer };
    });
  }

  onMessage(reply: PlistDict): void {
    const pending = this.pending;
    if (pending === undefined) {
      this.close(new LockdownProtocolError('lockdownd sent a message nobody asked for'));
      return;
    }
    const echoed = reply['Request'];
    if (echoed !== undefined && echoed !== pending.request) {
      const what = typeof echoed === 'string' ? echoed : typeof echoed;
      this.close(new LockdownProtocolError(`reply to ${what} where ${pending.request} was asked`));
      return;
    }
    this.pending = undefined;
    clearTimeout(pending.timer);
    const error = reply['Error'];
    if (typeof error === 'string') pending.reject(new LockdownError(pending.request, error));
    else pending.resolve(reply);
  }

  onClose(err: Error): void {
    this.closeReason ??= err;
    const pending = this.pending;
    this.pending = undefined;
    if (pending !== undefined) {
      clearTimeout(pending.timer);
      pending.reject(err);
    }
  }

  /** Reset the connection; a pending request rejects with `err`. Idempotent. */
  close(err: Error = new LockdownClosedError('lockdown client closed')): void {
    this.closeReason ??= err;
    this.conn.close(this.closeReason);
  }

  // ── requests ───────────────────────────────────────────────────────────────────────────────

  /** `Type`: "com.apple.mobile.lockdown" in normal mode. */
  async queryType(): Promise<string> {
    const reply = await this.request('QueryType');
    const type = reply['Type'];
    if (typeof type !== 'string') throw new LockdownProtocolError('QueryType reply without Type');
    return type;
  }

  /** A value (undefined when the reply carries none). */
  async getValue(key: string, domain?: string): Promise<PlistValue | undefined> {
    const fields: PlistDict = { Key: key };
    if (domain !== undefined) fields['Domain'] = domain;
    const reply = await this.request('GetValue', fields);
    return reply['Value'];
  }

  async getString(key: string): Promise<string | undefined> {
    const v = await this.getValue(key);
    return typeof v === 'string' ? v : undefined;
  }

  async setValue(key: string, value: PlistValue, domain?: string): Promise<void> {
    const fields: PlistDict = { Key: key, Value: value };
    if (domain !== undefined) fields['Domain'] = domain;
    await this.request('SetValue', fields);
  }

  /** StartSession; with EnableSessionSSL the rest of the conversation runs under TLS. */
  async startSession(req: StartSessionRequest): Promise<{ sessionId: string; tls: boolean }> {
    const reply = await this.request('StartSession', { HostID: req.hostId, SystemBUID: req.systemBuid });
    const sessionId = reply['SessionID'];
    if (typeof sessionId !== 'string') throw new LockdownProtocolError('StartSession reply without SessionID');
    this.sessionId = sessionId;
    const tls = reply['EnableSessionSSL'] === true;
    if (tls) await this.conn.startTls(req, this.timeoutMs);
    return { sessionId, tls };
  }

  /** StopSession; afterwards the connection speaks plain text again. */
  async stopSession(): Promise<void> {
    const sessionId = this.sessionId;
    if (sessionId === undefined) return;
    this.sessionId = undefined;
    await this.request('StopSession', { SessionID: sessionId });
    await this.conn.stopTls(this.timeoutMs);
  }

  /** Pair with the public parts of a new record; resolves with the EscrowBag when the phone sent one. */
  async pair(pairRecord: PlistDict): Promise<Buffer | undefined> {
    const reply = await this.request('Pair', {
      PairRecord: pairRecord,
      ProtocolVersion: '2',
      PairingOptions: { ExtendedPairingErrors: true },
    });
    const bag = reply['EscrowBag'];
    return Buffer.isBuffer(bag) ? bag : undefined;
  }

  async startService(service: string): Promise<StartedService> {
    const reply = await this.request('StartService', { Service: service });
    const port = reply['Port'];
    if (!isPlistInteger(port) || Number(port) <= 0 || Number(port) > 0xffff) {
      throw new LockdownProtocolError(`StartService ${service}: no valid Port in the reply`);
    }
    return { port: Number(port), enableServiceSsl: reply['EnableServiceSSL'] === true };
  }

  get inSession(): boolean {
    return this.conn.isTls;
  }
}
