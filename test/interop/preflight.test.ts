/**
 * OUR preflight, proven with Debian's real clients (libimobiledevice-utils 1.3.0): the daemon runs
 * with `--virtual-device` and preflight ON (the default). Preflight pairs the emulated iPhone by
 * itself (trust mode auto: the "user" taps Trust after 300 ms), saves the record and raises Paired;
 * then `idevicepair validate` and `ideviceinfo` WITHOUT `-s` (a TLS session with the certificates
 * WE generated) must succeed. A client's own `idevicepair pair` must still work and raise Paired.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import plist from 'plist';
import { afterEach, describe, expect, it } from 'vitest';
import { ideviceIdList, ideviceInfoSession, idevicePair, idevicePairUntilTrusted, parseIdeviceInfo } from '../support/clients.js';
import { startOurDaemon } from '../support/daemon.js';
import type { RunningDaemon } from '../support/daemon.js';
import { useOurDaemonWithListener } from '../support/our-daemon-stack.js';
import { DeviceListener } from '../usb/listener.js';

const UDID = '00008030-001A2B3C4D5E802E';

function recordPath(d: RunningDaemon): string {
  return join(d.configDir, `${UDID}.plist`);
}

function hostIdOf(d: RunningDaemon): string {
  const rec = plist.parse(readFileSync(recordPath(d), 'utf8')) as Record<string, unknown>;
  const id = rec['HostID'];
  if (typeof id !== 'string') throw new Error('record without HostID');
  return id;
}

async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('preflight pairs the emulated iPhone; the real clients use OUR record', () => {
  const { d, listener } = useOurDaemonWithListener({ virtualDevices: [''] });

  it('the device is listed at once; preflight saves a 0600 record and listeners see Paired', async () => {
    expect(await ideviceIdList(d().socketPath)).toEqual([UDID]);
    const paired = await listener().waitFor((e) => e.type === 'Paired', 20_000);
    const attached = await listener().waitFor((e) => e.type === 'Attached', 1000);
    expect(paired.deviceId).toBe(attached.deviceId);
    // Attached reached the listener before Paired (never hidden while trust was pending).
    expect(listener().events.findIndex((e) => e.type === 'Attached')).toBeLessThan(listener().events.findIndex((e) => e.type === 'Paired'));
    expect(existsSync(recordPath(d()))).toBe(true);
    expect(statSync(recordPath(d())).mode & 0o777).toBe(0o600);
    const record = plist.parse(readFileSync(recordPath(d()), 'utf8')) as Record<string, unknown>;
    for (const key of ['DeviceCertificate', 'HostCertificate', 'RootCertificate', 'HostPrivateKey', 'RootPrivateKey', 'EscrowBag']) {
      expect(Buffer.isBuffer(record[key]), key).toBe(true);
    }
    expect(typeof record['SystemBUID']).toBe('string');
    expect(record['WiFiMACAddress']).toBe('a4:c3:f0:12:34:56');
    expect(d().logs()).toMatch(/paired: record saved/);
  });

  it('idevicepair validate succeeds with the record preflight made', async () => {
    const r = await idevicePair(d().socketPath, 'validate');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/SUCCESS: Validated pairing with device 00008030-001A2B3C4D5E802E/);
  });

  it('ideviceinfo without -s runs a TLS session with our certificates', async () => {
    const values = parseIdeviceInfo(await ideviceInfoSession(d().socketPath));
    expect(values.get('UniqueDeviceID')).toBe(UDID);
    expect(values.get('ProductVersion')).toBe('17.5');
    expect((await ideviceInfoSession(d().socketPath, { key: 'DeviceClass' })).trim()).toBe('iPhone');
  });

  it('a client\'s own idevicepair pair also works and raises Paired again', async () => {
    const before = listener().events.filter((e) => e.type === 'Paired').length;
    const preflightHostId = hostIdOf(d());
    const outcome = await idevicePairUntilTrusted(d().socketPath, { timeoutMs: 20_000 });
    expect(outcome.stdout).toMatch(/SUCCESS: Paired with device 00008030-001A2B3C4D5E802E/);
    await until(() => listener().events.filter((e) => e.type === 'Paired').length > before, 5000, 'second Paired');
    expect(hostIdOf(d())).not.toBe(preflightHostId);
    const r = await idevicePair(d().socketPath, 'validate');
    expect(r.code, r.stdout + r.stderr).toBe(0);
  });

  it('logged no errors and kept the device listed throughout', async () => {
    expect(await ideviceIdList(d().socketPath)).toEqual([UDID]);
    expect(d().logs()).not.toMatch(/"level":50/);
    expect(d().logs()).not.toMatch(/preflight failed/);
  });
});

describe('preflight modes of the daemon', () => {
  let daemon: RunningDaemon | undefined;
  afterEach(async () => {
    await daemon?.stop();
    daemon = undefined;
  });

  it('-p: no preflight, the device is listed, no record appears', async () => {
    daemon = await startOurDaemon({ virtualDevices: [''], extraArgs: ['-p'] });
    await new Promise((r) => setTimeout(r, 1500));
    expect(await ideviceIdList(daemon.socketPath)).toEqual([UDID]);
    expect(existsSync(recordPath(daemon))).toBe(false);
    expect(daemon.logs()).toMatch(/preflight off/);
  });

  it('--virtual-trust deny: the device stays listed, no record, no Paired', async () => {
    daemon = await startOurDaemon({ virtualDevices: [''], extraArgs: ['--virtual-trust', 'deny'] });
    const listener = await DeviceListener.open(daemon.socketPath);
    try {
      await until(() => daemon!.logs().includes('Trust dialog is up'), 20_000, 'first Pair answered pending');
      await new Promise((r) => setTimeout(r, 800)); // past the 300 ms Don't Trust tap
      expect(await ideviceIdList(daemon.socketPath)).toEqual([UDID]);
      expect(existsSync(recordPath(daemon))).toBe(false);
      expect(listener.events.some((e) => e.type === 'Paired')).toBe(false);
    } finally {
      await listener.close();
    }
  });

  it('--virtual-trust setup: paired at once, without the dialog', async () => {
    daemon = await startOurDaemon({ virtualDevices: [''], extraArgs: ['--virtual-trust', 'setup'] });
    await until(() => existsSync(recordPath(daemon!)), 20_000, 'record saved');
    expect(daemon.logs()).not.toMatch(/Trust dialog is up/);
    const r = await idevicePair(daemon.socketPath, 'validate');
    expect(r.code, r.stdout + r.stderr).toBe(0);
  });
});
