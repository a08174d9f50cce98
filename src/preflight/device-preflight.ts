/**
 * Preflight of one device: check its pairing with lockdownd, bring up the Trust prompt, pair when
 * the user taps Trust, save the record and tell listeners Paired (docs/usbmux-protocol.md §5.3).
 *
 * The device is ALWAYS listed already (the registry announces it on version exchange): nothing
 * here gates visibility. A failure is logged once with its reason, and the device stays listed.
 *
 *   connecting ──QueryType≠lockdown──▶ not-lockdown
 *       │ (lockdown unreachable, timeout …) ─────────────────────────────────────────▶ failed
 *       ▼
 *   checking-record ── record + StartSession ok (StopSession) ──────────────────────▶ paired
 *       │   │            other lockdown error (e.g. PasswordProtected) = paired, as usbmuxd ─┘
 *       │   └─ TLS error: delete the record, start over at connecting (once; twice ▶ failed)
 *       │ no record / unusable record / InvalidHostID
 *       ▼
 *   reading-info (ProductVersion, default "1.0"; DeviceClass)
 *       │ modern (iPhone/iPad ≥ 7, Watch ≥ 2, AppleTV ≥ 9)        │ older
 *       ▼                                                            ▼
 *   SetValue UntrustedHostBUID;                                   pairing ──refused──▶ not-paired
 *   StartService notification proxy, observe request_pair +          │ ok: save, Paired
 *   request_host_buid (BEFORE the first Pair, so an early tap         ▼
 *   cannot be missed)                                               paired
 *       ▼
 *   pairing ──ok (a phone in setup): save, Paired ─────────────────────────▶ paired
 *       │ PairingDialogResponsePending / UserDeniedPairing / PasswordProtected (logged)
 *       │ (no proxy could be opened: ──────────────────────────────────────▶ failed)
 *       ▼
 *   waiting-for-trust ◀─────────────── Pair refused again (logged) ──┐
 *       │ request_pair: new lockdown client → pairing ─────────────────┴─ ok ─▶ paired
 *       │ request_host_buid: new lockdown client → SetValue UntrustedHostBUID (stay)
 *       │ a client paired it (registry 'paired') ───────────────────────────▶ paired
 *       └ proxy gone (ProxyDeath, empty name, closed) ─────────────────────▶ failed
 *
 *   any state ── cancel() (detached, daemon stopping) ──▶ cancelled: connections reset, no timers
 *
 * Every lockdown round trip is bounded (timeoutMs); waiting for the user is not (it costs one
 * idle mux connection). Notifications are handled one at a time, in order.
 */
import type { Logger } from '../log.js';
import type { Device } from '../devices/index.js';
import type { PairRecordStore } from '../pairrecords/index.js';
import { PairRecordNotFoundError } from '../pairrecords/index.js';
import { buildXml } from '../plist/index.js';
import { LOCKDOWN_TYPE, LockdownClient, LockdownError, LockdownTlsError, sessionCredentials, UnusablePairRecordError } from '../lockdown/index.js';
import type { SessionCredentials } from '../lockdown/index.js';
import { DevicePublicKeyError, PreflightCancelledError } from './errors.js';
import {
  NOTIFICATION_PROXY_SERVICE, NOTIFICATION_REQUEST_HOST_BUID, NOTIFICATION_REQUEST_PAIR, NotificationProxyClient,
} from './notification-proxy.js';
import { generatePairRecord, withEscrowBag } from './pair-record.js';
import type { NewPairRecord, NewPairRecordInput } from './pair-record.js';

export type PreflightState =
  | 'idle' | 'connecting' | 'checking-record' | 'reading-info' | 'pairing' | 'waiting-for-trust'
  | 'paired' | 'not-paired' | 'not-lockdown' | 'failed' | 'cancelled';

const FINAL: ReadonlySet<PreflightState> = new Set(['paired', 'not-paired', 'not-lockdown', 'failed', 'cancelled']);

export interface PreflightContext {
  readonly store: PairRecordStore;
  /** Raises Paired to listeners (the registry). */
  readonly markPaired: (deviceId: number) => void;
  readonly log: Logger;
  /** Bound on every lockdown round trip, connect and TLS handshake, ms. */
  readonly timeoutMs: number;
  /** Makes the keys and certificates of a new pairing (generatePairRecord; tests swap it). */
  readonly generateRecord?: (input: NewPairRecordInput) => Promise<NewPairRecord>;
}

/** Devices that show the Trust dialog and relay request_pair (usbmuxd's rule). */
export function isModernDevice(deviceClass: string, productVersion: string): boolean {
  const major = Number.parseInt(productVersion.split('.')[0] ?? '', 10);
  if (!Number.isFinite(major)) return false;
  switch (deviceClass) {
    case 'iPhone':
    case 'iPad':
      return major >= 7;
    case 'Watch':
      return major >= 2;
    case 'AppleTV':
      return major >= 9;
    default:
      return false;
  }
}

/** What a refused Pair means, for the one log line about it. */
function pairRefusal(err: LockdownError): string {
  switch (err.lockdownError) {
    case 'PairingDialogResponsePending': return 'the Trust dialog is up; waiting for the user';
    case 'UserDeniedPairing': return 'the user tapped Don\'t Trust; the device stays listed, unpaired';
    case 'PasswordProtected': return 'the device is locked with a passcode; unlock it to see the Trust dialog';
    default: return `Pair refused: ${err.lockdownError}`;
  }
}

type Attempt = 'done' | 'restart';

export class DevicePreflight {
  private stateValue: PreflightState = 'idle';
  private readonly device: Device;
  private readonly ctx: PreflightContext;
  private readonly log: Logger;
  private readonly abort = new AbortController();
  /** Lockdown clients open right now (closed on cancel). */
  private readonly clients = new Set<LockdownClient>();
  private proxy: NotificationProxyClient | undefined;
  /** The keys and certificates made for this device, reused by every Pair attempt of this run. */
  private record: Promise<NewPairRecord> | undefined;
  private systemBuid = '';
  private tlsRestarts = 0;
  /** Serializes the main run and the notification handlers; settles when nothing is in flight. */
  private work: Promise<void> = Promise.resolve();

  constructor(device: Device, ctx: PreflightContext) {
    this.device = device;
    this.ctx = ctx;
    this.log = ctx.log.child({ dev: device.id, udid: device.info.serial });
  }

  get state(): PreflightState {
    return this.stateValue;
  }

  /** Start the flow; returns at once (the flow runs beside everything else). */
  start(): void {
    this.enqueue(() => this.run());
  }

  /** Settles once no step is in flight (waiting for the user counts as idle). */
  settled(): Promise<void> {
    return this.work;
  }

  /** Stop now: reset every connection, drop the proxy. Idempotent. */
  cancel(why: string): void {
    if (!this.abort.signal.aborted) this.abort.abort(new PreflightCancelledError(`preflight cancelled: ${why}`));
    this.closeAll();
    if (!FINAL.has(this.stateValue)) {
      this.log.debug({ state: this.stateValue, why }, 'preflight cancelled');
      this.stateValue = 'cancelled';
    }
  }

  /** A client paired the device (SavePairRecord with its DeviceID): stop waiting for the tap. */
  pairedElsewhere(): void {
    if (this.stateValue !== 'waiting-for-trust') return;
    this.log.info('paired by a client; preflight done');
    this.finish('paired');
  }

  // ── the flow ──────────────────────────────────────────────────────────────────────────────

  private async run(): Promise<void> {
    while ((await this.attempt()) === 'restart') {
      this.log.info('starting preflight over without the stale record');
    }
  }

  private async attempt(): Promise<Attempt> {
    this.enter('connecting');
    const lockdown = await this.openLockdown();
    try {
      const type = await lockdown.queryType();
      if (type !== LOCKDOWN_TYPE) {
        this.log.info({ type }, 'device is not in normal mode; no preflight');
        this.finish('not-lockdown');
        return 'done';
      }
      this.enter('checking-record');
      this.systemBuid = await this.guard(this.ctx.store.systemBuid());
      const creds = await this.storedCredentials();
      if (creds !== undefined) {
        const verdict = await this.checkSession(lockdown, creds);
        if (verdict !== 'not-paired') return verdict;
      }
      this.enter('reading-info');
      const version = await lockdown.getString('ProductVersion').catch((err: unknown) => {
        if (err instanceof LockdownError) return undefined;
        throw err;
      }) ?? '1.0';
      const deviceClass = await lockdown.getString('DeviceClass') ?? '';
      if (!isModernDevice(deviceClass, version)) return await this.pairOlderDevice(lockdown, deviceClass, version);
      await lockdown.setValue('UntrustedHostBUID', this.systemBuid);
      const proxyError = await this.observeTrust(lockdown);
      if (await this.tryPair(lockdown)) return 'done';
      if (proxyError !== undefined) throw proxyError;
      this.enter('waiting-for-trust');
      return 'done';
    } finally {
      this.closeClient(lockdown);
    }
  }

  /** StartSession with the stored record: paired, restart (stale record removed), or not paired. */
  private async checkSession(lockdown: LockdownClient, creds: SessionCredentials): Promise<Attempt | 'not-paired'> {
    try {
      await lockdown.startSession({ hostId: creds.hostId, systemBuid: this.systemBuid, cert: creds.hostCertificate, key: creds.hostPrivateKey });
      await lockdown.stopSession();
      this.log.info('paired already: session with the stored record works');
      this.finish('paired');
      return 'done';
    } catch (err) {
      if (err instanceof LockdownTlsError) {
        if (this.tlsRestarts++ > 0) throw err;
        this.log.warn({ err }, 'TLS with the stored pair record failed: deleting the stale record and pairing again');
        await this.deleteRecord();
        return 'restart';
      }
      if (err instanceof LockdownError && err.lockdownError === 'InvalidHostID') {
        this.log.info('the device does not know our stored HostID: not paired');
        return 'not-paired';
      }
      if (err instanceof LockdownError) {
        this.log.info({ lockdownError: err.lockdownError }, 'StartSession refused for another reason; treating the device as paired (as usbmuxd)');
        this.finish('paired');
        return 'done';
      }
      throw err;
    }
  }

  /** Old devices and other classes: one Pair, no dialog to wait for. */
  private async pairOlderDevice(lockdown: LockdownClient, deviceClass: string, version: string): Promise<Attempt> {
    this.log.info({ deviceClass, version }, 'older device: pairing without the Trust dialog');
    if (!(await this.tryPair(lockdown)) && !FINAL.has(this.stateValue)) this.finish('not-paired');
    return 'done';
  }

  /** One Pair attempt; true when paired (record saved, Paired raised). A refusal is logged. */
  private async tryPair(lockdown: LockdownClient): Promise<boolean> {
    this.enter('pairing');
    const made = await this.newRecord(lockdown);
    let escrowBag: Buffer | undefined;
    try {
      escrowBag = await lockdown.pair(made.pairRequestRecord);
    } catch (err) {
      if (!(err instanceof LockdownError)) throw err;
      const level = err.lockdownError === 'PairingDialogResponsePending' ? 'info' : 'warn';
      this.log[level]({ lockdownError: err.lockdownError }, pairRefusal(err));
      return false;
    }
    // Not cancellable: the phone trusts this HostID now, so the record is kept even if the device
    // was just unplugged; Paired goes out only for a device still here.
    await this.ctx.store.save(this.device.info.serial, buildXml(withEscrowBag(made.record, escrowBag)));
    this.log.info({ hostId: made.hostId }, 'paired: record saved');
    this.finish('paired');
    if (!this.abort.signal.aborted) this.ctx.markPaired(this.device.id);
    return true;
  }

  private newRecord(lockdown: LockdownClient): Promise<NewPairRecord> {
    this.record ??= (async () => {
      const key = await lockdown.getValue('DevicePublicKey');
      if (!Buffer.isBuffer(key)) throw new DevicePublicKeyError('the device sent no DevicePublicKey');
      const wifi = await lockdown.getString('WiFiAddress').catch((err: unknown) => {
        if (err instanceof LockdownError) return undefined; // the record then has no WiFiMACAddress
        throw err;
      });
      const generate = this.ctx.generateRecord ?? generatePairRecord;
      return this.guard(generate({ devicePublicKey: key, systemBuid: this.systemBuid, wifiMacAddress: wifi }));
    })();
    const pending = this.record;
    // A failed attempt (e.g. the connection dropped mid-way) must not poison the next one.
    pending.catch(() => { if (this.record === pending) this.record = undefined; });
    return pending;
  }

  // ── waiting for the tap ──────────────────────────────────────────────────────────────────

  /**
   * Open the notification proxy and subscribe. A failure is returned, not thrown: a phone in setup
   * still pairs without it, and only a phone that needs the tap makes it fatal.
   */
  private async observeTrust(lockdown: LockdownClient): Promise<Error | undefined> {
    try {
      const service = await lockdown.startService(NOTIFICATION_PROXY_SERVICE);
      const proxy = await this.guard(
        NotificationProxyClient.connect(this.device, service.port, {
          onNotification: (name) => { this.onNotification(name); },
          onGone: (err) => { this.onProxyGone(err); },
        }, this.log, this.ctx.timeoutMs),
        (p) => { p.close(); },
      );
      this.proxy = proxy;
      proxy.observe(NOTIFICATION_REQUEST_PAIR);
      proxy.observe(NOTIFICATION_REQUEST_HOST_BUID);
      return undefined;
    } catch (err) {
      if (this.abort.signal.aborted || lockdown.closed) throw err;
      return err instanceof Error ? err : new Error(String(err));
    }
  }

  private onNotification(name: string): void {
    if (this.stateValue !== 'waiting-for-trust' && this.stateValue !== 'pairing') return;
    if (name === NOTIFICATION_REQUEST_PAIR) this.enqueue(() => this.pairAfterTap());
    else if (name === NOTIFICATION_REQUEST_HOST_BUID) this.enqueue(() => this.resendHostBuid());
  }

  private async pairAfterTap(): Promise<void> {
    if (this.stateValue !== 'waiting-for-trust') return;
    this.log.info('the user tapped Trust: pairing');
    await this.withFreshClient(async (lockdown) => {
      if (!(await this.tryPair(lockdown))) this.enter('waiting-for-trust');
    });
  }

  private async resendHostBuid(): Promise<void> {
    if (this.stateValue !== 'waiting-for-trust') return;
    await this.withFreshClient(async (lockdown) => {
      await lockdown.setValue('UntrustedHostBUID', this.systemBuid);
      this.log.debug('UntrustedHostBUID sent again on request');
    });
  }

  /** A notification step on its own lockdown client; its failure is logged and waiting goes on. */
  private async withFreshClient(step: (lockdown: LockdownClient) => Promise<void>): Promise<void> {
    let lockdown: LockdownClient | undefined;
    try {
      lockdown = await this.openLockdown();
      await step(lockdown);
    } catch (err) {
      if (this.abort.signal.aborted) throw err;
      this.log.warn({ err }, 'preflight step failed; will retry on the next trust notification');
      if (this.stateValue === 'pairing') this.enter('waiting-for-trust');
    } finally {
      if (lockdown !== undefined) this.closeClient(lockdown);
    }
  }

  private onProxyGone(err: Error): void {
    this.proxy = undefined;
    if (FINAL.has(this.stateValue)) return;
    this.log.warn({ err }, 'the notification proxy is gone; no more trust notifications (device stays listed)');
    this.finish('failed');
  }

  // ── plumbing ─────────────────────────────────────────────────────────────────────────────

  private enqueue(step: () => Promise<void>): void {
    this.work = this.work.then(step).catch((err: unknown) => { this.onStepFailed(err); });
  }

  private onStepFailed(err: unknown): void {
    if (this.abort.signal.aborted || err instanceof PreflightCancelledError) return;
    this.log.warn({ err, state: this.stateValue }, 'preflight failed; the device stays listed');
    this.finish('failed');
  }

  private async storedCredentials(): Promise<SessionCredentials | undefined> {
    let bytes: Buffer;
    try {
      bytes = await this.guard(this.ctx.store.read(this.device.info.serial));
    } catch (err) {
      if (err instanceof PairRecordNotFoundError) return undefined;
      throw err;
    }
    try {
      return sessionCredentials(bytes);
    } catch (err) {
      if (!(err instanceof UnusablePairRecordError)) throw err;
      this.log.warn({ err }, 'the stored pair record is unusable; treating the device as not paired');
      return undefined;
    }
  }

  private async deleteRecord(): Promise<void> {
    try {
      await this.ctx.store.delete(this.device.info.serial);
    } catch (err) {
      if (!(err instanceof PairRecordNotFoundError)) throw err;
    }
  }

  private async openLockdown(): Promise<LockdownClient> {
    const client = await this.guard(
      LockdownClient.connect(this.device, { log: this.log, timeoutMs: this.ctx.timeoutMs }),
      (c) => { c.close(); },
    );
    this.clients.add(client);
    return client;
  }

  private closeClient(client: LockdownClient): void {
    this.clients.delete(client);
    client.close();
  }

  /** `p`, or a rejection as soon as the preflight is cancelled (a late value is disposed of). */
  private guard<T>(p: Promise<T>, dispose?: (value: T) => void): Promise<T> {
    const signal = this.abort.signal;
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => { reject(new PreflightCancelledError('preflight cancelled')); };
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
      p.then(
        (value) => {
          signal.removeEventListener('abort', onAbort);
          if (signal.aborted) dispose?.(value);
          else resolve(value);
        },
        (err: unknown) => {
          signal.removeEventListener('abort', onAbort);
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });
  }

  private enter(state: PreflightState): void {
    if (this.abort.signal.aborted) throw new PreflightCancelledError('preflight cancelled');
    if (FINAL.has(this.stateValue)) throw new PreflightCancelledError(`preflight already ${this.stateValue}`);
    if (this.log.isLevelEnabled('debug')) this.log.debug({ from: this.stateValue, to: state }, 'preflight state');
    this.stateValue = state;
  }

  private finish(state: PreflightState): void {
    if (FINAL.has(this.stateValue)) return;
    this.stateValue = state;
    this.closeAll();
  }

  private closeAll(): void {
    for (const c of this.clients) c.close();
    this.clients.clear();
    const proxy = this.proxy;
    this.proxy = undefined;
    proxy?.close();
  }
}
