/**
 * Preflight over USB, both daemons against the USB-emulated iPhone in trust mode auto.
 *
 * - Differential proof of the emulator's pairing: Debian's usbmuxd 1.1.1 WITH its own preflight
 *   (libimobiledevice 1.3.0: QueryType, SetValue UntrustedHostBUID, Pair → dialog pending, the
 *   insecure notification proxy, request_pair after the tap, Pair, SavePairRecord). It must pair
 *   after the auto tap: the record appears in its config dir and a listener sees Paired. Needs root
 *   (private mount namespace).
 * - Our daemon's preflight does the same over node-usb, and its record has the reference's keys.
 *
 * Not in MUXD_HW mode (a real phone would need a real tap).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import plist from 'plist';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ideviceIdList, ideviceInfoSession, parseIdeviceInfo } from '../support/clients.js';
import type { RunningDaemon } from '../support/daemon.js';
import { waitForDeviceCount } from '../support/daemon.js';
import { TESTBED_UDID, hardwareMode, startEmulatorBridge, startOurUsbDaemon, startReferenceUsbDaemon, startUsbTestbed, waitFor } from '../support/usb-testbed.js';
import type { EmulatorBridge, UsbTestbed } from '../support/usb-testbed.js';
import { DeviceListener } from './listener.js';

function isDict(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !Buffer.isBuffer(value) && !(value instanceof Date);
}

/** Waits for `<configDir>/<UDID>.plist` to exist and parse (no half-written file). */
async function pairRecordOf(daemon: RunningDaemon, ms: number): Promise<Record<string, unknown>> {
  const file = `${daemon.configDir}/${TESTBED_UDID}.plist`;
  return waitFor(`${daemon.kind}'s pair record`, ms, () => {
    if (!existsSync(file)) return undefined;
    try {
      const parsed: unknown = plist.parse(readFileSync(file, 'utf8'));
      return isDict(parsed) ? parsed : undefined;
    } catch {
      return undefined;
    }
  });
}

/** Key names of the reference's record, filled in by its test for ours to compare with. */
let referenceRecordKeys: string[] | undefined;

/** Start a bridge with extra environment (bridge-cli reads MUXD_EMU_STATE and MUXD_EMU_TRUST). */
async function bridgeWith(testbed: UsbTestbed, env: Readonly<Record<string, string>>): Promise<EmulatorBridge> {
  const keys = Object.keys(env);
  for (const k of keys) process.env[k] = env[k];
  try {
    return await startEmulatorBridge(testbed);
  } finally {
    for (const k of keys) Reflect.deleteProperty(process.env, k);
  }
}

/** Start a bridge whose phone identity lives in `statePath`. */
function bridgeWithState(testbed: UsbTestbed, statePath: string): Promise<EmulatorBridge> {
  return bridgeWith(testbed, { MUXD_EMU_STATE: statePath });
}

function startDaemon(kind: 'reference' | 'ours', env: Readonly<Record<string, string>>): Promise<RunningDaemon> {
  return (kind === 'ours' ? startOurUsbDaemon : startReferenceUsbDaemon)(env, { preflight: true });
}

interface PreflightStackOptions {
  /** Extra environment for the bridge (bridge-cli reads MUXD_EMU_STATE and MUXD_EMU_TRUST). */
  readonly bridgeEnv?: Readonly<Record<string, string>>;
  /** Keep the phone's identity in `<temp dir>/phone.json` (statePath), so that it survives a new bridge. */
  readonly state?: boolean;
}

/** The running pieces of one describe block; each getter throws until beforeAll has started it. */
interface PreflightStack {
  readonly testbed: UsbTestbed;
  /** Settable: a test that starts a new bridge hands it over here, and afterAll stops it. */
  bridge: EmulatorBridge;
  readonly daemon: RunningDaemon;
  readonly listener: DeviceListener;
  /** Where the bridge keeps the phone's identity (with `state: true` only). */
  readonly statePath: string;
}

/**
 * Registers the hooks of one describe block: testbed, emulator bridge, `kind`'s daemon with
 * preflight, a Listen client (and a temp dir for the phone's state); torn down in reverse order.
 * On a test failure, the tails of the daemon's and the bridge's logs are printed.
 */
function usePreflightStack(kind: 'reference' | 'ours', options: PreflightStackOptions = {}): PreflightStack {
  let testbed: UsbTestbed | undefined;
  let bridge: EmulatorBridge | undefined;
  let daemon: RunningDaemon | undefined;
  let listener: DeviceListener | undefined;
  let dir: string | undefined;
  const started = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`${what} not started`);
    return value;
  };

  beforeAll(async () => {
    if (options.state === true) dir = mkdtempSync(join(tmpdir(), 'muxd-phone-'));
    testbed = await startUsbTestbed();
    const stateEnv = dir === undefined ? {} : { MUXD_EMU_STATE: join(dir, 'phone.json') };
    bridge = await bridgeWith(testbed, { ...options.bridgeEnv, ...stateEnv });
    daemon = await startDaemon(kind, testbed.env);
    listener = await DeviceListener.open(daemon.socketPath);
  });
  afterAll(async () => {
    await listener?.close();
    await daemon?.stop();
    await bridge?.stop();
    await testbed?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });
  beforeEach((ctx) => {
    ctx.onTestFailed(() => {
      console.error(`--- ${kind} log (tail) ---\n${daemon?.logs().slice(-6000) ?? ''}\n--- bridge log (tail) ---\n${bridge?.logs().slice(-3000) ?? ''}`);
    });
  });

  return {
    get testbed() {
      return started(testbed, 'testbed');
    },
    get bridge() {
      return started(bridge, 'bridge');
    },
    set bridge(next: EmulatorBridge) {
      bridge = next;
    },
    get daemon() {
      return started(daemon, 'daemon');
    },
    get listener() {
      return started(listener, 'listener');
    },
    get statePath() {
      return join(started(dir, 'phone state dir'), 'phone.json');
    },
  };
}

/** The phone's pairing counters from the bridge's closing log line (JSON, `pairing` field). */
function bridgePairingStats(logs: string): Record<string, number> | undefined {
  for (const line of logs.split('\n').reverse()) {
    if (!line.includes('emulator bridge closed')) continue;
    const parsed: unknown = JSON.parse(line);
    if (isDict(parsed) && isDict(parsed['pairing'])) return parsed['pairing'] as Record<string, number>;
  }
  return undefined;
}

/** The phone's pairing events so far, from the bridge's log (one JSON line each). */
function pairingEvents(bridge: EmulatorBridge): Record<string, unknown>[] {
  const events: Record<string, unknown>[] = [];
  for (const line of bridge.logs().split('\n')) {
    if (!line.includes('"pairingEvent"')) continue;
    const parsed: unknown = JSON.parse(line);
    if (isDict(parsed) && isDict(parsed['pairingEvent'])) events.push(parsed['pairingEvent']);
  }
  return events;
}

/** Wait until the phone logged an event with these fields. */
function phoneEvent(bridge: EmulatorBridge, fields: Record<string, unknown>, ms: number): Promise<true> {
  const matches = (e: Record<string, unknown>): boolean => Object.entries(fields).every(([k, v]) => e[k] === v);
  return waitFor(`the phone's ${JSON.stringify(fields)}`, ms, () => (pairingEvents(bridge).some(matches) ? true : undefined));
}

describe.skipIf(hardwareMode())("usbmuxd 1.1.1's own preflight pairs with the emulated iPhone (trust mode auto)", () => {
  const stack = usePreflightStack('reference');

  it('announces the device, pairs after the tap (record with HostID, certificates, EscrowBag) and tells listeners Paired', async () => {
    const d = stack.daemon;
    await waitForDeviceCount(d.socketPath, 1, 20_000);
    expect(await ideviceIdList(d.socketPath)).toEqual([TESTBED_UDID]);
    const record = await pairRecordOf(d, 20_000);
    referenceRecordKeys = Object.keys(record).sort();
    expect(typeof record['HostID']).toBe('string');
    for (const key of ['HostCertificate', 'DeviceCertificate', 'RootCertificate', 'EscrowBag']) expect(Buffer.isBuffer(record[key]), key).toBe(true);
    expect(String(record['DeviceCertificate'])).toMatch(/^-----BEGIN CERTIFICATE-----/);
    const paired = await stack.listener.waitFor((e) => e.type === 'Paired', 10_000);
    expect(paired.deviceId).toBeGreaterThan(0);
    // The whole dialog path, as usbmuxd logs it: Pair answered pending, the notification proxy
    // observed, request_pair relayed after the tap, then Pair again.
    expect(d.logs()).toMatch(/is not paired with this host/);
    expect(d.logs()).toMatch(/Waiting for user to trust this computer on device 00008030-001A2B3C4D5E802E/);
    expect(d.logs()).toMatch(/user trusted this computer on device 00008030-001A2B3C4D5E802E, pairing now/);
  });

  it('with that record, ideviceinfo without -s gets a TLS session through the reference daemon', async () => {
    const values = parseIdeviceInfo(await ideviceInfoSession(stack.daemon.socketPath, { timeoutMs: 20_000 }));
    expect(values.get('UniqueDeviceID')).toBe(TESTBED_UDID);
    expect(values.get('ProductVersion')).toBe('17.5');
  });
});

describe.skipIf(hardwareMode())("our daemon's preflight pairs with the USB-emulated iPhone (trust mode auto)", () => {
  const stack = usePreflightStack('ours');

  it('announces at once, pairs after the tap, saves a record with the same keys as the reference, tells listeners Paired', async () => {
    const d = stack.daemon;
    const listener = stack.listener;
    await waitForDeviceCount(d.socketPath, 1, 20_000);
    const attached = await listener.waitFor((e) => e.type === 'Attached', 5000);
    const record = await pairRecordOf(d, 20_000);
    for (const key of ['HostCertificate', 'DeviceCertificate', 'RootCertificate', 'EscrowBag']) expect(Buffer.isBuffer(record[key]), key).toBe(true);
    const paired = await listener.waitFor((e) => e.type === 'Paired', 10_000);
    expect(paired.deviceId).toBe(attached.deviceId);
    if (referenceRecordKeys !== undefined) expect(Object.keys(record).sort()).toEqual(referenceRecordKeys);
  });

  it("with our record, ideviceinfo without -s gets a TLS session through our daemon", async () => {
    const values = parseIdeviceInfo(await ideviceInfoSession(stack.daemon.socketPath, { timeoutMs: 20_000 }));
    expect(values.get('UniqueDeviceID')).toBe(TESTBED_UDID);
    expect(values.get('DeviceClass')).toBe('iPhone');
  });
});

describe.skipIf(hardwareMode()).each(['reference', 'ours'] as const)('%s: a paired phone plugged in again is not paired again (no prompt on every plug)', (kind) => {
  const stack = usePreflightStack(kind, { state: true });

  it('first plug pairs; after unplug and replug the same phone gets a session with the stored record and no Pair', async () => {
    const d = stack.daemon;
    const tb = stack.testbed;
    const listener = stack.listener;
    const first = await pairRecordOf(d, 20_000);
    await listener.waitFor((e) => e.type === 'Paired', 10_000);
    await stack.bridge.stop();
    const firstStats = bridgePairingStats(stack.bridge.logs());
    expect(firstStats?.['pairSuccesses']).toBe(1);

    await tb.unplug();
    await tb.add();
    const bridge = await bridgeWithState(tb, stack.statePath);
    stack.bridge = bridge;
    const attached = await listener.waitFor((e) => e.type === 'Attached', 10_000, listener.events.findIndex((e) => e.type === 'Paired') + 1);
    // Preflight's StartSession with the stored HostID; after it, a (wrong) Pair would come at once.
    await phoneEvent(bridge, { kind: 'session' }, 20_000);
    await new Promise((r) => setTimeout(r, 1000));
    const values = parseIdeviceInfo(await ideviceInfoSession(d.socketPath, { timeoutMs: 20_000 }));
    expect(values.get('UniqueDeviceID')).toBe(TESTBED_UDID);
    await bridge.stop();
    const stats = bridgePairingStats(bridge.logs());
    expect(stats?.['pairRequests']).toBe(0);
    expect(stats?.['sessionsStarted']).toBeGreaterThanOrEqual(2); // preflight's and ideviceinfo's
    expect(stats?.['tlsHandshakes']).toBe(stats?.['sessionsStarted']);
    expect(listener.events.filter((e) => e.type === 'Paired' && e.deviceId === attached.deviceId)).toEqual([]);
    const second = await pairRecordOf(d, 1000);
    expect(second['HostID']).toBe(first['HostID']);
  });
});

describe.skipIf(hardwareMode()).each(['reference', 'ours'] as const)('%s: the user taps Don\'t Trust (trust mode deny)', (kind) => {
  const stack = usePreflightStack(kind, { bridgeEnv: { MUXD_EMU_TRUST: 'deny' } });

  it('the device stays listed, no record is written, nobody hears Paired', async () => {
    const d = stack.daemon;
    const bridge = stack.bridge;
    await waitForDeviceCount(d.socketPath, 1, 20_000);
    await phoneEvent(bridge, { kind: 'dialog', state: 'DENIED' }, 20_000);
    await new Promise((r) => setTimeout(r, 1000)); // whatever the daemon does after the refusal
    expect(await ideviceIdList(d.socketPath)).toEqual([TESTBED_UDID]);
    expect(existsSync(`${d.configDir}/${TESTBED_UDID}.plist`)).toBe(false);
    expect(stack.listener.events.filter((e) => e.type === 'Paired')).toEqual([]);
    await bridge.stop();
    const stats = bridgePairingStats(bridge.logs());
    expect(stats?.['pairRequests']).toBeGreaterThanOrEqual(1);
    expect(stats?.['pairSuccesses']).toBe(0);
  });
});

describe.skipIf(hardwareMode()).each(['reference', 'ours'] as const)('%s: a stale record (the phone refuses the TLS handshake) is replaced by a new pairing', (kind) => {
  const stack = usePreflightStack(kind, { state: true });

  it('TLS fails with the old record; the record is deleted, the dialog comes back, a new HostID is saved and Paired sent', async () => {
    const d = stack.daemon;
    const tb = stack.testbed;
    const listener = stack.listener;
    const statePath = stack.statePath;
    const first = await pairRecordOf(d, 20_000);
    await listener.waitFor((e) => e.type === 'Paired', 10_000);
    await stack.bridge.stop();
    // libimobiledevice 1.3.0 (the reference's preflight) makes a HostID from rand() seeded with
    // time(NULL): a second pairing within the same wall-clock second gets the same HostID, and the
    // phone, knowing it, pairs without a dialog. Let the clock pass a second boundary first.
    await new Promise((r) => setTimeout(r, 1100));
    // The phone keeps the HostID but its session certificates no longer match (invalidateSessionCertificates).
    const state: unknown = JSON.parse(readFileSync(statePath, 'utf8'));
    if (!isDict(state) || !Array.isArray(state['hosts'])) throw new Error('unexpected state file');
    for (const host of state['hosts'] as Record<string, unknown>[]) host['sessionCertificatesValid'] = false;
    writeFileSync(statePath, JSON.stringify(state));

    await tb.unplug();
    await tb.add();
    const from = listener.events.length;
    const bridge = await bridgeWithState(tb, statePath);
    stack.bridge = bridge;
    const second = await waitFor('a new pair record', 20_000, async () => {
      const r = await pairRecordOf(d, 20_000);
      return r['HostID'] !== first['HostID'] ? r : undefined;
    }).catch((err: unknown) => {
      // Seen rarely with the reference daemon: say what the phone and the daemon did meanwhile.
      throw new Error(`${err instanceof Error ? err.message : String(err)}\n--- phone ---\n${bridge.logs().slice(-4000)}\n--- ${d.kind} daemon ---\n${d.logs().slice(-4000)}`, { cause: err });
    });
    expect(typeof second['HostID']).toBe('string');
    await listener.waitFor((e) => e.type === 'Paired', 10_000, from);
    expect(await ideviceIdList(d.socketPath)).toEqual([TESTBED_UDID]);
    await bridge.stop();
    const stats = bridgePairingStats(bridge.logs());
    expect(stats?.['tlsFailures']).toBeGreaterThanOrEqual(1);
    expect(stats?.['pairSuccesses']).toBe(1);
  });
});
