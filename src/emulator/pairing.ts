/**
 * The phone's pairing state: its RSA key, the hosts it trusts, and the "Trust This Computer?"
 * dialog. Lockdown asks it; tests drive it (`emulator.pairing.tapTrust()` ...).
 *
 * The trust dialog (one per phone):
 *
 *              Pair from an unknown host            tapTrust(): relay request_pair
 *   [ NONE ] -----------------------------> [ PENDING ] ---------------------------> [ TRUSTED ]
 *      ^        (answer PairingDialog-            |                                     |
 *      |         ResponsePending)                  | tapDontTrust()                      | the next valid Pair
 *      |                                           v                                     | succeeds (host stored)
 *      |                                      [ DENIED ]  Pair → UserDeniedPairing        |
 *      +--------------------------------------------------------------------------------+
 *
 * Trust modes (EmulatorOptions.trust.mode):
 *   setup    the phone is still in setup: a valid Pair succeeds at once; the dialog never shows
 *   auto     (default) the dialog shows; autoTapMs later the "user" taps Trust
 *   wait     the dialog shows; nobody taps until a test calls tapTrust() / tapDontTrust()
 *   deny     the dialog shows; autoTapMs later the user taps Don't Trust (no notification)
 *   password Pair answers PasswordProtected until unlock(); a host that tried meanwhile gets the
 *            dialog at unlock (as a phone shows it once unlocked), then as auto
 *
 * Pair from a host that is already paired succeeds at once (the record is replaced). A Pair that
 * is not well formed is answered InvalidPairRecord in every state and never shows the dialog.
 *
 * What the phone remembers between plugs (its key, the hosts it trusts, and Settings' "Show this
 * iPhone when on Wi-Fi", lockdown's EnableWifiConnections) is its identity; whoever keeps it (the
 * USB bridge's state file) or acts on it (the network face's advert) subscribes with
 * {@link Pairing.onIdentityChange}.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { PlistObject } from 'plist';
import { INVALID_PAIR_RECORD, checkPairRequest, generateDeviceKey, generateDeviceKeyAsync, validatePairFields } from './pair-request.js';
import type { DeviceKey } from './pair-request.js';

export type TrustMode = 'auto' | 'wait' | 'deny' | 'password' | 'setup';
export const TRUST_MODES: readonly TrustMode[] = ['auto', 'wait', 'deny', 'password', 'setup'];
export type DialogState = 'NONE' | 'PENDING' | 'TRUSTED' | 'DENIED';

export interface TrustOptions {
  readonly mode?: TrustMode;
  /** Delay before the simulated user taps (auto, deny, password after unlock). Default 300 ms. */
  readonly autoTapMs?: number;
}

export const DEFAULT_AUTO_TAP_MS = 300;

/** Lockdown's notification names the phone relays on the notification proxy. */
export const NOTIFICATION_REQUEST_PAIR = 'com.apple.mobile.lockdown.request_pair';
export const NOTIFICATION_REQUEST_HOST_BUID = 'com.apple.mobile.lockdown.request_host_buid';

export function isTrustMode(value: string): value is TrustMode {
  return (TRUST_MODES as readonly string[]).includes(value);
}

export interface PairingStats {
  pairRequests: number;
  pairSuccesses: number;
  sessionsStarted: number;
  tlsHandshakes: number;
  tlsFailures: number;
  notificationsSent: number;
}

/** A host the phone trusts. */
export interface PairedHost {
  readonly hostId: string;
  readonly systemBuid: string;
  /** DER. */
  readonly hostCertificate: Buffer;
  /** DER. */
  readonly rootCertificate: Buffer;
  readonly deviceCertificatePem: string;
  readonly escrowBag: Buffer;
  /** False after invalidateSessionCertificates(): the next TLS handshake fails. */
  sessionCertificatesValid: boolean;
}

/** What a phone remembers between plugs: its key, the hosts it trusts, and its Wi-Fi switch. */
export interface PhoneIdentity {
  readonly deviceKey?: DeviceKey;
  readonly hosts?: readonly PairedHost[];
  /**
   * lockdown's `EnableWifiConnections` (domain com.apple.mobile.wireless_lockdown): whether the
   * phone serves hosts over Wi-Fi and advertises `_apple-mobdev2._tcp`. Off unless set (a new
   * phone's default: Finder's "Show this iPhone when on Wi-Fi" starts unticked).
   */
  readonly wifiConnections?: boolean;
}

/** What happened, for logs (the bridge logs each one): dialog changes, Pair answers, sessions. */
export type PairingEvent =
  | { readonly kind: 'dialog'; readonly state: DialogState }
  | { readonly kind: 'pair'; readonly hostId: string; readonly error: string | undefined }
  | { readonly kind: 'session'; readonly hostId: string };

/** Someone observing notifications (a notification proxy connection); returns whether it relayed it. */
export type NotificationObserver = (name: string) => boolean;

export class Pairing {
  readonly mode: TrustMode;
  readonly autoTapMs: number;
  readonly stats: PairingStats = { pairRequests: 0, pairSuccesses: 0, sessionsStarted: 0, tlsHandshakes: 0, tlsFailures: 0, notificationsSent: 0 };
  /** Last UntrustedHostBUID a host set (SetValue), if any. */
  untrustedHostBuid: string | undefined;
  /** Why the last Pair or ValidatePair was refused as malformed (for tests and logs). */
  lastRejection: string | undefined;
  /** Called on every {@link PairingEvent} (one listener: the bridge's log). */
  onEvent: ((event: PairingEvent) => void) | undefined;

  private dialogValue: DialogState = 'NONE';
  private lockedValue: boolean;
  private key: DeviceKey | undefined;
  private keyPromise: Promise<DeviceKey> | undefined;
  /** A Pair was refused with PasswordProtected: unlocking shows the dialog. */
  private pairTriedWhileLocked = false;
  private readonly hosts = new Map<string, PairedHost>();
  private readonly observers = new Set<NotificationObserver>();
  private readonly identityListeners = new Set<() => void>();
  private wifiConnectionsValue: boolean;
  private tapTimer: NodeJS.Timeout | undefined;

  /**
   * `identity` gives the phone a key and trusted hosts it already has: a phone that stays the same
   * across bridge processes (pairing-state.ts), or one key shared by tests (RSA generation is slow).
   */
  constructor(options: TrustOptions = {}, identity: PhoneIdentity = {}) {
    this.key = identity.deviceKey;
    for (const host of identity.hosts ?? []) this.hosts.set(host.hostId, { ...host });
    this.wifiConnectionsValue = identity.wifiConnections ?? false;
    this.mode = options.mode ?? 'auto';
    this.autoTapMs = options.autoTapMs ?? DEFAULT_AUTO_TAP_MS;
    this.lockedValue = this.mode === 'password';
  }

  get dialog(): DialogState {
    return this.dialogValue;
  }

  /** True while a password-mode phone is locked. */
  get locked(): boolean {
    return this.lockedValue;
  }

  /**
   * The phone's key pair. Generated on first use, synchronously, unless {@link prepareKey} has
   * already made it; a host process that serves clients should await prepareKey() first.
   */
  get deviceKey(): DeviceKey {
    this.key ??= generateDeviceKey();
    return this.key;
  }

  /** Make the key off the event loop (once); resolves with it. */
  prepareKey(): Promise<DeviceKey> {
    if (this.key !== undefined) return Promise.resolve(this.key);
    this.keyPromise ??= generateDeviceKeyAsync().then((key) => {
      this.key ??= key; // a synchronous first use in the meantime wins
      return this.key;
    });
    return this.keyPromise;
  }

  // ---- the user ------------------------------------------------------------------------

  /** The user taps Trust. Only meaningful while the dialog shows; returns whether it did anything. */
  tapTrust(): boolean {
    if (this.dialogValue !== 'PENDING') return false;
    this.cancelTap();
    this.setDialog('TRUSTED');
    this.notify(NOTIFICATION_REQUEST_PAIR);
    return true;
  }

  /** The user taps Don't Trust (while the dialog shows). Pair answers UserDeniedPairing from then on. */
  tapDontTrust(): boolean {
    if (this.dialogValue !== 'PENDING') return false;
    this.cancelTap();
    this.setDialog('DENIED');
    return true;
  }

  /**
   * The user enters the passcode (password mode). If a host tried to pair while the phone was
   * locked, the dialog shows now (and autoTapMs later the user taps Trust, relaying request_pair);
   * otherwise the next Pair shows it.
   */
  unlock(): void {
    if (!this.lockedValue) return;
    this.lockedValue = false;
    if (this.pairTriedWhileLocked && this.dialogValue === 'NONE') {
      this.setDialog('PENDING');
      this.scheduleTap();
    }
  }

  /** The phone asks hosts to set UntrustedHostBUID again (relays request_host_buid). */
  requestHostBuid(): void {
    this.notify(NOTIFICATION_REQUEST_HOST_BUID);
  }

  // ---- hosts ---------------------------------------------------------------------------

  isPairedWith(hostId: string): boolean {
    return this.hosts.has(hostId);
  }

  pairedHostIds(): string[] {
    return [...this.hosts.keys()];
  }

  /** Key, trusted hosts (copies) and Wi-Fi switch right now, e.g. to keep them for the next plug. */
  identity(): Required<PhoneIdentity> {
    return { deviceKey: this.deviceKey, hosts: [...this.hosts.values()].map((h) => ({ ...h })), wifiConnections: this.wifiConnectionsValue };
  }

  /**
   * Take the trusted hosts and the Wi-Fi switch of `identity` (the same phone, changed by another
   * process: the USB bridge wrote its state file). The key stays: a phone does not change its key.
   * Listeners hear of it when anything differs.
   */
  adopt(identity: PhoneIdentity): void {
    const hosts = identity.hosts ?? [];
    const before = JSON.stringify([...this.hosts.values()].map(hostFingerprint).sort());
    const after = JSON.stringify(hosts.map(hostFingerprint).sort());
    const wifi = identity.wifiConnections ?? false;
    if (before === after && wifi === this.wifiConnectionsValue) return;
    this.hosts.clear();
    for (const host of hosts) this.hosts.set(host.hostId, { ...host });
    this.wifiConnectionsValue = wifi;
    this.identityChanged();
  }

  /** Forget a host: its StartSession answers InvalidHostID afterwards. */
  forgetHost(hostId: string): boolean {
    const forgotten = this.hosts.delete(hostId);
    if (forgotten) this.identityChanged();
    return forgotten;
  }

  /** Keep the host but make the next TLS handshake of its sessions fail (a stale record). */
  invalidateSessionCertificates(hostId: string): boolean {
    const host = this.hosts.get(hostId);
    if (host === undefined) return false;
    host.sessionCertificatesValid = false;
    this.identityChanged();
    return true;
  }

  // ---- Wi-Fi ---------------------------------------------------------------------------

  /** EnableWifiConnections: whether the phone serves and advertises itself over Wi-Fi. */
  get wifiConnections(): boolean {
    return this.wifiConnectionsValue;
  }

  /** A host set EnableWifiConnections (or the user flipped the switch). */
  setWifiConnections(enabled: boolean): void {
    if (enabled === this.wifiConnectionsValue) return;
    this.wifiConnectionsValue = enabled;
    this.identityChanged();
  }

  /** Be told whenever the identity changes (a host paired or forgotten, the Wi-Fi switch); returns the unsubscribe function. */
  onIdentityChange(listener: () => void): () => void {
    this.identityListeners.add(listener);
    return () => {
      this.identityListeners.delete(listener);
    };
  }

  private identityChanged(): void {
    for (const listener of [...this.identityListeners]) listener();
  }

  /** The trusted host with this HostID, for StartSession. */
  host(hostId: string): PairedHost | undefined {
    return this.hosts.get(hostId);
  }

  // ---- notifications -------------------------------------------------------------------

  /** Subscribe to every notification the phone relays; returns the unsubscribe function. */
  observe(observer: NotificationObserver): () => void {
    this.observers.add(observer);
    return () => {
      this.observers.delete(observer);
    };
  }

  /** Relay `name` to every notification proxy connection observing it (lockdown and tests post). */
  notify(name: string): void {
    for (const observer of [...this.observers]) {
      if (observer(name)) this.stats.notificationsSent++;
    }
  }

  // ---- lockdown requests ---------------------------------------------------------------

  /** Pair: the whole reply (success carries EscrowBag). */
  pair(request: Record<string, unknown>): PlistObject {
    this.stats.pairRequests++;
    const record = checkPairRequest(request, this.deviceKey.publicKey);
    if (typeof record === 'string') {
      this.lastRejection = record;
      return { Request: 'Pair', Error: INVALID_PAIR_RECORD };
    }
    const error = this.pairError(record.hostId);
    this.onEvent?.({ kind: 'pair', hostId: record.hostId, error });
    if (error !== undefined) return { Request: 'Pair', Error: error };
    if (this.dialogValue === 'TRUSTED') this.setDialog('NONE');
    const escrowBag = randomBytes(32);
    this.hosts.set(record.hostId, { ...record, escrowBag, sessionCertificatesValid: true });
    this.stats.pairSuccesses++;
    this.identityChanged();
    return { Request: 'Pair', EscrowBag: escrowBag };
  }

  /** Undefined when this Pair may succeed now; otherwise the lockdown error (dialog side effects). */
  private pairError(hostId: string): string | undefined {
    if (this.hosts.has(hostId) || this.mode === 'setup') return undefined;
    if (this.lockedValue) {
      this.pairTriedWhileLocked = true;
      return 'PasswordProtected';
    }
    switch (this.dialogValue) {
      case 'TRUSTED':
        return undefined;
      case 'DENIED':
        return 'UserDeniedPairing';
      case 'PENDING':
        return 'PairingDialogResponsePending';
      case 'NONE':
        this.setDialog('PENDING');
        this.scheduleTap();
        return 'PairingDialogResponsePending';
    }
  }

  /** ValidatePair: success when the host is trusted (and its certificate, if sent, is the stored one). */
  validatePair(request: Record<string, unknown>): PlistObject {
    const fields = validatePairFields(request);
    if (typeof fields === 'string') {
      this.lastRejection = fields;
      return { Request: 'ValidatePair', Error: INVALID_PAIR_RECORD };
    }
    const host = this.hosts.get(fields.hostId);
    if (host === undefined) return { Request: 'ValidatePair', Error: 'InvalidHostID' };
    if (fields.hostCertificate !== undefined && !fields.hostCertificate.equals(host.hostCertificate)) {
      return { Request: 'ValidatePair', Error: 'InvalidHostID' };
    }
    return { Request: 'ValidatePair' };
  }

  /** Unpair (`idevicepair unpair`): the host named by PairRecord.HostID is forgotten. */
  unpair(request: Record<string, unknown>): PlistObject {
    const fields = validatePairFields(request);
    if (typeof fields === 'string') {
      this.lastRejection = fields;
      return { Request: 'Unpair', Error: INVALID_PAIR_RECORD };
    }
    if (!this.hosts.delete(fields.hostId)) return { Request: 'Unpair', Error: 'InvalidHostID' };
    this.identityChanged();
    return { Request: 'Unpair' };
  }

  /** StartSession: a new SessionID for a trusted host, or an error string. */
  startSession(hostId: unknown): { readonly sessionId: string; readonly host: PairedHost } | string {
    if (typeof hostId !== 'string') return 'MissingHostID';
    const host = this.hosts.get(hostId);
    if (host === undefined) return 'InvalidHostID';
    this.stats.sessionsStarted++;
    this.onEvent?.({ kind: 'session', hostId });
    return { sessionId: randomUUID().toUpperCase(), host };
  }

  private setDialog(state: DialogState): void {
    this.dialogValue = state;
    this.onEvent?.({ kind: 'dialog', state });
  }

  private scheduleTap(): void {
    const tap = this.mode === 'deny' ? 'deny' : this.mode === 'wait' ? undefined : 'trust';
    if (tap === undefined) return;
    this.cancelTap();
    this.tapTimer = setTimeout(() => {
      this.tapTimer = undefined;
      if (tap === 'trust') this.tapTrust();
      else this.tapDontTrust();
    }, this.autoTapMs);
    this.tapTimer.unref();
  }

  private cancelTap(): void {
    if (this.tapTimer !== undefined) clearTimeout(this.tapTimer);
    this.tapTimer = undefined;
  }
}

/** What identifies a stored host, to tell whether an adopted identity changed anything. */
function hostFingerprint(h: PairedHost): string {
  return `${h.hostId}|${h.hostCertificate.toString('base64')}|${String(h.sessionCertificatesValid)}`;
}
