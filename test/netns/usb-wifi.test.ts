/**
 * The whole story of issue 15, with one emulated phone that is both a USB device (umockdev testbed
 * + the emulator bridge, node-usb's real libusb in our daemon) and a Wi-Fi phone (wifi-phone-cli in
 * a namespace on the bridge), sharing one identity through the bridge's state file:
 *
 *   plug in over USB → the daemon pairs (preflight; the virtual user taps Trust) → the phone does
 *   not advertise yet (Wi-Fi connections are off on a new phone) → a client switches them on over
 *   USB (EnableWifiConnections) → the phone advertises → the daemon proves it and lists it twice,
 *   USB first → unplug → the phone is still there over Wi-Fi, for clients that dial it and for
 *   Connect.
 *
 * The daemon runs inside a network namespace under umockdev's preload (both work together: the
 * preload redirects /sys and /dev to the testbed, the namespace only the network).
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateDeviceKey } from '../../src/emulator/pair-request.js';
import { encodeIdentity } from '../../src/emulator/pairing-state.js';
import { sessionCredentials } from '../../src/lockdown/index.js';
import { parsePlist } from '../../src/plist/index.js';
import { parseIdeviceInfo } from '../support/clients.js';
import { MuxdClient } from '../support/muxd-client.js';
import { netnsUnavailable } from '../support/netns.js';
import { BRIDGE_ENTRY, SYSTEM_PYTHON, TESTBED_UDID, startEmulatorBridge, startUsbTestbed } from '../support/usb-testbed.js';
import type { EmulatorBridge, UsbTestbed } from '../support/usb-testbed.js';
import { lockdownOver } from '../support/wifi-host.js';
import { DEFAULT_WIFI_MAC, PYMOBILEDEVICE3, WifiLab, networkAddressOf, wifiLabUnavailable } from '../support/wifi-lab.js';
import type { LabDaemon, LabPhone, MuxEvent } from '../support/wifi-lab.js';

const WIRELESS = 'com.apple.mobile.wireless_lockdown';
const skip = wifiLabUnavailable(netnsUnavailable())
  ?? (existsSync(BRIDGE_ENTRY) ? undefined : `${BRIDGE_ENTRY} is missing: npm run build first`)
  ?? (existsSync('/usr/lib/x86_64-linux-gnu/libumockdev-preload.so.0') || existsSync('/usr/lib/aarch64-linux-gnu/libumockdev-preload.so.0') ? undefined : 'umockdev is not installed (scripts/setup-system.sh)')
  ?? (existsSync(SYSTEM_PYTHON) ? undefined : `${SYSTEM_PYTHON} is missing`);

const figures: [string, string][] = [];
const sleep = (t: number): Promise<void> => new Promise((r) => setTimeout(r, t));

/** EnableWifiConnections over USB with our own lockdown client: Connect to 62078, a session with the daemon's record. */
async function enableWifiWithOurClient(daemon: LabDaemon, usbDeviceId: number): Promise<void> {
  const c = await MuxdClient.connect({ path: daemon.socketPath });
  const { reply } = await c.request({ MessageType: 'ReadPairRecord', PairRecordID: TESTBED_UDID });
  await c.close();
  if (reply.kind !== 'plist' || !Buffer.isBuffer(reply.dict['PairRecordData'])) throw new Error(`ReadPairRecord: ${JSON.stringify(reply)}`);
  const bytes = reply.dict['PairRecordData'];
  const creds = sessionCredentials(bytes);
  const record = parsePlist(bytes) as Record<string, unknown>;
  const tunnel = await (await MuxdClient.connect({ path: daemon.socketPath })).connectDevice(usbDeviceId, 62078);
  const lockdown = lockdownOver(tunnel.resume());
  await lockdown.startSession({ hostId: creds.hostId, systemBuid: String(record['SystemBUID']), cert: creds.hostCertificate, key: creds.hostPrivateKey });
  await lockdown.setValue('EnableWifiConnections', true, WIRELESS);
  expect(await lockdown.getValue('EnableWifiConnections', WIRELESS)).toBe(true);
  lockdown.close();
}

describe.skipIf(skip !== undefined)(`pair over USB, switch Wi-Fi on, unplug: found over Wi-Fi${skip === undefined ? '' : ` (skipped: ${skip})`}`, () => {
  let lab: WifiLab;
  let testbed: UsbTestbed;
  let bridge: EmulatorBridge;
  let daemon: LabDaemon;
  let phone: LabPhone;
  let usb: MuxEvent;
  let wifi: MuxEvent;

  beforeAll(async () => {
    lab = WifiLab.create();
    // The phone exists before anything happens: its key, no trusted host, Wi-Fi connections off.
    const statePath = join(lab.lab.tmp, 'iphone.json');
    writeFileSync(statePath, encodeIdentity({ deviceKey: generateDeviceKey(), hosts: [], wifiConnections: false }), { mode: 0o600 });
    testbed = await startUsbTestbed();
    bridge = await startEmulatorBridge(testbed, { statePath });
    daemon = await lab.daemon({ daemonEnv: testbed.env }); // USB on, preflight on
    phone = await lab.addPhone('iphone', { udid: TESTBED_UDID, statePath });
  });

  afterAll(async () => {
    await daemon.events.close();
    await bridge.stop();
    await testbed.stop();
    await lab.cleanup();
    if (figures.length > 0) console.log(`\nUSB and Wi-Fi, one phone (this run):\n${figures.map(([k, v]) => `  ${k.padEnd(52)} ${v}`).join('\n')}`);
  });

  it('USB: attached and paired by the daemon; the phone, not yet on Wi-Fi, advertises nothing', async () => {
    usb = await daemon.events.next((e) => e.kind === 'attached' && e.serial === TESTBED_UDID && e.connectionType === 'USB', 20_000);
    await daemon.events.next((e) => e.kind === 'paired' && e.deviceId === usb.deviceId, 20_000);
    // the Wi-Fi face follows the state file the bridge rewrote: it trusts the daemon's host now
    let status: Record<string, unknown> = {};
    for (let i = 0; i < 40; i++) {
      status = await phone.ctl('status');
      if ((status['pairedHosts'] as string[]).length > 0) break;
      await sleep(100);
    }
    expect((status['pairedHosts'] as string[]).length).toBe(1);
    expect(status['wifiConnections']).toBe(false);
    expect(status['advert']).toBeUndefined();
    await sleep(1000);
    expect(daemon.events.events.some((e) => e.connectionType === 'Network')).toBe(false);
  });

  it(`EnableWifiConnections over USB (${PYMOBILEDEVICE3 === undefined ? 'our lockdown client; pymobiledevice3 is not installed' : 'pymobiledevice3 lockdown wifi-connections on'}) → the phone advertises → Attached over the network too, USB first`, async () => {
    const mark = daemon.events.mark;
    const t = Date.now();
    if (PYMOBILEDEVICE3 === undefined) {
      await enableWifiWithOurClient(daemon, usb.deviceId);
    } else {
      const on = await daemon.runThirdParty(PYMOBILEDEVICE3, ['lockdown', 'wifi-connections', 'on', '--udid', TESTBED_UDID]);
      expect(on.code, on.stderr).toBe(0);
    }
    wifi = await daemon.events.networkAttached(TESTBED_UDID, 15_000, mark);
    figures.push(['switched on over USB → Attached over Wi-Fi', `${wifi.t - t} ms`]);
    expect(networkAddressOf(wifi)).toMatchObject({ family: 4, address: phone.ipv4 });
    expect(wifi.deviceId).not.toBe(usb.deviceId);
    const c = await MuxdClient.connect({ path: daemon.socketPath });
    const { reply } = await c.request({ MessageType: 'ListDevices' });
    await c.close();
    const list = reply.kind === 'plist' ? (reply.dict['DeviceList'] as { DeviceID: number; Properties: { ConnectionType: string; SerialNumber: string } }[]) : [];
    expect(list.map((d) => [d.Properties.ConnectionType, d.Properties.SerialNumber, d.DeviceID])).toEqual([
      ['USB', TESTBED_UDID, usb.deviceId],
      ['Network', TESTBED_UDID, wifi.deviceId],
    ]);
    const listed = await daemon.run('idevice_id', ['-n']);
    expect(listed.stdout.trim()).toBe(TESTBED_UDID);
    const state = await phone.ctl('status');
    expect(state['wifiConnections']).toBe(true);
  });

  it('unplug: USB Detached, the phone stays over Wi-Fi; ideviceinfo -n dials it, a Connect reaches it', async () => {
    await testbed.unplug();
    await daemon.events.next((e) => e.kind === 'detached' && e.deviceId === usb.deviceId, 10_000);
    await sleep(500);
    expect(daemon.events.events.some((e) => e.kind === 'detached' && e.deviceId === wifi.deviceId)).toBe(false);
    const info = await daemon.run('ideviceinfo', ['-n', '-u', TESTBED_UDID]);
    expect(info.code, info.stderr).toBe(0);
    const values = parseIdeviceInfo(info.stdout);
    expect(values.get('UniqueDeviceID')).toBe(TESTBED_UDID);
    expect(values.get('WiFiAddress')).toBe(DEFAULT_WIFI_MAC);
    const tunnel = await (await MuxdClient.connect({ path: daemon.socketPath })).connectDevice(wifi.deviceId, 62078);
    const lockdown = lockdownOver(tunnel.resume());
    expect(await lockdown.queryType()).toBe('com.apple.mobile.lockdown');
    expect(await lockdown.getValue('UniqueDeviceID')).toBe(TESTBED_UDID);
    lockdown.close();
  });
});
