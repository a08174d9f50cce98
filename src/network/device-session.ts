/**
 * The daemon's session with one network device at one endpoint: first it proves the device is the
 * phone its pair record names, then it holds the device's heartbeat until that ends.
 *
 *   proving:  TCP to lockdownd (62078) ─▶ QueryType ─▶ StartSession with the record's HostID,
 *             TLS with its host certificate, the device's certificate checked against the
 *             record's DeviceCertificate ─▶ GetValue UniqueDeviceID = the record's UDID ─▶
 *             StartService com.apple.mobile.heartbeat ─▶ StopSession, close ─▶ TCP to the
 *             service port (+ TLS as above when EnableServiceSSL) ─▶ the first Marco answered
 *        │  any step fails, or no Marco within the bound ────────────────▶ rejects (never up)
 *        ▼
 *   beating:  Marco/Polo
 *        │  heartbeat ends (timeout, SleepyTime, closed …) or close() ───▶ ended: onEnd once
 *        ▼
 *   ended
 *
 * A peer that only copied a phone's advert cannot pass the TLS step: completing a handshake that
 * presents the record's DeviceCertificate needs the phone's private key. Until a session is up,
 * no client byte goes anywhere near the endpoint.
 */
import type { Logger } from '../log.js';
import { LockdownClient, LockdownProtocolError } from '../lockdown/index.js';
import type { SessionCredentials } from '../lockdown/index.js';
import { describeEndpoint, dialTcp } from './dial.js';
import type { Endpoint } from './dial.js';
import { HeartbeatSilentError, NetworkIdentityError } from './errors.js';
import { HEARTBEAT_SERVICE, HeartbeatClient } from './heartbeat.js';
import type { HeartbeatEnd } from './heartbeat.js';

export const LOCKDOWN_PORT = 62078;
const LOCKDOWN_TYPE = 'com.apple.mobile.lockdown';

export interface SessionParams {
  readonly udid: string;
  readonly endpoint: Endpoint;
  readonly credentials: SessionCredentials;
  readonly systemBuid: string;
  readonly log: Logger;
  /** Bound on the TCP connects and on each lockdown round trip. */
  readonly timeoutMs: number;
  /** The heartbeat ended (not called when proving failed, nor after close()). */
  readonly onEnd: (why: HeartbeatEnd, err?: Error) => void;
  /** Heartbeat grace (tests). */
  readonly graceMs?: (intervalMs: number) => number;
}

export type SessionState = 'proving' | 'beating' | 'ended';

export class DeviceSession {
  readonly udid: string;
  readonly endpoint: Endpoint;
  private state: SessionState = 'proving';
  private heartbeat: HeartbeatClient | undefined;
  private readonly onEnd: SessionParams['onEnd'];

  private constructor(params: SessionParams) {
    this.udid = params.udid;
    this.endpoint = params.endpoint;
    this.onEnd = params.onEnd;
  }

  /** Prove the device and start its heartbeat; rejects with why it could not be proven. */
  static async open(params: SessionParams): Promise<DeviceSession> {
    const session = new DeviceSession(params);
    await session.prove(params);
    return session;
  }

  get current(): SessionState {
    return this.state;
  }

  /** Heartbeats answered so far. */
  get beats(): number {
    return this.heartbeat?.beats ?? 0;
  }

  /** End the session (device removed, daemon stopping); onEnd is not called. */
  close(): void {
    if (this.state === 'ended') return;
    this.state = 'ended';
    this.heartbeat?.stop();
  }

  private async prove(params: SessionParams): Promise<void> {
    const { endpoint, credentials, log, timeoutMs, udid } = params;
    const peerCertificate = credentials.deviceCertificate;
    if (peerCertificate === undefined) {
      throw new NetworkIdentityError('the pair record has no DeviceCertificate to check the device against');
    }
    const tls = { hostId: credentials.hostId, systemBuid: params.systemBuid, cert: credentials.hostCertificate, key: credentials.hostPrivateKey, peerCertificate };
    const lockdown = new LockdownClient(await dialTcp(endpoint, LOCKDOWN_PORT, timeoutMs), { log, timeoutMs });
    let service;
    try {
      const type = await lockdown.queryType();
      if (type !== LOCKDOWN_TYPE) throw new LockdownProtocolError(`QueryType answered ${type}`);
      await lockdown.startSession(tls);
      const reported = await lockdown.getValue('UniqueDeviceID');
      if (reported !== udid) {
        throw new NetworkIdentityError(`the device says it is ${typeof reported === 'string' ? reported : 'nobody'}, not ${udid}`);
      }
      service = await lockdown.startService(HEARTBEAT_SERVICE);
      await lockdown.stopSession();
    } finally {
      lockdown.close();
    }
    const heartbeat = new HeartbeatClient(await dialTcp(endpoint, service.port, timeoutMs), {
      log,
      onEnd: (why, err) => { this.heartbeatEnded(why, err); },
      ...(params.graceMs === undefined ? {} : { graceMs: params.graceMs }),
    });
    this.heartbeat = heartbeat;
    if (service.enableServiceSsl) {
      try {
        await heartbeat.connection.startTls({ cert: credentials.hostCertificate, key: credentials.hostPrivateKey, peerCertificate }, timeoutMs);
      } catch (err) {
        this.state = 'ended';
        heartbeat.stop();
        throw err;
      }
    }
    heartbeat.start();
    try {
      // A phone that gives us a heartbeat it never beats on would be up for Interval + grace, then
      // lost, then up again at the next dial: it is not up until it beats.
      await heartbeat.firstBeat(timeoutMs);
      const ended = heartbeat.ended;
      if (ended !== undefined) throw new HeartbeatSilentError(`the heartbeat ended (${ended}) right after the first Marco`);
    } catch (err) {
      this.state = 'ended';
      heartbeat.stop();
      throw err;
    }
    this.state = 'beating';
    log.debug({ at: describeEndpoint(endpoint), heartbeatPort: service.port, ssl: service.enableServiceSsl }, 'network device proven; heartbeat running');
  }

  private heartbeatEnded(why: HeartbeatEnd, err?: Error): void {
    if (this.state !== 'beating') return;
    this.state = 'ended';
    this.onEnd(why, err);
  }
}
