/**
 * Pairing and TLS sessions with Debian's real tools (libimobiledevice-utils 1.3.0) against OUR
 * daemon and the in-process emulated iPhone (`--virtual-device`, trust mode auto): proof that the
 * emulator's Pair, ValidatePair and StartSession/TLS are what libimobiledevice expects, and that
 * the record it saves through our SavePairRecord is usable.
 *
 * The daemon runs with `-p` so that only the client pairs (a preflight pairing in parallel would
 * race it for the trust dialog); preflight's own pairing is tested with it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import plist from 'plist';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TRUST_DIALOG_PENDING, ideviceInfo, ideviceInfoSession, idevicePair, idevicePairUntilTrusted, parseIdeviceInfo } from '../support/clients.js';
import { startOurDaemon } from '../support/daemon.js';
import type { RunningDaemon } from '../support/daemon.js';
import { useOurDaemonWithListener } from '../support/our-daemon-stack.js';

const UDID = '00008030-001A2B3C4D5E802E';

function isDict(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !Buffer.isBuffer(value) && !(value instanceof Date);
}

describe('idevicepair / ideviceinfo through a TLS session, against our daemon and the emulated iPhone', () => {
  const { d, listener } = useOurDaemonWithListener({ virtualDevices: [''], extraArgs: ['-p'] });

  it('before pairing: ideviceinfo -s works (no session, no dialog)', async () => {
    const values = parseIdeviceInfo(await ideviceInfo(d().socketPath));
    expect(values.get('UniqueDeviceID')).toBe(UDID);
  });

  it('idevicepair pair: the trust dialog first, success after the auto tap; the record is saved and listeners see Paired', async () => {
    const outcome = await idevicePairUntilTrusted(d().socketPath, { timeoutMs: 15_000 });
    expect(outcome.pending).toBeGreaterThanOrEqual(1);
    expect(outcome.stdout).toMatch(/SUCCESS: Paired with device 00008030-001A2B3C4D5E802E/);

    const record: unknown = plist.parse(readFileSync(join(d().configDir, `${UDID}.plist`), 'utf8'));
    expect(isDict(record)).toBe(true);
    if (!isDict(record)) return;
    for (const key of ['HostCertificate', 'DeviceCertificate', 'RootCertificate', 'EscrowBag', 'HostPrivateKey', 'RootPrivateKey']) {
      expect(Buffer.isBuffer(record[key]), key).toBe(true);
    }
    for (const key of ['HostID', 'SystemBUID', 'WiFiMACAddress']) expect(typeof record[key], key).toBe('string');
    expect(record['WiFiMACAddress']).toBe('a4:c3:f0:12:34:56');
    expect((record['EscrowBag'] as Buffer).length).toBe(32);

    const paired = await listener().waitFor((e) => e.type === 'Paired', 5000);
    const attached = await listener().waitFor((e) => e.type === 'Attached', 1000);
    expect(paired.deviceId).toBe(attached.deviceId);
  });

  it('idevicepair validate succeeds with the saved record', async () => {
    const r = await idevicePair(d().socketPath, 'validate');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/SUCCESS: Validated pairing with device 00008030-001A2B3C4D5E802E/);
  });

  it('ideviceinfo without -s (a TLS session through the emulator) prints the device values, like -s', async () => {
    const session = parseIdeviceInfo(await ideviceInfoSession(d().socketPath));
    const simple = parseIdeviceInfo(await ideviceInfo(d().socketPath));
    expect(session.get('UniqueDeviceID')).toBe(UDID);
    expect(session.get('ProductVersion')).toBe('17.5');
    expect(session.get('DeviceName')).toBe('Virtual iPhone');
    // The phone's clock ticks between the two reads; every other value is the same.
    const clock = (m: Map<string, string>): number => Number(m.get('TimeIntervalSince1970'));
    expect(Math.abs(clock(session) - clock(simple))).toBeLessThan(5);
    session.delete('TimeIntervalSince1970');
    simple.delete('TimeIntervalSince1970');
    expect(Object.fromEntries(session)).toEqual(Object.fromEntries(simple));
  });

  it('ideviceinfo -q com.apple.disk_usage and -k in a session', async () => {
    const disk = parseIdeviceInfo(await ideviceInfoSession(d().socketPath, { domain: 'com.apple.disk_usage' }));
    expect(disk.get('TotalDiskCapacity')).toBe('128000000000');
    expect(disk.get('TotalDataAvailable')).toBe('64000000000');
    expect((await ideviceInfoSession(d().socketPath, { key: 'DeviceClass' })).trim()).toBe('iPhone');
  });

  it('several sessions in a row and in parallel (each its own TLS handshake)', async () => {
    const runs = await Promise.all(Array.from({ length: 4 }, () => ideviceInfoSession(d().socketPath, { key: 'ProductType' })));
    expect(runs.map((s) => s.trim())).toEqual(Array(4).fill('iPhone15,2'));
    for (let i = 0; i < 3; i++) expect((await ideviceInfoSession(d().socketPath, { key: 'BuildVersion' })).trim()).toBe('21F79');
  });

  it('idevicepair unpair: the phone forgets the host and the record is deleted', async () => {
    const r = await idevicePair(d().socketPath, 'unpair');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/SUCCESS: Unpaired with device 00008030-001A2B3C4D5E802E/);
    expect(existsSync(join(d().configDir, `${UDID}.plist`))).toBe(false);
  });

  it('the daemon logged no errors', () => {
    expect(d().logs()).not.toMatch(/"level":50/);
  });
});

describe('idevicepair validate with no pair record (libimobiledevice 1.3.0 pairs by itself first)', () => {
  let daemon: RunningDaemon | undefined;
  beforeAll(async () => {
    daemon = await startOurDaemon({ virtualDevices: [''], extraArgs: ['-p'] });
  });
  afterAll(async () => {
    await daemon?.stop();
  });

  it('is answered with the trust dialog, and succeeds once the auto tap came', async () => {
    const socket = daemon!.socketPath;
    const first = await idevicePair(socket, 'validate');
    expect(first.code).not.toBe(0);
    expect(first.stdout + first.stderr).toMatch(TRUST_DIALOG_PENDING);
    await new Promise((r) => setTimeout(r, 500)); // autoTapMs 300
    const second = await idevicePair(socket, 'validate');
    expect(second.code, second.stdout + second.stderr).toBe(0);
    expect(second.stdout).toMatch(/SUCCESS: Validated pairing/);
  });
});
