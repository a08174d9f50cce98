/**
 * Our daemon (`node dist/main.js`, USB on) drives the emulated iPhone through node-usb's real
 * libusb under umockdev, and Debian's libimobiledevice clients use it through our socket.
 *
 * Emulation: one testbed (test/usb-emulation/testbed.py) + the device emulator bridge + the daemon
 * under LD_PRELOAD/UMOCKDEV_DIR. With MUXD_HW=1 the same code path runs against a real iPhone:
 * no testbed, and only the cases a real phone can serve (listing, lockdownd, idle CPU) run; the
 * emulator's echo/source services, hotplug automation and fault injection need the testbed.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultLockdownValues, sourceByte } from '../../src/emulator/index.js';
import { ideviceIdList, ideviceInfo, inetcatRead, parseIdeviceInfo, sha256, sha256OfPattern, startEcho, startIproxy } from '../support/clients.js';
import type { RunningDaemon } from '../support/daemon.js';
import { waitForDeviceCount } from '../support/daemon.js';
import {
  TESTBED_UDID,
  cpuTicks,
  hardwareMode,
  startEmulatorBridge,
  startOurUsbDaemon,
  startUsbTestbed,
  waitFor,
} from '../support/usb-testbed.js';
import type { EmulatorBridge, UsbTestbed } from '../support/usb-testbed.js';
import { DeviceListener } from './listener.js';

const HW = hardwareMode();
const ECHO_PORT = 7;
const SOURCE_PORT = 19;
const MIB = 1024 * 1024;
/** Linux USER_HZ: /proc/<pid>/stat counts CPU time in 1/100 s. */
const TICKS_PER_SECOND = 100;

describe('our daemon over node-usb (umockdev emulated iPhone)', () => {
  let testbed: UsbTestbed | undefined;
  let bridge: EmulatorBridge | undefined;
  let daemon: RunningDaemon;
  let udid = TESTBED_UDID;

  const tb = (): UsbTestbed => {
    if (!testbed) throw new Error('testbed-only step in MUXD_HW mode');
    return testbed;
  };

  /** Plug the phone back in and start a fresh emulator behind it (a replug is a new phone session). */
  const replug = async (unconfigured = false): Promise<void> => {
    await bridge?.stop();
    await tb().add({ unconfigured });
    bridge = await startEmulatorBridge(tb());
  };

  beforeAll(async () => {
    if (!HW) {
      testbed = await startUsbTestbed();
      bridge = await startEmulatorBridge(testbed);
    }
    // No preflight (-p, the starter's default): these cases measure the USB side on an otherwise
    // idle pipe (IN URBs in flight, discards at SIGTERM, idle CPU); preflight's lockdown traffic
    // and pairing would race them. Preflight over USB is tested on its own in preflight.test.ts.
    daemon = await startOurUsbDaemon(testbed?.env ?? {});
    await waitForDeviceCount(daemon.socketPath, 1, 15_000);
    if (HW) udid = (await ideviceIdList(daemon.socketPath))[0] ?? '';
  });

  afterAll(async () => {
    await daemon.stop();
    await bridge?.stop();
    await testbed?.stop();
  });

  it.skipIf(HW)('finds the iPhone through libusb, sets configuration 4 from 1, claims interface 1, v2 handshake', async () => {
    const stats = await tb().stats();
    expect(stats.setConfiguration).toEqual([4]);
    expect(stats.configuration).toBe(4);
    expect(stats.claimed).toEqual([1]);
    expect(stats.getMode).toBe(1);
    expect(stats.setMode).toBe(0);
    // 3 bulk-IN URBs stay queued on 0x85 (usbmuxd's NUM_RX_LOOPS)
    expect(stats.urbsInFlight).toBe(3);
    // VERSION (20 bytes, v1 header) then SETUP (v2 header): the device is only listed after both
    expect(await ideviceIdList(daemon.socketPath)).toEqual([TESTBED_UDID]);
    expect(daemon.logs()).toMatch(/USB device ready/);
  });

  it('idevice_id -l lists the device by its UDID', async () => {
    const ids = await ideviceIdList(daemon.socketPath);
    expect(ids).toEqual([udid]);
    if (!HW) expect(udid).toBe('00008030-001A2B3C4D5E802E');
  });

  it('ideviceinfo -s reads lockdownd through the USB tunnel', async () => {
    const values = parseIdeviceInfo(await ideviceInfo(daemon.socketPath, { timeoutMs: 20_000 }));
    expect(values.get('UniqueDeviceID')).toBe(udid);
    if (!HW) {
      const expected = defaultLockdownValues(TESTBED_UDID);
      for (const key of ['ProductType', 'ProductVersion', 'BuildVersion', 'DeviceName', 'SerialNumber']) {
        expect(values.get(key)).toBe(expected[key]);
      }
    }
  });

  it.skipIf(HW)('4 MiB through iproxy to echo (port 7) comes back SHA-256 identical', async () => {
    const proxy = await startIproxy(daemon.socketPath, ECHO_PORT);
    try {
      const data = randomBytes(4 * MIB);
      const t0 = Date.now();
      const back = await startEcho(proxy.localPort, data, 90_000).result;
      const ms = Date.now() - t0;
      expect(back.length).toBe(data.length);
      expect(sha256(back)).toBe(sha256(data));
      console.log(`echo 4 MiB: ${ms} ms, ${((data.length / MIB) / (ms / 1000)).toFixed(1)} MiB/s each way`);
    } finally {
      await proxy.stop();
    }
  });

  it.skipIf(HW)('16 MiB from source (port 19) through inetcat match the pattern', async () => {
    const length = 16 * MIB;
    const t0 = Date.now();
    const data = await inetcatRead(daemon.socketPath, SOURCE_PORT, length, { timeoutMs: 120_000 });
    const ms = Date.now() - t0;
    expect(data.length).toBe(length);
    expect(sha256(data)).toBe(sha256OfPattern(length, sourceByte));
    console.log(`source 16 MiB: ${ms} ms, ${((length / MIB) / (ms / 1000)).toFixed(1)} MiB/s`);
  });

  it('idles at near-zero CPU with a device attached (10 s)', async () => {
    await new Promise((r) => setTimeout(r, 500));
    const before = await cpuTicks(daemon.pid);
    const tbBefore = testbed ? await cpuTicks(testbed.pid) : 0;
    await new Promise((r) => setTimeout(r, 10_000));
    const used = (await cpuTicks(daemon.pid)) - before;
    const tbUsed = testbed ? (await cpuTicks(testbed.pid)) - tbBefore : 0;
    console.log(`idle 10 s: daemon ${used} ticks, testbed ${tbUsed} ticks`);
    // < 3 % of 10 s; a busy-polling libusb loop would burn far more
    expect(used).toBeLessThan(0.03 * 10 * TICKS_PER_SECOND);
  }, 30_000);

  it.skipIf(HW)('unplug: Detached within 1 s and the tunnel closes; replug unconfigured: configuration 4 from 0, new DeviceID', async () => {
    const listener = await DeviceListener.open(daemon.socketPath);
    const proxy = await startIproxy(daemon.socketPath, ECHO_PORT);
    try {
      const attached = await listener.waitFor((e) => e.type === 'Attached', 5000);
      const echo = startEcho(proxy.localPort, randomBytes(64 * MIB), 60_000);
      await echo.firstEcho;
      const unpluggedAt = Date.now();
      await tb().unplug();
      const detached = await listener.waitFor((e) => e.type === 'Detached', 3000);
      expect(detached.deviceId).toBe(attached.deviceId);
      expect(detached.at - unpluggedAt).toBeLessThan(1000);
      await expect(echo.result).rejects.toThrow(/closed|reset|ECONNRESET/);
      expect(await ideviceIdList(daemon.socketPath)).toEqual([]);

      const before = (await tb().stats()).setConfiguration.length;
      await replug(true);
      const again = await listener.waitFor((e) => e.type === 'Attached' && e.deviceId !== attached.deviceId, 10_000);
      expect(again.deviceId).toBeGreaterThan(attached.deviceId);
      expect(again.serial).toBe(TESTBED_UDID);
      const stats = await tb().stats();
      expect(stats.setConfiguration.slice(before)).toEqual([4]);
      expect(stats.claimed).toEqual([1]);
    } finally {
      await proxy.stop();
      await listener.close();
    }
  });

  it.skipIf(HW)('unplug during a 16 MiB transfer: the tunnel ends, the daemon survives, the next device works', async () => {
    expect(await ideviceIdList(daemon.socketPath)).toEqual([TESTBED_UDID]);
    const base = (await tb().stats()).inBytes;
    const reading = inetcatRead(daemon.socketPath, SOURCE_PORT, 16 * MIB, { timeoutMs: 30_000 });
    const outcome = reading.then(
      () => new Error('the whole 16 MiB arrived'),
      (err: unknown) => err,
    );
    await waitFor('transfer under way', 10_000, async () => ((await tb().stats()).inBytes - base > 2 * MIB ? true : undefined));
    await tb().unplug();
    const err = await outcome;
    expect(String(err)).toMatch(/inetcat exited .* after \d+ of 16777216 bytes/);
    expect(() => process.kill(daemon.pid, 0)).not.toThrow();
    await replug();
    await waitForDeviceCount(daemon.socketPath, 1, 10_000);
    const proxy = await startIproxy(daemon.socketPath, ECHO_PORT);
    try {
      const data = randomBytes(256 * 1024);
      expect(sha256(await startEcho(proxy.localPort, data).result)).toBe(sha256(data));
    } finally {
      await proxy.stop();
    }
  });

  it.skipIf(HW)('a stalled bulk-IN endpoint drops the device (Detached) and the daemon carries on', async () => {
    const listener = await DeviceListener.open(daemon.socketPath);
    try {
      const attached = await listener.waitFor((e) => e.type === 'Attached', 5000);
      expect(await tb().inject('stall', 'in')).toBe('fired');
      await listener.waitFor((e) => e.type === 'Detached' && e.deviceId === attached.deviceId, 3000);
      // the interface is released and the handle closed; the device stays ignored until replugged
      await waitFor('interface released', 3000, async () => ((await tb().stats()).claimed.length === 0 ? true : undefined));
      expect(await ideviceIdList(daemon.socketPath)).toEqual([]);
      await tb().unplug();
      await replug();
      await listener.waitFor((e) => e.type === 'Attached' && e.deviceId > attached.deviceId, 10_000);
    } finally {
      await listener.close();
    }
  });

  it.skipIf(HW)('an OUT transfer error (-EPROTO) drops the device the same way', async () => {
    const listener = await DeviceListener.open(daemon.socketPath);
    try {
      const attached = await listener.waitFor((e) => e.type === 'Attached', 5000);
      expect(await tb().inject('error', 'out')).toBe('armed');
      // any OUT traffic trips it: a client connecting sends a SYN
      void ideviceIdList(daemon.socketPath);
      void inetcatRead(daemon.socketPath, SOURCE_PORT, 1, { timeoutMs: 5000 }).catch(() => undefined);
      await listener.waitFor((e) => e.type === 'Detached' && e.deviceId === attached.deviceId, 5000);
      expect((await tb().stats()).faultsFired).toBeGreaterThanOrEqual(2);
      await tb().unplug();
      await replug();
      await listener.waitFor((e) => e.type === 'Attached' && e.deviceId > attached.deviceId, 10_000);
    } finally {
      await listener.close();
    }
  });

  it.skipIf(HW)('SIGTERM releases the interface and cancels the IN transfers before exit', async () => {
    const before = (await tb().stats()).ioctls;
    const logged = daemon.logs().length;
    await daemon.stop();
    const after = (await tb().stats()).ioctls;
    expect((after['RELEASEINTERFACE'] ?? 0) - (before['RELEASEINTERFACE'] ?? 0)).toBe(1);
    expect((after['DISCARDURB'] ?? 0) - (before['DISCARDURB'] ?? 0)).toBeGreaterThanOrEqual(3);
    // every IN transfer came back before the handle was closed (no fallback timeout on the way out)
    expect(daemon.logs().slice(logged)).not.toMatch(/gave up waiting for USB transfers/);
  });
});
