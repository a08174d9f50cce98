/**
 * Several Wi-Fi phones on one bridge, each advertising the way some iOS does, found by our daemon
 * (dist/main.js --no-usb) in its own namespace: a private MAC in the instance name (iOS 17.1+ /
 * 26.4: only the TXT authTag says whose it is), an old MAC-only advert (no TXT: only the MAC says
 * it), an IPv6-only one (fe80:: with the zone), and a MAC-only advert no record can claim. Then a
 * second daemon where multicast does not reach (behind a router: a VPN, a container) that knows
 * the phones only by address: `--network-device` and AddDevice / RemoveDevice.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseIdeviceInfo } from '../support/clients.js';
import { MuxdClient } from '../support/muxd-client.js';
import { netnsUnavailable } from '../support/netns.js';
import type { Netns } from '../support/netns.js';
import { WifiLab, networkAddressOf, wifiLabUnavailable } from '../support/wifi-lab.js';
import type { LabDaemon, LabPhone, MuxEvent } from '../support/wifi-lab.js';

const PRIVATE = '00008120-0001AAAA00000001';
const MAC_ONLY = '00008120-0001AAAA00000002';
const V6_ONLY = '00008120-0001AAAA00000003';
const UNCLAIMED = '00008120-0001AAAA00000004';
const skip = wifiLabUnavailable(netnsUnavailable());
const sleep = (t: number): Promise<void> => new Promise((r) => setTimeout(r, t));

describe.skipIf(skip !== undefined)(`several Wi-Fi phones, each advertising its own way${skip === undefined ? '' : ` (skipped: ${skip})`}`, () => {
  let lab: WifiLab;
  let daemon: LabDaemon;
  let privateMac: LabPhone;
  let macOnly: LabPhone;
  let v6Only: LabPhone;
  let unclaimed: LabPhone;
  const seen = new Map<string, MuxEvent>();

  beforeAll(async () => {
    lab = WifiLab.create();
    daemon = await lab.daemon({ daemonArgs: ['--no-usb'] });
    [privateMac, macOnly, v6Only, unclaimed] = await Promise.all([
      lab.addPhone('private', { udid: PRIVATE, wifiMac: 'a4:c3:f0:00:00:01', args: ['--mac', 'private'] }, daemon),
      lab.addPhone('maconly', { udid: MAC_ONLY, wifiMac: 'a4:c3:f0:00:00:02', args: ['--txt', 'mac-only'] }, daemon),
      lab.addPhone('v6only', { udid: V6_ONLY, ipv4: null, args: ['--family', 'ipv6'] }, daemon),
      lab.addPhone('unclaimed', { udid: UNCLAIMED, wifiMac: 'a4:c3:f0:00:00:04', recordWithoutMac: true, args: ['--txt', 'mac-only'] }, daemon),
    ]);
  });

  afterAll(async () => {
    await daemon.events.close();
    await lab.cleanup();
  });

  it('private MAC in the instance name: found by its authTag', async () => {
    const e = await daemon.events.networkAttached(PRIVATE, 15_000, 0);
    seen.set(PRIVATE, e);
    const instance = privateMac.ready.advert?.instance ?? '';
    expect(instance.startsWith('a4:c3:f0:00:00:01@')).toBe(false); // not the record's WiFiMACAddress
    expect(e.properties?.['EscapedFullServiceName']).toBe(`${instance}._apple-mobdev2._tcp.local.`);
    expect(networkAddressOf(e)).toMatchObject({ family: 4, address: privateMac.ipv4 });
  });

  it('old MAC-only advert (no TXT): found by the MAC of its name against the record\'s WiFiMACAddress', async () => {
    const e = await daemon.events.networkAttached(MAC_ONLY, 15_000, 0);
    seen.set(MAC_ONLY, e);
    expect(macOnly.ready.advert?.instance.startsWith('a4:c3:f0:00:00:02@')).toBe(true);
    expect(networkAddressOf(e)).toMatchObject({ family: 4, address: macOnly.ipv4 });
  });

  it('IPv6 only: NetworkAddress is fe80:: with the daemon\'s interface as scope; the daemon and ideviceinfo -n both dial it', async () => {
    const e = await daemon.events.networkAttached(V6_ONLY, 15_000, 0);
    seen.set(V6_ONLY, e);
    const eth0 = (JSON.parse(lab.host.ip('-j', 'link', 'show', 'dev', 'eth0')) as { ifindex: number }[])[0]?.ifindex;
    expect(networkAddressOf(e)).toMatchObject({ family: 6, address: v6Only.linkLocal, scopeId: eth0 });
    expect(e.properties?.['InterfaceIndex']).toBe(eth0);
    const info = await daemon.run('ideviceinfo', ['-n', '-u', V6_ONLY, '-k', 'UniqueDeviceID']);
    expect(info.code, info.stderr).toBe(0);
    expect(info.stdout.trim()).toBe(V6_ONLY);
    const tunnel = await (await MuxdClient.connect({ path: daemon.socketPath })).connectDevice(e.deviceId, 7);
    tunnel.resume();
    const back = new Promise<Buffer>((resolve) => { tunnel.once('data', resolve); });
    tunnel.write('over fe80');
    expect((await back).toString()).toBe('over fe80');
    tunnel.destroy();
  });

  it('a MAC-only advert whose MAC no record has is not shown, and the log says why', async () => {
    const instance = unclaimed.ready.advert?.instance ?? '';
    const line = await daemon.waitForLog('network device not shown: no pair record matches its advert', (r) => r['instance'] === instance, 10_000);
    expect(line['tags']).toBe(0);
    await sleep(500);
    expect(daemon.events.events.some((e) => e.serial === UNCLAIMED)).toBe(false);
  });

  it('all of them at once: ListDevices and idevice_id -n list every proven phone, once each', async () => {
    const list = await daemon.run('idevice_id', ['-n']);
    expect(list.stdout.trim().split('\n').sort()).toEqual([PRIVATE, MAC_ONLY, V6_ONLY]);
    const client = await MuxdClient.connect({ path: daemon.socketPath });
    const { reply } = await client.request({ MessageType: 'ListDevices' });
    await client.close();
    const devices = (reply.kind === 'plist' ? (reply.dict['DeviceList'] as { Properties: { SerialNumber: string; ConnectionType: string } }[]) : []).map((d) => d.Properties);
    expect(devices.map((d) => d.SerialNumber).sort()).toEqual([PRIVATE, MAC_ONLY, V6_ONLY]);
    expect(devices.every((d) => d.ConnectionType === 'Network')).toBe(true);
    const info = parseIdeviceInfo((await daemon.run('ideviceinfo', ['-n', '-u', PRIVATE])).stdout);
    expect(info.get('WiFiAddress')).toBe('a4:c3:f0:00:00:01'); // the hardware MAC, not the advertised one
  });

  describe('a daemon where multicast does not reach (behind a router): phones by address only', () => {
    let far: Netns;
    let farDaemon: LabDaemon;

    beforeAll(async () => {
      // far (10.78.0.1) ── router (10.78.0.254 | 10.77.0.254 on the lan) ── phones
      const router = lab.phoneNamespace('router', '10.77.0.254/24');
      router.sysctl('net.ipv4.ip_forward=1');
      far = lab.lab.namespace('far');
      lab.lab.link({ ns: router, ifname: 'r0', ipv4: '10.78.0.254/24', noMulticastRoute: true }, { ns: far, ifname: 'eth0', ipv4: '10.78.0.1/24' });
      far.ip('route', 'add', 'default', 'via', '10.78.0.254');
      for (const p of [privateMac, macOnly]) p.ns.ip('route', 'add', '10.78.0.0/24', 'via', '10.77.0.254');
      const records = [privateMac, macOnly].flatMap((p) => (p.pairing === undefined ? [] : [{ udid: p.udid, pairing: p.pairing }]));
      farDaemon = await lab.daemon({ ns: far, daemonArgs: ['--no-usb', '--network-device', privateMac.ipv4 ?? ''], records });
    });

    it('--network-device ADDRESS: asked which phone it is, proven, announced; no advert ever arrived', async () => {
      const e = await farDaemon.events.networkAttached(PRIVATE, 20_000, 0);
      expect(networkAddressOf(e)).toMatchObject({ family: 4, address: privateMac.ipv4 });
      const list = await farDaemon.run('idevice_id', ['-n']);
      expect(list.stdout.trim()).toBe(PRIVATE);
      const info = await farDaemon.run('ideviceinfo', ['-n', '-u', PRIVATE, '-k', 'UniqueDeviceID']);
      expect(info.stdout.trim()).toBe(PRIVATE); // libimobiledevice dials it through the router
      expect(farDaemon.logs().some((r) => r['msg'] === 'mDNS: phone advertised')).toBe(false);
    });

    it('AddDevice (netmuxd\'s message) adds one at runtime; RemoveDevice takes it away (Detached)', async () => {
      const client = await MuxdClient.connect({ path: farDaemon.socketPath });
      const mark = farDaemon.events.mark;
      const { reply } = await client.request({ MessageType: 'AddDevice', ConnectionType: 'Network', IPAddress: macOnly.ipv4 ?? '', DeviceID: MAC_ONLY });
      expect(reply).toEqual({ kind: 'result', number: 0 });
      const e = await farDaemon.events.networkAttached(MAC_ONLY, 15_000, mark);
      expect(networkAddressOf(e).address).toBe(macOnly.ipv4);
      const removed = await client.request({ MessageType: 'RemoveDevice', DeviceID: MAC_ONLY });
      expect(removed.reply).toEqual({ kind: 'result', number: 0 });
      await farDaemon.events.detachedOf(e, 5000);
      // an address nobody answers at, with a UDID that has no record: refused with a reason
      const bad = await client.request({ MessageType: 'AddDevice', ConnectionType: 'Network', IPAddress: '10.77.0.200', DeviceID: V6_ONLY });
      expect(bad.reply).toMatchObject({ kind: 'result' });
      expect(bad.reply).not.toEqual({ kind: 'result', number: 0 });
      await client.close();
    });
  });
});
