/**
 * Our daemon (dist/main.js --no-usb) in one network namespace, emulated Wi-Fi phones in others, a
 * Linux bridge between them, discovery over real multicast, and real clients on the daemon's side
 * of the link: Debian's idevice_id -n, ideviceinfo -n and iproxy -n (they dial the phone's
 * NetworkAddress themselves, across the bridge), Connect-based clients (ours, go-ios,
 * pymobiledevice3 when installed). One phone lives through a whole day: found, used, its Wi-Fi
 * dropped and back (with and without a re-announcement), its heartbeat stopped, SleepyTime, an IP
 * change, and a fake that copies its advert. Figures are printed at the end.
 *
 * Timings: the phones send Marco every 1 s, so the daemon's deadline is Interval + grace =
 * 1 + 5 s (src/network/heartbeat.ts).
 */
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MuxdClient } from '../support/muxd-client.js';
import { netnsUnavailable } from '../support/netns.js';
import { parseIdeviceInfo } from '../support/clients.js';
import { DEFAULT_WIFI_MAC, GO_IOS, PYMOBILEDEVICE3, WifiLab, networkAddressOf, wifiLabUnavailable } from '../support/wifi-lab.js';
import type { LabDaemon, LabPhone, MuxEvent } from '../support/wifi-lab.js';

const UDID = '00008110-000A1B2C3D4E5F60';
const DEADLINE_MS = 6000; // Interval 1 s + grace 5 s
const skip = wifiLabUnavailable(netnsUnavailable());

const figures: [string, string][] = [];
const ms = (n: number): string => `${Math.round(n)} ms`;
const sleep = (t: number): Promise<void> => new Promise((r) => setTimeout(r, t));

/** Whether something listens on 127.0.0.1:port in the network namespace of `pid`. */
async function listeningIn(pid: number, port: number): Promise<boolean> {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const table = await readFile(`/proc/${pid}/net/tcp`, 'utf8').catch(() => '');
  return table.split('\n').some((line) => {
    const cols = line.trim().split(/\s+/);
    return cols[1] === local && cols[3] === '0A';
  });
}

/** Bytes through a tunnel to the phone's echo port come back unchanged. */
async function echoThrough(tunnel: Socket, size: number): Promise<void> {
  const data = Buffer.alloc(size);
  for (let i = 0; i < size; i++) data[i] = (i * 7 + 3) & 0xff;
  const chunks: Buffer[] = [];
  let got = 0;
  const done = new Promise<void>((resolve, reject) => {
    tunnel.on('data', (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      if (got >= size) resolve();
    });
    tunnel.once('close', () => { reject(new Error(`tunnel closed after ${got} of ${size} bytes`)); });
  });
  tunnel.resume();
  tunnel.write(data);
  await done;
  expect(Buffer.concat(chunks).equals(data)).toBe(true);
}

describe.skipIf(skip !== undefined)(`our daemon and a Wi-Fi phone across a bridge${skip === undefined ? '' : ` (skipped: ${skip})`}`, () => {
  let lab: WifiLab;
  let daemon: LabDaemon;
  let phone: LabPhone;
  let attached: MuxEvent;

  beforeAll(async () => {
    lab = WifiLab.create();
    daemon = await lab.daemon({ daemonArgs: ['--no-usb'] });
    phone = await lab.addPhone('phone', { udid: UDID }, daemon);
  });

  afterAll(async () => {
    await daemon.events.close();
    await lab.cleanup();
    if (figures.length > 0) console.log(`\nour daemon and a Wi-Fi phone (this run):\n${figures.map(([k, v]) => `  ${k.padEnd(58)} ${v}`).join('\n')}`);
  });

  /** The phone's current Attached (after index `after`), with its IPv4 NetworkAddress checked. */
  async function attachedNow(after: number, timeoutMs = 20_000): Promise<MuxEvent> {
    const e = await daemon.events.networkAttached(UDID, timeoutMs, after);
    attached = e;
    return e;
  }

  it('advert → Attached (Network, NetworkAddress, EscapedFullServiceName, InterfaceIndex); Debian\'s clients list it and dial it', async () => {
    const e = await attachedNow(0);
    figures.push(['advert → Attached', ms(e.t - (phone.ready.announcedAt ?? e.t))]);
    expect(e.properties).toMatchObject({ ConnectionType: 'Network', SerialNumber: UDID, EscapedFullServiceName: `${DEFAULT_WIFI_MAC}@${phone.linkLocal ?? ''}._apple-mobdev2._tcp.local.` });
    expect(e.properties?.['InterfaceIndex']).toBeGreaterThan(0);
    expect(networkAddressOf(e)).toMatchObject({ family: 4, address: phone.ipv4, port: 0 });

    const list = await daemon.run('idevice_id', ['-n']);
    expect(list.stdout.trim().split('\n')).toEqual([UDID]);
    // libimobiledevice 1.3.0 dials <NetworkAddress>:62078 itself, from the daemon's namespace
    // across the bridge, TLS with the record it reads through the daemon (ReadPairRecord)
    const info = await daemon.run('ideviceinfo', ['-n', '-u', UDID]);
    expect(info.code, info.stderr).toBe(0);
    const values = parseIdeviceInfo(info.stdout);
    expect(values.get('UniqueDeviceID')).toBe(UDID);
    expect(values.get('WiFiAddress')).toBe(DEFAULT_WIFI_MAC); // only answered inside a session
  });

  it('iproxy -n dials the echo port itself; a Connect through the daemon reaches echo, source and discard', async () => {
    // iproxy listens in the daemon's namespace; the agent there carries our bytes to it
    const agent = await lab.host.agent();
    const iproxy = lab.host.spawn('iproxy', ['17007:7', '-u', UDID, '-n'], { env: daemon.env() });
    try {
      // listening, as its namespace's /proc/net/tcp says (a probe connection would upset iproxy 2.0.2)
      while (!(await listeningIn(iproxy.pid, 17007))) await sleep(25);
      const viaIproxy = await agent.dial('127.0.0.1', 17007);
      await echoThrough(viaIproxy, 256 * 1024);
      viaIproxy.destroy();
    } finally {
      await iproxy.stop();
      await agent.stop();
    }
    const before = (await phone.ctl('status'))['accepted'] as Record<string, number>;
    const echo = await (await MuxdClient.connect({ path: daemon.socketPath })).connectDevice(attached.deviceId, 7);
    await echoThrough(echo, 1 << 20);
    echo.destroy();
    const source = await (await MuxdClient.connect({ path: daemon.socketPath })).connectDevice(attached.deviceId, 19);
    let got = 0;
    source.on('data', (c: Buffer) => { got += c.length; });
    source.resume();
    while (got < 1 << 20) await sleep(20);
    source.destroy();
    const discard = await (await MuxdClient.connect({ path: daemon.socketPath })).connectDevice(attached.deviceId, 9);
    discard.end(Buffer.alloc(1 << 20));
    await once(discard, 'close');
    const after = (await phone.ctl('status'))['accepted'] as Record<string, number>;
    expect((after['echo'] ?? 0) - (before['echo'] ?? 0)).toBe(1);
    expect((after['source'] ?? 0) - (before['source'] ?? 0)).toBe(1);
    expect((after['discard'] ?? 0) - (before['discard'] ?? 0)).toBe(1);
    // refused: nothing listens on that port of the phone → Result 3, as over USB
    await expect((await MuxdClient.connect({ path: daemon.socketPath })).connectDevice(attached.deviceId, 4242)).rejects.toMatchObject({ result: 3 });
  });

  it.skipIf(GO_IOS === undefined)(`go-ios lists it and reads lockdown through Connect${GO_IOS === undefined ? ' (skipped: no go-ios `ios` in .venv-clients or PATH)' : ''}`, async () => {
    const list = await daemon.runThirdParty(GO_IOS ?? 'ios', ['list']);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toContain(UDID);
    const info = await daemon.runThirdParty(GO_IOS ?? 'ios', ['info', `--udid=${UDID}`]);
    expect(info.code, info.stderr).toBe(0);
    expect(JSON.parse(info.stdout.trim().split('\n').at(-1) ?? '{}')).toMatchObject({ UniqueDeviceID: UDID, WiFiAddress: DEFAULT_WIFI_MAC });
  });

  it.skipIf(PYMOBILEDEVICE3 === undefined)(`pymobiledevice3 usbmux list and lockdown info through Connect${PYMOBILEDEVICE3 === undefined ? ' (skipped: no pymobiledevice3 in .venv-clients (scripts/setup-clients.sh) or PATH)' : ''}`, async () => {
    const list = await daemon.runThirdParty(PYMOBILEDEVICE3 ?? 'pymobiledevice3', ['usbmux', 'list']);
    expect(list.code, list.stderr).toBe(0);
    expect(JSON.parse(list.stdout)).toEqual([expect.objectContaining({ UniqueDeviceID: UDID, ConnectionType: 'Network' })]);
    const info = await daemon.runThirdParty(PYMOBILEDEVICE3 ?? 'pymobiledevice3', ['lockdown', 'info', '--udid', UDID]);
    expect(info.code, info.stderr).toBe(0);
    expect(JSON.parse(info.stdout)).toMatchObject({ UniqueDeviceID: UDID, WiFiAddress: DEFAULT_WIFI_MAC });
  });

  it('Wi-Fi drop (link down): Detached within Interval + grace, the open tunnel ends; link up: Attached again by itself, no advert needed', async () => {
    const tunnel = await (await MuxdClient.connect({ path: daemon.socketPath })).connectDevice(attached.deviceId, 7);
    const ended = new Promise<number>((resolve) => {
      tunnel.once('close', () => { resolve(Date.now()); });
    });
    tunnel.on('error', () => undefined);
    await echoThrough(tunnel, 1000);
    await phone.ctl('watch', 'announce=false'); // the phone will not announce itself when it is back
    const down = Date.now();
    phone.linkDown();
    const detached = await daemon.events.detachedOf(attached, DEADLINE_MS + 4000);
    figures.push(['link down → Detached (deadline 1 + 5 s)', ms(detached.t - down)]);
    expect(detached.t - down).toBeGreaterThan(DEADLINE_MS - 1500); // not before the heartbeat could know
    expect(detached.t - down).toBeLessThan(DEADLINE_MS + 3000); // slack for a loaded machine (npm test runs tiers side by side)
    expect((await ended) - detached.t).toBeLessThan(1000);
    // the daemon keeps trying while the phone is away
    await daemon.waitForLog('network device not reachable here; will retry', (r) => r['udid'] === UDID, 15_000);
    const mark = daemon.events.mark;
    const up = Date.now();
    phone.linkUp();
    const back = await attachedNow(mark, 40_000);
    figures.push(['link up → Attached, no re-announcement (backoff)', ms(back.t - up)]);
    // whichever of its addresses answered first in the round that found it
    expect([phone.ipv4, phone.linkLocal]).toContain(networkAddressOf(back).address);
    await phone.ctl('watch', 'announce=true');
  });

  it('Wi-Fi drop and return with the phone\'s re-announcement: Attached at once, not at the end of the backoff', async () => {
    const down = Date.now();
    phone.linkDown();
    const detached = await daemon.events.detachedOf(attached, DEADLINE_MS + 4000);
    figures.push(['link down → Detached, second time', ms(detached.t - down)]);
    // away long enough for the backoff to grow past a few seconds
    await daemon.waitForLog('network device not reachable here; will retry', (r) => r['udid'] === UDID && r['time'] as number > detached.t, 15_000);
    await sleep(4000);
    const mark = daemon.events.mark;
    const up = Date.now();
    phone.linkUp(); // the phone notices within 0.5 s and announces again
    const back = await attachedNow(mark, 30_000);
    figures.push(['link up → Attached, with the re-announcement', ms(back.t - up)]);
    expect(back.t - up).toBeLessThan(3000); // the phone's 0.5 s poll, then one proof (a dial under way may find it first)
  });

  it('heartbeat stops: Detached within the deadline and not announced while it stays silent; it beats again: Attached', async () => {
    const stop = Date.now();
    await phone.ctl('heartbeat', 'marco=false');
    const detached = await daemon.events.detachedOf(attached, DEADLINE_MS + 4000);
    figures.push(['Marco stops → Detached', ms(detached.t - stop)]);
    const mark = daemon.events.mark;
    // the phone still accepts sessions: each proof waits 5 s for a Marco, in vain, and says so
    await daemon.waitForLog('network device not reachable here; will retry', (r) => r['reason'] === 'heartbeat silent' && r['udid'] === UDID, 10_000);
    expect(daemon.events.events.slice(mark)).toEqual([]);
    const again = Date.now();
    await phone.ctl('heartbeat', 'marco=true');
    const back = await attachedNow(mark, 15_000);
    figures.push(['Marco again → Attached (backoff 1 s, then a proof)', ms(back.t - again)]);
  });

  it('SleepyTime: Detached at once, then back (this phone keeps answering)', async () => {
    const mark = daemon.events.mark;
    const t = Date.now();
    await phone.ctl('sleepy');
    const detached = await daemon.events.detachedOf(attached, 3000);
    figures.push(['SleepyTime → Detached', ms(detached.t - t)]);
    await attachedNow(mark, 15_000);
    expect(daemon.logs().some((r) => r['why'] === 'sleepy' && r['udid'] === UDID)).toBe(true);
  });

  it('an advert that stops naming the address the device is up at (IPv6 dropped) moves it to one it names', async () => {
    // Sessions stick to the address that last worked; after the drops above that may be fe80::.
    let mark = daemon.events.mark;
    await phone.ctl('advert', 'families=ipv4');
    if (networkAddressOf(attached).family === 6) {
      const detached = await daemon.events.detachedOf(attached, 5000);
      const moved = await attachedNow(mark, 5000);
      expect(moved.t - detached.t).toBeLessThan(500);
    }
    expect(networkAddressOf(attached)).toMatchObject({ family: 4, address: phone.ipv4 });
    mark = daemon.events.mark;
    await phone.ctl('advert', 'families=dual'); // named again: nothing moves
    await sleep(1500);
    expect(daemon.events.events.slice(mark)).toEqual([]);
  });

  it('IP change: the phone announces the new address with a goodbye for the old one; the device moves there (Detached, Attached) at once', async () => {
    expect(networkAddressOf(attached)).toMatchObject({ family: 4, address: phone.ipv4 });
    const old = phone.ipv4 ?? '';
    const mark = daemon.events.mark;
    const t = Date.now();
    phone.ns.changeIpv4('wl0', `${old}/24`, '10.77.0.99/24');
    const detached = await daemon.events.detachedOf(attached, DEADLINE_MS + 8000);
    const moved = await attachedNow(mark, 15_000);
    figures.push(['IP change → Detached / Attached at the new address', `${ms(detached.t - t)} / ${ms(moved.t - t)}`]);
    expect(networkAddressOf(moved).address).toBe('10.77.0.99');
    // proven at the new address before the old heartbeat ran out: no gap a client could fall into
    expect(detached.t - t).toBeLessThan(DEADLINE_MS);
    expect(moved.t - detached.t).toBeLessThan(500);
    const info = await daemon.run('ideviceinfo', ['-n', '-u', UDID, '-k', 'UniqueDeviceID']);
    expect(info.stdout.trim()).toBe(UDID);
  });

  it('a fake with the phone\'s advert (same UDID tags, same MAC) while the phone is away: never announced, never a client byte; the log says why', async () => {
    const txt = (phone.ready.advert as { txt?: string[] } | undefined)?.txt ?? [];
    const identifier = (txt.find((t) => t.startsWith('identifier=')) ?? '').slice('identifier='.length);
    expect(identifier).not.toBe('');
    phone.linkDown();
    await daemon.events.detachedOf(attached, DEADLINE_MS + 4000);
    const mark = daemon.events.mark;
    const fake = await lab.addPhone('fake', { udid: UDID, statePath: phone.statePath, ipv4: '10.77.0.66/24', args: ['--fake', '--identifier', identifier] });
    const fakeLinkLocal = fake.linkLocal ?? '';
    const refused = await daemon.waitForLog('network device not reachable here; will retry', (r) => r['at'] === '10.77.0.66' || r['at'] === `${fakeLinkLocal}%eth0`, 15_000);
    expect(refused['reason']).toBe('session refused (TLS)');
    await sleep(2000);
    expect(daemon.events.events.slice(mark)).toEqual([]);
    const status = await fake.ctl('status');
    const accepted = status['accepted'] as Record<string, number>;
    expect(accepted['lockdownd']).toBeGreaterThan(0); // the daemon asked it to prove itself …
    expect((accepted['echo'] ?? 0) + (accepted['source'] ?? 0) + (accepted['discard'] ?? 0)).toBe(0); // … and sent it nothing else
    await fake.stop();
    phone.linkUp();
    const back = await attachedNow(mark, 30_000);
    expect(['10.77.0.99', phone.linkLocal]).toContain(networkAddressOf(back).address);
  });
});
