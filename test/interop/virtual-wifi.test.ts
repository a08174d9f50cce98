/**
 * `usbmuxd --no-usb --virtual-device --virtual-wifi`: the one-command way to see a Network device.
 * The virtual phone's network face listens on 127.0.0.2 (or the next free 127.0.0.x); the daemon
 * adds it as a manual device and announces it once preflight has paired it over the virtual USB.
 * Debian's clients list it and dial it themselves; a Connect through the daemon reaches it too.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseIdeviceInfo, runClient } from '../support/clients.js';
import { startOurDaemon } from '../support/daemon.js';
import type { RunningDaemon } from '../support/daemon.js';
import { MuxdClient } from '../support/muxd-client.js';
import { lockdownOver } from '../support/wifi-host.js';

const UDID = '00008030-001A2B3C4D5E802E';

interface Listed {
  readonly DeviceID: number;
  readonly Properties: { readonly ConnectionType: string; readonly SerialNumber: string };
}

async function listDevices(socketPath: string): Promise<Listed[]> {
  const c = await MuxdClient.connect({ path: socketPath });
  try {
    const { reply } = await c.request({ MessageType: 'ListDevices' });
    return reply.kind === 'plist' ? (reply.dict['DeviceList'] as unknown as Listed[]) : [];
  } finally {
    await c.close();
  }
}

describe('--virtual-device --virtual-wifi: a virtual phone on USB and on the network', () => {
  let daemon: RunningDaemon;
  let list: Listed[] = [];

  beforeAll(async () => {
    daemon = await startOurDaemon({ virtualDevices: [''], extraArgs: ['--virtual-wifi'] });
    const deadline = Date.now() + 15_000;
    while (list.length < 2 && Date.now() < deadline) {
      list = await listDevices(daemon.socketPath);
      if (list.length < 2) await new Promise((r) => setTimeout(r, 100));
    }
  });

  afterAll(async () => {
    await daemon.stop();
  });

  it('two entries for one phone, USB first, the Network one after preflight paired it', () => {
    expect(list.map((d) => [d.Properties.ConnectionType, d.Properties.SerialNumber])).toEqual([['USB', UDID], ['Network', UDID]]);
  });

  it('idevice_id -n lists it; ideviceinfo -n dials the loopback face itself (TLS with the record it reads through the daemon)', async () => {
    const ids = await runClient(daemon.socketPath, 'idevice_id', ['-n']);
    expect(ids.stdout.trim()).toBe(UDID);
    const info = await runClient(daemon.socketPath, 'ideviceinfo', ['-n', '-u', UDID]);
    expect(info.code, info.stderr).toBe(0);
    const values = parseIdeviceInfo(info.stdout);
    expect(values.get('ProductVersion')).toBe('17.5');
    expect(values.get('WiFiAddress')).toBe('a4:c3:f0:12:34:56'); // a session value
  });

  it('a Connect to the Network entry is proxied to the face\'s lockdownd', async () => {
    const network = list.find((d) => d.Properties.ConnectionType === 'Network');
    if (network === undefined) throw new Error('no Network entry');
    const tunnel = await (await MuxdClient.connect({ path: daemon.socketPath })).connectDevice(network.DeviceID, 62078);
    const lockdown = lockdownOver(tunnel.resume());
    expect(await lockdown.queryType()).toBe('com.apple.mobile.lockdown');
    expect(await lockdown.getValue('UniqueDeviceID')).toBe(UDID);
    lockdown.close();
  });
});
