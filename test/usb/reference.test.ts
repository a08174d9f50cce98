/**
 * Cross-check: Debian's usbmuxd 1.1.1 and our daemon, each with its own testbed and emulator
 * (two daemons on one emulated device would steal each other's IN data), side by side. The
 * reference proves the harness and the emulator are faithful; where the two daemons differ on the
 * USB side the test says why. Needs root for the reference's private mount namespace (CI is root).
 * Not in MUXD_HW mode: both daemons would fight over the one real phone.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import plist from 'plist';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ideviceIdList, ideviceInfo, muxdEnv, parseIdeviceInfo, sha256, startEcho, startIproxy } from '../support/clients.js';
import { firstListedDeviceId } from '../support/daemon.js';
import { encodePlistRequest, oneShot } from '../support/raw-client.js';
import { TESTBED_UDID, hardwareMode, startUsbStack, stopUsbStack } from '../support/usb-testbed.js';
import type { TestbedStats, UsbStack } from '../support/usb-testbed.js';

describe.skipIf(hardwareMode())('usbmuxd 1.1.1 and ours on the same harness and emulator', () => {
  let reference: UsbStack | undefined;
  let ours: UsbStack | undefined;

  const both = (): [UsbStack, UsbStack] => {
    if (!reference || !ours) throw new Error('rigs not started');
    return [reference, ours];
  };

  beforeAll(async () => {
    // Both without preflight (the starters pass -p by default): the USB-side comparisons below
    // count IN URBs in flight, which preflight's lockdown traffic would race (preflight.test.ts).
    [reference, ours] = await Promise.all([startUsbStack('reference'), startUsbStack('ours')]);
  });

  afterAll(async () => {
    await Promise.all([stopUsbStack(reference), stopUsbStack(ours)]);
  });

  it('both list the emulated iPhone under the same UDID (idevice_id -l)', async () => {
    const [ref, our] = both();
    expect(await ideviceIdList(ref.daemon.socketPath)).toEqual([TESTBED_UDID]);
    expect(await ideviceIdList(our.daemon.socketPath)).toEqual([TESTBED_UDID]);
  });

  it('both serve ideviceinfo -s with identical lockdownd values', async () => {
    const [ref, our] = both();
    const fromRef = parseIdeviceInfo(await ideviceInfo(ref.daemon.socketPath, { timeoutMs: 20_000 }));
    const fromOurs = parseIdeviceInfo(await ideviceInfo(our.daemon.socketPath, { timeoutMs: 20_000 }));
    expect(fromRef.get('UniqueDeviceID')).toBe(TESTBED_UDID);
    expect(fromRef.size).toBeGreaterThan(10);
    // The phone's clock ticks between the two reads; every other value is the same.
    fromRef.delete('TimeIntervalSince1970');
    fromOurs.delete('TimeIntervalSince1970');
    expect(Object.fromEntries(fromOurs)).toEqual(Object.fromEntries(fromRef));
  });

  it('both carry an iproxy echo round trip intact', async () => {
    for (const r of both()) {
      const proxy = await startIproxy(r.daemon.socketPath, 7);
      try {
        const data = randomBytes(512 * 1024);
        expect(sha256(await startEcho(proxy.localPort, data, 60_000).result)).toBe(sha256(data));
      } finally {
        await proxy.stop();
      }
    }
  });

  it('both answer a Connect to port 0 and to a closed port with Result 3 (the phone RSTs the SYN)', async () => {
    const seen: Record<string, unknown[]> = {};
    for (const [name, r] of [['reference', both()[0]], ['ours', both()[1]]] as const) {
      seen[name] = [];
      for (const port of [0, 1, 62078]) {
        // PortNumber as libusbmuxd sends it: htons(port) read as a little-endian integer.
        const request = encodePlistRequest({ MessageType: 'Connect', DeviceID: await firstListedDeviceId(r.daemon.socketPath), PortNumber: ((port & 0xff) << 8) | (port >> 8), ProgName: 'ports', ClientVersionString: 't' }, 7);
        const reply = await oneShot(r.daemon.socketPath, request, 3000);
        const body = reply.kind === 'frame' ? (plist.parse(reply.frame.body.toString('utf8')) as Record<string, unknown>) : reply.kind;
        seen[name].push(typeof body === 'object' ? body['Number'] : body);
      }
    }
    expect(seen['reference']).toEqual([3, 3, 0]);
    expect(seen['ours']).toEqual(seen['reference']);
  });

  it('the USB side: same configuration and interface; only ours asks GET_MODE', async () => {
    const [ref, our] = both();
    const r: TestbedStats = await ref.testbed.stats();
    const o: TestbedStats = await our.testbed.stats();
    // 1.1.1 takes min(bNumConfigurations, 4); we take the highest configuration with an exact
    // 255/254/2 interface. On an iPhone both are 4, interface 1.
    expect(r.setConfiguration).toEqual([4]);
    expect(o.setConfiguration).toEqual([4]);
    expect(r.claimed).toEqual([1]);
    expect(o.claimed).toEqual([1]);
    // Both keep 3 bulk-IN transfers queued (NUM_RX_LOOPS).
    expect(r.urbsInFlight).toBe(3);
    expect(o.urbsInFlight).toBe(3);
    // Differs on purpose: GET_MODE (0xC0/0x45) came after 1.1.1; we follow usbmuxd HEAD, which
    // sends it once and only logs the reply. Neither sends SET_MODE to a mode-1 device.
    expect(r.getMode).toBe(0);
    expect(o.getMode).toBe(1);
    expect(r.setMode + o.setMode).toBe(0);
  });

  // The harness's own property (test/support/usb-testbed.ts, header): the daemons log into files,
  // so they keep serving while this process reads nothing. Through pipes, both stopped within
  // these runs: ours answered 20 of them, usbmuxd 1.1.1 46, then ideviceinfo failed (5-10 s).
  it('both keep serving while the test process is blocked and reads none of their logs', () => {
    const RUNS = 80;
    const outcome = both().map((r) => {
      const before = r.daemon.logs().length;
      const runs = spawnSync('sh', ['-c', `for i in $(seq 1 ${RUNS}); do ideviceinfo -s -k ProductVersion || exit 1; done`], {
        env: muxdEnv(r.daemon.socketPath),
        encoding: 'utf8',
        timeout: 60_000,
      });
      const answered = runs.stdout.split('\n').filter((l) => l === '17.5').length;
      return { kind: r.daemon.kind, answered, logged: r.daemon.logs().length > before };
    });
    expect(outcome).toEqual([
      { kind: 'reference', answered: RUNS, logged: true },
      { kind: 'ours', answered: RUNS, logged: true },
    ]);
  });
});
