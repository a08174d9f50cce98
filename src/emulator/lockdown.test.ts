import plist from 'plist';
import type { PlistObject } from 'plist';
import { describe, expect, it, vi } from 'vitest';
import { TcpFlag } from './codec.js';
import { EmulatedIPhone } from './device.js';
import { HostDriver } from './host-driver.js';
import { binaryFrame } from './host-records.js';
import { ENABLE_WIFI_CONNECTIONS, LockdownResponder, MAX_LOCKDOWN_MESSAGE, NOTIFICATION_PROXY_PORT, NOTIFICATION_SPRINGBOARD_STARTED, WIRELESS_LOCKDOWN_DOMAIN, frameLockdownMessage, parseLockdownMessage, timeIntervalSince1970 } from './lockdown.js';
import { Pairing } from './pairing.js';
import type { PairedHost } from './pairing.js';
import { LOCKDOWN_PORT } from './services.js';

const UDID = '00008030-001A2B3C4D5E802E';

function xmlFrame(message: PlistObject): Buffer {
  return frameLockdownMessage(message);
}

/** A phone with an open lockdownd connection; `send` writes raw bytes, `replies` decodes framed answers. */
function session(): { phone: EmulatedIPhone; send(bytes: Buffer): void; replies(): unknown[]; flags(): number[] } {
  const phone = new EmulatedIPhone();
  const host = new HostDriver(phone);
  host.handshake();
  host.open(LOCKDOWN_PORT, 1);
  let seq = 1;
  let pending = Buffer.alloc(0);
  let lastFlags: number[] = [];
  return {
    phone,
    send(bytes) {
      host.tcp({ sport: 1, dport: LOCKDOWN_PORT, seq, ack: 1, flags: TcpFlag.ACK }, bytes);
      seq += bytes.length;
    },
    replies() {
      const seen = host.take();
      lastFlags = seen.map((p) => p.tcp?.flags ?? -1);
      pending = Buffer.concat([pending, ...seen.map((p) => p.body)]);
      const out: unknown[] = [];
      while (pending.length >= 4 && pending.length >= 4 + pending.readUInt32BE(0)) {
        const length = pending.readUInt32BE(0);
        const body = pending.subarray(4, 4 + length);
        expect(body.subarray(0, 5).toString()).toBe('<?xml'); // replies are XML
        out.push(plist.parse(body.toString('utf8')));
        pending = pending.subarray(4 + length);
      }
      return out;
    },
    flags() {
      return lastFlags;
    },
  };
}

describe('lockdownd over a mux connection', () => {
  it('QueryType (XML request) → lockdown type; Label ignored', () => {
    const s = session();
    s.send(xmlFrame({ Label: 'usbmuxd', Request: 'QueryType' }));
    expect(s.replies()).toEqual([{ Request: 'QueryType', Type: 'com.apple.mobile.lockdown' }]);
  });

  it('GetValue without Key (binary request) → the whole default domain, like ideviceinfo -s', () => {
    const s = session();
    s.send(binaryFrame({ Label: 'ideviceinfo', Request: 'QueryType' }));
    s.send(binaryFrame({ Label: 'ideviceinfo', Request: 'GetValue' }));
    const [type, all] = s.replies() as [unknown, { Value: Record<string, unknown> }];
    expect(type).toMatchObject({ Type: 'com.apple.mobile.lockdown' });
    expect(all.Value).toMatchObject({
      UniqueDeviceID: UDID,
      ProductVersion: '17.5',
      ProductType: 'iPhone15,2',
      DeviceClass: 'iPhone',
      DeviceName: 'Virtual iPhone',
      BuildVersion: '21F79',
      SerialNumber: 'F2LXV0ABCDEF',
      CPUArchitecture: 'arm64e',
      ProductName: 'iPhone OS',
      ActivationState: 'Activated',
    });
    expect(Object.keys(all.Value).length).toBeGreaterThan(15);
  });

  it('GetValue with Key, with Domain, unknown Key and unknown Domain', () => {
    const s = session();
    s.send(xmlFrame({ Request: 'GetValue', Key: 'ProductVersion' }));
    s.send(binaryFrame({ Request: 'GetValue', Key: 'DeviceClass' }));
    s.send(xmlFrame({ Request: 'GetValue', Domain: 'com.apple.mobile.battery', Key: 'BatteryCurrentCapacity' }));
    s.send(xmlFrame({ Request: 'GetValue', Key: 'NoSuchKey' }));
    s.send(xmlFrame({ Request: 'GetValue', Domain: 'com.example.nothing', Key: 'ProductVersion' }));
    expect(s.replies()).toEqual([
      { Request: 'GetValue', Key: 'ProductVersion', Value: '17.5' },
      { Request: 'GetValue', Key: 'DeviceClass', Value: 'iPhone' },
      { Request: 'GetValue', Domain: 'com.apple.mobile.battery', Key: 'BatteryCurrentCapacity', Value: 100 },
      { Request: 'GetValue', Key: 'NoSuchKey', Error: 'MissingValue' },
      { Request: 'GetValue', Domain: 'com.example.nothing', Key: 'ProductVersion', Error: 'MissingValue' },
    ]);
  });

  it('pairing-related requests without their fields fail clearly instead of hanging', () => {
    const s = session();
    for (const request of ['StartSession', 'Pair', 'ValidatePair', 'StartService', 'StopSession', 'Frobnicate']) s.send(xmlFrame({ Request: request }));
    s.send(xmlFrame({ Label: 'x' }));
    expect(s.replies()).toEqual([
      { Request: 'StartSession', Error: 'MissingHostID' },
      { Request: 'Pair', Error: 'InvalidPairRecord' },
      { Request: 'ValidatePair', Error: 'InvalidPairRecord' },
      { Request: 'StartService', Error: 'InvalidService' },
      { Request: 'StopSession', Error: 'SessionInactive' },
      { Request: 'Frobnicate', Error: 'InvalidRequest' },
      { Error: 'MissingRequest' },
    ]);
  });

  it('frames split at every byte offset and several per segment', () => {
    const two = Buffer.concat([xmlFrame({ Request: 'QueryType' }), binaryFrame({ Request: 'GetValue', Key: 'DeviceName' })]);
    for (let at = 0; at <= two.length; at += 7) {
      const s = session();
      s.send(two.subarray(0, at));
      s.send(two.subarray(at));
      expect(s.replies(), `split at ${at}`).toEqual([
        { Request: 'QueryType', Type: 'com.apple.mobile.lockdown' },
        { Request: 'GetValue', Key: 'DeviceName', Value: 'Virtual iPhone' },
      ]);
    }
  });

  it('an oversized frame resets the connection', () => {
    const s = session();
    const header = Buffer.alloc(4);
    header.writeUInt32BE(MAX_LOCKDOWN_MESSAGE + 1, 0);
    s.send(header);
    expect(s.replies()).toEqual([]);
    expect(s.flags()).toEqual([TcpFlag.RST]);
    expect(s.phone.openConnections).toHaveLength(0);
  });

  it('an unparseable plist resets the connection', () => {
    const s = session();
    const junk = Buffer.from('<plist>not really');
    const frame = Buffer.alloc(4 + junk.length);
    frame.writeUInt32BE(junk.length, 0);
    junk.copy(frame, 4);
    s.send(frame);
    expect(s.replies()).toEqual([]);
    expect(s.flags()).toEqual([TcpFlag.RST]);
  });

  it('SetValue UntrustedHostBUID is remembered; other SetValue fails', () => {
    const responder = new LockdownResponder({ udid: UDID });
    expect(responder.answer({ Request: 'SetValue', Key: 'UntrustedHostBUID', Value: 'BUID-1' })).toEqual({ Request: 'SetValue', Key: 'UntrustedHostBUID' });
    expect(responder.untrustedHostBuid).toBe('BUID-1');
    expect(responder.answer({ Request: 'SetValue', Key: 'DeviceName', Value: 'x' })).toEqual({ Request: 'SetValue', Error: 'SessionInactive' });
  });

  it('EnableWifiConnections (wireless_lockdown): off at first, set in a session only, booleans only, kept by the pairing', () => {
    const pairing = new Pairing();
    const changes: boolean[] = [];
    pairing.onIdentityChange(() => changes.push(pairing.wifiConnections));
    const responder = new LockdownResponder({ udid: UDID, pairing });
    const get = (key?: string): PlistObject => responder.answer({ Request: 'GetValue', Domain: WIRELESS_LOCKDOWN_DOMAIN, ...(key === undefined ? {} : { Key: key }) });
    expect(get(ENABLE_WIFI_CONNECTIONS)).toEqual({ Request: 'GetValue', Domain: WIRELESS_LOCKDOWN_DOMAIN, Key: ENABLE_WIFI_CONNECTIONS, Value: false });
    expect(get()['Value']).toEqual({ EnableWifiConnections: false, EnableWifiDebugging: false, SupportsWifi: true, SupportsWifiSyncing: true });
    const set = (value: unknown, inSession = true): PlistObject =>
      responder.answer({ Request: 'SetValue', Domain: WIRELESS_LOCKDOWN_DOMAIN, Key: ENABLE_WIFI_CONNECTIONS, Value: value }, inSession ? { sessionId: 'S', host: {} as never } : undefined);
    expect(set(true, false)).toEqual({ Request: 'SetValue', Error: 'SessionInactive' });
    expect(set('yes')).toEqual({ Request: 'SetValue', Error: 'MissingValue' });
    expect(pairing.wifiConnections).toBe(false);
    expect(set(true)).toEqual({ Request: 'SetValue', Key: ENABLE_WIFI_CONNECTIONS });
    expect(pairing.wifiConnections).toBe(true);
    expect(get(ENABLE_WIFI_CONNECTIONS)['Value']).toBe(true);
    expect(set(true)).toEqual({ Request: 'SetValue', Key: ENABLE_WIFI_CONNECTIONS }); // no change: nobody told
    expect(set(false)).toEqual({ Request: 'SetValue', Key: ENABLE_WIFI_CONNECTIONS });
    expect(changes).toEqual([true, false]);
    // the same phone's other lockdown (its network face) answers the same
    expect(new LockdownResponder({ udid: UDID, pairing: new Pairing({}, { wifiConnections: true }) }).answer({ Request: 'GetValue', Domain: WIRELESS_LOCKDOWN_DOMAIN, Key: ENABLE_WIFI_CONNECTIONS })['Value']).toBe(true);
  });

  it('custom values override the defaults', () => {
    const responder = new LockdownResponder({ udid: 'U', values: { ProductVersion: '18.0' } });
    expect(responder.answer({ Request: 'GetValue', Key: 'ProductVersion' })).toMatchObject({ Value: '18.0' });
    expect(responder.answer({ Request: 'GetValue', Key: 'UniqueDeviceID' })).toMatchObject({ Value: 'U' });
  });

  it('parseLockdownMessage refuses a 164-byte binary reference bomb (2^24 values) at once, without expanding it', () => {
    // 24 arrays, each holding the next one twice, down to the string "x" (the daemon's plist guard).
    const bomb = Buffer.from(
      '62706c6973743030' + Array.from({ length: 24 }, (_, i) => `a2${(i + 1).toString(16).padStart(2, '0').repeat(2)}`).join('') + '5178' +
        Array.from({ length: 25 }, (_, i) => (8 + 3 * i).toString(16).padStart(4, '0')).join('') +
        '000000000000020100000000000000190000000000000000' + (8 + 3 * 24 + 2).toString(16).padStart(16, '0'),
      'hex',
    );
    expect(bomb.length).toBe(164);
    // Expanded by bare bplist-parser it takes far longer than this test's timeout (a 154-byte one
    // stalled a --virtual-device daemon for 10 s); the guard refuses it from its offset table.
    expect(parseLockdownMessage(bomb)).toBeUndefined();
  });

  it('parseLockdownMessage rejects non-dictionaries', () => {
    expect(parseLockdownMessage(Buffer.from(plist.build(['a'])))).toBeUndefined();
    expect(parseLockdownMessage(Buffer.from('bplist00garbage'))).toBeUndefined();
    expect(parseLockdownMessage(Buffer.from(plist.build({ Request: 'QueryType' })))).toEqual({ Request: 'QueryType' });
  });
});

describe('lockdownd pairing requests over a mux connection', () => {
  it('GetValue DevicePublicKey: the PKCS#1 PEM of the phone key as data, the same every time', () => {
    const s = session();
    s.send(xmlFrame({ Request: 'GetValue', Key: 'DevicePublicKey' }));
    s.send(binaryFrame({ Request: 'GetValue', Key: 'DevicePublicKey' }));
    const [a, b] = s.replies() as [{ Value: Buffer }, { Value: Buffer }];
    expect(Buffer.isBuffer(a.Value)).toBe(true);
    expect(a.Value.toString('latin1')).toMatch(/^-----BEGIN RSA PUBLIC KEY-----\n[\s\S]+-----END RSA PUBLIC KEY-----\n$/);
    expect(b.Value.equals(a.Value)).toBe(true);
    expect(a.Value.toString('latin1')).toBe(s.phone.pairing.deviceKey.publicPem);
  });

  it('StartService: the insecure notification proxy without a session; anything else InvalidService (the minimal catalog has no afc)', () => {
    const s = session();
    s.send(xmlFrame({ Request: 'StartService', Service: 'com.apple.mobile.insecure_notification_proxy' }));
    s.send(xmlFrame({ Request: 'StartService', Service: 'com.apple.mobile.notification_proxy' }));
    s.send(xmlFrame({ Request: 'StartService', Service: 'com.apple.afc' }));
    expect(s.replies()).toEqual([
      { Request: 'StartService', Service: 'com.apple.mobile.insecure_notification_proxy', Port: NOTIFICATION_PROXY_PORT, EnableServiceSSL: false },
      { Request: 'StartService', Service: 'com.apple.mobile.notification_proxy', Error: 'InvalidService' },
      { Request: 'StartService', Service: 'com.apple.afc', Error: 'InvalidService' },
    ]);
  });

  it('SetValue UntrustedHostBUID is kept by the pairing; StartSession for an unknown HostID: InvalidHostID', () => {
    const s = session();
    s.send(xmlFrame({ Request: 'SetValue', Key: 'UntrustedHostBUID', Value: 'B' }));
    s.send(xmlFrame({ Request: 'StartSession', HostID: 'NOPE', SystemBUID: 'B' }));
    expect(s.replies()).toEqual([{ Request: 'SetValue', Key: 'UntrustedHostBUID' }, { Request: 'StartSession', Error: 'InvalidHostID' }]);
    expect(s.phone.pairing.untrustedHostBuid).toBe('B');
  });
});

describe('lockdown values clients read (issue 16)', () => {
  const ask = (request: Record<string, unknown>, now = 1_767_225_600_250): Record<string, unknown> =>
    new LockdownResponder({ udid: '00008030-001A2B3C4D5E802E', now: () => now }).answer({ Request: 'GetValue', ...request });

  it('TimeIntervalSince1970 is the clock now, in seconds, always a real (idevicedate, go-ios date)', () => {
    expect(ask({ Key: 'TimeIntervalSince1970' })['Value']).toBe(1_767_225_600.25);
    expect(ask({ Key: 'TimeIntervalSince1970' }, 1_767_225_600_000)['Value']).toBe(1_767_225_600.000001);
    expect((ask({}) as { Value: Record<string, unknown> }).Value['TimeIntervalSince1970']).toBe(1_767_225_600.25);
    expect(timeIntervalSince1970(5000)).not.toSatisfy(Number.isInteger);
  });

  it('the domains go-ios lang/batterycheck, pymobiledevice3 and tidevice ask for', () => {
    expect(ask({ Domain: 'com.apple.international', Key: 'Language' })['Value']).toBe('en');
    expect(ask({ Domain: 'com.apple.international', Key: 'Locale' })['Value']).toBe('en_US');
    expect(ask({ Domain: 'com.apple.international', Key: 'SupportedLocales' })['Value']).toContain('en_US');
    for (const key of ['BatteryCurrentCapacity', 'BatteryIsCharging', 'ExternalChargeCapable', 'ExternalConnected', 'FullyCharged', 'GasGaugeCapability', 'HasBattery']) {
      expect(ask({ Domain: 'com.apple.mobile.battery', Key: key })['Value'], key).toBeDefined();
    }
    expect(ask({ Domain: 'com.apple.security.mac.amfi', Key: 'DeveloperModeStatus' })['Value']).toBe(true);
    expect(ask({ Domain: 'com.apple.mobile.wireless_lockdown', Key: 'EnableWifiConnections' })['Value']).toBe(false);
  });
});

describe('a language change restarts SpringBoard', () => {
  it('finishedstartup is relayed springboardRestartMs after SetValue Language (go-ios lang --setlang waits for it)', () => {
    vi.useFakeTimers();
    try {
      const pairing = new Pairing();
      const responder = new LockdownResponder({ udid: UDID, pairing, springboardRestartMs: 200 });
      const seen: string[] = [];
      pairing.observe((name) => {
        seen.push(name);
        return true;
      });
      const inSession = { sessionId: 'S', host: {} as PairedHost };
      const set = (key: string, value: string): Record<string, unknown> => responder.answer({ Request: 'SetValue', Domain: 'com.apple.international', Key: key, Value: value }, inSession);
      expect(set('Language', 'en')).toEqual({ Request: 'SetValue', Key: 'Language' }); // unchanged: no restart
      expect(set('Locale', 'de_DE')).toEqual({ Request: 'SetValue', Key: 'Locale' });
      vi.advanceTimersByTime(1000);
      expect(seen).toEqual([]);
      set('Language', 'de');
      vi.advanceTimersByTime(199);
      expect(seen).toEqual([]);
      vi.advanceTimersByTime(1);
      expect(seen).toEqual([NOTIFICATION_SPRINGBOARD_STARTED]);
      expect(responder.answer({ Request: 'GetValue', Domain: 'com.apple.international', Key: 'Language' })['Value']).toBe('de');
    } finally {
      vi.useRealTimers();
    }
  });
});
