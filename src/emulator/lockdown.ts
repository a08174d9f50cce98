/**
 * lockdownd's request → reply logic and its message codec (framing and the per-connection
 * PLAIN / TLS state machine live in lockdown-session.ts).
 *
 * Framing: each message is a 4-byte BIG-endian length, then a property list. Requests may be XML
 * or binary (`bplist00`); replies are XML.
 *
 * Answers (lockdownd-like; `Label` is ignored, `Request` is echoed, failures carry `Error`):
 *
 *   QueryType                  → Type "com.apple.mobile.lockdown"
 *   GetValue [Domain] [Key]    → Value (the whole domain when no Key); unknown Key or Domain:
 *                                Error "MissingValue". Key DevicePublicKey: the phone's RSA public
 *                                key, PKCS#1 PEM as data; TimeIntervalSince1970 is the clock's now
 *   SetValue UntrustedHostBUID → accepted (remembered by the pairing); other SetValue: accepted
 *                                inside a session, Error "SessionInactive" outside. A new
 *                                com.apple.international Language restarts SpringBoard: its
 *                                finishedstartup notification follows springboardRestartMs later
 *                                (go-ios lang --setlang waits for it)
 *   com.apple.mobile.wireless_lockdown
 *                              → EnableWifiConnections is the pairing's Wi-Fi switch (kept with the
 *                                phone's identity; the network face advertises only while it is
 *                                on); SetValue of it takes a boolean only ("MissingValue" otherwise)
 *   Pair, ValidatePair, Unpair → pairing.ts (trust dialog, shape checks; Unpair forgets the host)
 *   StartSession HostID        → SessionID + EnableSessionSSL true (the connection turns to TLS);
 *                                unknown host: "InvalidHostID"; already in one: "SessionActive"
 *   StopSession                → success in a session (back to plain text), else "SessionInactive"
 *   StartService Service       → Port and EnableServiceSSL of a service in the phone's
 *                                ServiceCatalog, inside a session (the insecure notification
 *                                proxy also without one); anything else "InvalidService"
 *   Goodbye                    → Result "Success"
 *   no Request key             → Error "MissingRequest"; any other Request: Error "InvalidRequest"
 */
import type { PlistObject, PlistValue } from 'plist';
import type { PairedHost } from './pairing.js';
import { Pairing } from './pairing.js';
import { ServiceCatalog } from './service-catalog.js';
import { buildXml, isPlistDict, parsePlist, PlistParseError } from '../plist/index.js';

/** Largest lockdown message body accepted before the connection is reset. */
export const MAX_LOCKDOWN_MESSAGE = 1024 * 1024;
export const LOCKDOWN_TYPE = 'com.apple.mobile.lockdown';

export const NOTIFICATION_PROXY_SERVICE = 'com.apple.mobile.insecure_notification_proxy';
/** The secure notification proxy (only inside a session); served by the same service. */
export const SECURE_NOTIFICATION_PROXY_SERVICE = 'com.apple.mobile.notification_proxy';
/** The lockdown domain of the phone's Wi-Fi settings (wifi-devices.md §1.5). */
export const WIRELESS_LOCKDOWN_DOMAIN = 'com.apple.mobile.wireless_lockdown';
export const ENABLE_WIFI_CONNECTIONS = 'EnableWifiConnections';

/** Where the phone serves the notification proxy (real phones pick a fresh port per StartService). */
export const NOTIFICATION_PROXY_PORT = 49_152;

export interface LockdownOptions {
  readonly udid: string;
  /** Replace or add values in the default (no) domain. */
  readonly values?: PlistObject;
  /** The phone's pairing state (default: a fresh one in 'auto' mode). */
  readonly pairing?: Pairing;
  /** What StartService can start (default: {@link coreServiceCatalog}, the notification proxy). */
  readonly catalog?: ServiceCatalog;
  /** The phone's clock in ms since 1970 (TimeIntervalSince1970). Default Date.now. */
  readonly now?: () => number;
  /** How long SpringBoard takes to restart after a language change. Default 1500 ms. */
  readonly springboardRestartMs?: number;
}

/** What SpringBoard posts when it has (re)started. */
export const NOTIFICATION_SPRINGBOARD_STARTED = 'com.apple.springboard.finishedstartup';

/** A catalog with the services every phone has: the two notification proxies (plain text). */
export function coreServiceCatalog(): ServiceCatalog {
  const catalog = new ServiceCatalog();
  catalog.register({ name: NOTIFICATION_PROXY_SERVICE, port: NOTIFICATION_PROXY_PORT, ssl: false, withoutSession: true });
  catalog.register({ name: SECURE_NOTIFICATION_PROXY_SERVICE, port: NOTIFICATION_PROXY_PORT, ssl: false });
  return catalog;
}

/** A lockdown session on one connection (after StartSession). */
export interface LockdownSession {
  readonly sessionId: string;
  readonly host: PairedHost;
}

/** Values of the default domain for a phone with this UDID. */
export function defaultLockdownValues(udid: string): PlistObject {
  return {
    UniqueDeviceID: udid,
    DeviceName: 'Virtual iPhone',
    DeviceClass: 'iPhone',
    ProductType: 'iPhone15,2',
    ProductName: 'iPhone OS',
    ProductVersion: '17.5',
    BuildVersion: '21F79',
    SerialNumber: 'F2LXV0ABCDEF',
    HardwareModel: 'D73AP',
    ModelNumber: 'MQ0G3',
    RegionInfo: 'ZD/A',
    CPUArchitecture: 'arm64e',
    ChipID: 0x8120,
    BoardId: 12,
    UniqueChipID: 0x1a2b3c4d5e802e,
    WiFiAddress: 'a4:c3:f0:12:34:56',
    BluetoothAddress: 'a4:c3:f0:12:34:57',
    EthernetAddress: 'a4:c3:f0:12:34:58',
    ActivationState: 'Activated',
    PasswordProtected: false,
    HostAttached: true,
    TelephonyCapability: true,
    TimeZone: 'Europe/Berlin',
    TimeZoneOffsetFromUTC: 3600,
    Uses24HourClock: true,
    DeviceColor: '1',
    FirmwareVersion: 'iBoot-10151.122.1',
    ProtocolVersion: '2',
    HardwarePlatform: 't8120',
    SupportedDeviceFamilies: [1],
    ProductionSOC: true,
    TrustedHostAttached: true,
    BrickState: false,
    ActivationStateAcknowledged: true,
    BasebandVersion: '2.60.02',
    SIMStatus: 'kCTSIMSupportSIMStatusReady',
    PhoneNumber: '+1 (555) 010-0100',
  };
}

/**
 * The other domains clients read: battery (go-ios batterycheck), international (go-ios lang,
 * pymobiledevice3 lockdown language/locale), amfi (developer mode: tidevice and pymobiledevice3
 * ask before using developer services), accessibility switches, Wi-Fi lockdown, backup.
 */
export function defaultLockdownDomains(): Record<string, Record<string, PlistValue>> {
  return {
    'com.apple.mobile.battery': {
      BatteryCurrentCapacity: 100,
      BatteryIsCharging: false,
      ExternalChargeCapable: true,
      ExternalConnected: true,
      FullyCharged: true,
      GasGaugeCapability: true,
      HasBattery: true,
    },
    'com.apple.disk_usage': { TotalDiskCapacity: 128_000_000_000, TotalDataCapacity: 110_000_000_000, TotalDataAvailable: 64_000_000_000 },
    'com.apple.PurpleBuddy': { SetupDone: true },
    'com.apple.international': {
      Language: 'en',
      Locale: 'en_US',
      Keyboard: 'en_US',
      SupportedLanguages: ['en', 'de', 'fr', 'ja', 'zh-Hans'],
      SupportedLocales: ['en_US', 'en_GB', 'de_DE', 'fr_FR', 'ja_JP', 'zh_CN'],
    },
    // Developer mode on: with it off, tidevice's developer services try to enable it through
    // com.apple.amfi.lockdown, which this phone does not serve (tidevice then recursed forever).
    'com.apple.security.mac.amfi': { DeveloperModeStatus: true },
    'com.apple.Accessibility': {
      AssistiveTouchEnabledByiTunes: false,
      VoiceOverTouchEnabledByiTunes: false,
      InvertDisplayEnabledByiTunes: false,
      ZoomTouchEnabledByiTunes: false,
    },
    // EnableWifiConnections is not stored here: it lives in the pairing (see getValue/setValue).
    'com.apple.mobile.wireless_lockdown': { EnableWifiDebugging: false, SupportsWifi: true, SupportsWifiSyncing: true },
    'com.apple.mobile.backup': { WillEncrypt: false },
  };
}

/**
 * Seconds since 1970 as a plist real: a real phone sends a real, and clients that decode it into a
 * float (go-ios) refuse an integer, so a whole second is nudged off the integer by a microsecond.
 */
export function timeIntervalSince1970(ms: number): number {
  const seconds = ms / 1000;
  return Number.isInteger(seconds) ? seconds + 1e-6 : seconds;
}

function isPlistValue(value: unknown): value is PlistValue {
  return value !== undefined && value !== null;
}

/** Parse one message body (XML or binary); undefined when it is not a plist dictionary. */
export function parseLockdownMessage(body: Buffer): Record<string, unknown> | undefined {
  // The daemon's guarded reader: a binary plist whose shared references expand exponentially, or a
  // hostile XML one, costs no more than its size (the bare parsers stalled the in-process phone for
  // seconds on a 154-byte message, and xmldom printed to stderr).
  try {
    const value = parsePlist(body);
    return isPlistDict(value) ? value : undefined;
  } catch (err) {
    if (err instanceof PlistParseError) return undefined; // unparseable: the caller resets the connection
    throw err;
  }
}

/** One framed XML message: 4-byte BE length, then the plist. */
export function frameLockdownMessage(message: PlistObject): Buffer {
  return lengthPrefixed(buildXml(message));
}

/** A lockdown frame around `body`: its 4-byte big-endian length, then the body. */
export function lengthPrefixed(body: Buffer): Buffer {
  const frame = Buffer.allocUnsafe(4 + body.length);
  frame.writeUInt32BE(body.length, 0);
  body.copy(frame, 4);
  return frame;
}

/** The phone's lockdownd: pure request → reply logic, separate from framing for testing. */
export class LockdownResponder {
  private readonly domains: Map<string, Record<string, PlistValue>>;
  readonly pairing: Pairing;
  readonly catalog: ServiceCatalog;
  private readonly now: () => number;
  private readonly springboardRestartMs: number;
  /** SpringBoard-started relays that threw in their timer (for tests; never thrown on). */
  springboardRelayFailures = 0;

  constructor(options: LockdownOptions) {
    this.pairing = options.pairing ?? new Pairing();
    this.springboardRestartMs = options.springboardRestartMs ?? 1500;
    this.catalog = options.catalog ?? coreServiceCatalog();
    this.now = options.now ?? Date.now;
    this.domains = new Map<string, Record<string, PlistValue>>([
      ['', { ...defaultLockdownValues(options.udid), ...options.values }],
      ...Object.entries(defaultLockdownDomains()),
    ]);
  }

  /** Last UntrustedHostBUID a host set (preflight does this), for tests to check. */
  get untrustedHostBuid(): string | undefined {
    return this.pairing.untrustedHostBuid;
  }

  /**
   * The reply to one request. `session` is the connection's current session; a StartSession reply
   * with `EnableSessionSSL` carries the new one in {@link startedSession} for the caller.
   */
  answer(request: Record<string, unknown>, session?: LockdownSession): PlistObject {
    this.startedSession = undefined;
    const name = request['Request'];
    if (typeof name !== 'string') return { Error: 'MissingRequest' };
    switch (name) {
      case 'QueryType':
        return { Request: name, Type: LOCKDOWN_TYPE };
      case 'GetValue':
        return this.getValue(request);
      case 'SetValue':
        return this.setValue(request, session !== undefined);
      case 'Pair':
        return this.pairing.pair(request);
      case 'ValidatePair':
        return this.pairing.validatePair(request);
      case 'Unpair':
        return this.pairing.unpair(request);
      case 'StartSession':
        return this.startSession(request, session);
      case 'StopSession':
        return session === undefined ? { Request: name, Error: 'SessionInactive' } : { Request: name };
      case 'StartService':
        return this.startService(request, session);
      case 'Goodbye':
        return { Request: name, Result: 'Success' };
      default:
        return { Request: name, Error: 'InvalidRequest' };
    }
  }

  /** Set by answer() when the reply starts a session (EnableSessionSSL); cleared on every call. */
  startedSession: LockdownSession | undefined;

  private startSession(request: Record<string, unknown>, session: LockdownSession | undefined): PlistObject {
    if (session !== undefined) return { Request: 'StartSession', Error: 'SessionActive' };
    const started = this.pairing.startSession(request['HostID']);
    if (typeof started === 'string') return { Request: 'StartSession', Error: started };
    this.startedSession = started;
    return { Request: 'StartSession', SessionID: started.sessionId, EnableSessionSSL: true };
  }

  private startService(request: Record<string, unknown>, session: LockdownSession | undefined): PlistObject {
    const service = request['Service'];
    const echo: Record<string, PlistValue> = { Request: 'StartService' };
    if (typeof service === 'string') echo['Service'] = service;
    const entry = typeof service === 'string' ? this.catalog.lookup(service) : undefined;
    if (entry === undefined || (session === undefined && entry.withoutSession !== true)) return { ...echo, Error: 'InvalidService' };
    if (entry.ssl) {
      // The service's TLS identity is this host's; without a session there is no host to be.
      if (session === undefined) return { ...echo, Error: 'InvalidService' };
      this.catalog.expectHost(entry.port, session.host);
    }
    return { ...echo, Port: entry.port, EnableServiceSSL: entry.ssl };
  }

  private getValue(request: Record<string, unknown>): PlistObject {
    const domainName = request['Domain'];
    const key = request['Key'];
    const echo: Record<string, PlistValue> = { Request: 'GetValue' };
    if (typeof domainName === 'string') echo['Domain'] = domainName;
    if (typeof key === 'string') echo['Key'] = key;
    const stored = this.domains.get(typeof domainName === 'string' ? domainName : '');
    if (stored === undefined) return { ...echo, Error: 'MissingValue' };
    const isDefault = stored === this.domains.get('');
    // EnableWifiConnections lives with the pairing (the phone's identity), not in this table.
    const domain = domainName === WIRELESS_LOCKDOWN_DOMAIN ? { ...stored, [ENABLE_WIFI_CONNECTIONS]: this.pairing.wifiConnections } : stored;
    if (typeof key !== 'string') return { ...echo, Value: isDefault ? { ...domain, TimeIntervalSince1970: this.clock() } : domain };
    if (key === 'DevicePublicKey' && isDefault) {
      return { ...echo, Value: Buffer.from(this.pairing.deviceKey.publicPem, 'latin1') };
    }
    if (key === 'TimeIntervalSince1970' && isDefault) return { ...echo, Value: this.clock() };
    const value = domain[key];
    return value === undefined ? { ...echo, Error: 'MissingValue' } : { ...echo, Value: value };
  }

  private restartSpringboard(): void {
    const timer = setTimeout(() => {
      try {
        this.pairing.notify(NOTIFICATION_SPRINGBOARD_STARTED);
      } catch {
        // A relay that throws has already lost its connection; the restart itself is done.
        this.springboardRelayFailures++;
      }
    }, this.springboardRestartMs);
    timer.unref();
  }

  private clock(): number {
    return timeIntervalSince1970(this.now());
  }

  private setValue(request: Record<string, unknown>, inSession: boolean): PlistObject {
    const key = request['Key'];
    const value = request['Value'];
    const domainName = request['Domain'];
    if (key === 'UntrustedHostBUID' && domainName === undefined && typeof value === 'string') {
      this.pairing.untrustedHostBuid = value;
      return { Request: 'SetValue', Key: key };
    }
    if (!inSession) return { Request: 'SetValue', Error: 'SessionInactive' };
    const domain = this.domains.get(typeof domainName === 'string' ? domainName : '');
    if (typeof key !== 'string' || domain === undefined || !isPlistValue(value)) return { Request: 'SetValue', Error: 'MissingValue' };
    if (domainName === 'com.apple.international' && key === 'Language' && domain[key] !== value) this.restartSpringboard();
    if (domainName === WIRELESS_LOCKDOWN_DOMAIN && key === ENABLE_WIFI_CONNECTIONS) {
      if (typeof value !== 'boolean') return { Request: 'SetValue', Error: 'MissingValue' };
      this.pairing.setWifiConnections(value);
      return { Request: 'SetValue', Key: key };
    }
    domain[key] = value;
    return { Request: 'SetValue', Key: key };
  }
}
