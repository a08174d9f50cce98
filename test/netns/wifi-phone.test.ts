/**
 * The emulated Wi-Fi phone across a real link: phone, fake phone and host each in a network
 * namespace of their own, joined by a Linux bridge (a LAN). The host side is a plain
 * multicast-dns browser and the daemon's own lockdown client, both inside the host namespace (the
 * netns agent relays TCP from there). Figures (advert → discovered, etc.) are printed at the end.
 */
import { createHmac, hkdfSync } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HEARTBEAT_SERVICE } from '../../src/emulator/heartbeat.js';
import { encodeIdentity } from '../../src/emulator/pairing-state.js';
import { NetnsLab, netnsUnavailable } from '../support/netns.js';
import type { LineProcess, MdnsEvent, MdnsRecord, Netns, NetnsAgent } from '../support/netns.js';
import { PinMismatchError, PlistStream, lockdownOver, makePairing, pinnedSession, pinnedTls, startSession } from '../support/wifi-host.js';
import type { Pairing } from '../support/wifi-host.js';

const CLI = 'dist/emulator/wifi-phone-cli.js';
const UDID = '00008110-000A1B2C3D4E5F60';
const HW_MAC = 'a4:c3:f0:12:34:56';
const skip = netnsUnavailable() ?? (existsSync(CLI) ? undefined : `${CLI} is missing: npm run build first`);

/** The host's check of a TXT record, written from the doc's steps (wifi-devices.md §1.3). */
function txtNamesHost(txt: readonly Buffer[], hostId: string): boolean {
  const pairs = txt.map((b) => {
    const s = b.toString('utf8');
    const eq = s.indexOf('=');
    return [s.slice(0, eq).toLowerCase(), b.subarray(eq + 1)] as const;
  });
  const identifier = pairs.find(([k]) => k === 'identifier')?.[1];
  if (identifier === undefined) return false;
  const key = Buffer.from(hkdfSync('sha512', Buffer.from(hostId, 'utf8'), Buffer.alloc(0), Buffer.alloc(0), 32));
  const expected = createHmac('sha256', key).update(identifier).digest().subarray(0, 8);
  return pairs.some(([k, v]) => (k === 'authtag' || k.startsWith('authtag#')) && Buffer.from(v.toString('latin1').trim(), 'base64').equals(expected));
}

const figures: [string, string][] = [];
const ms = (n: number): string => `${n.toFixed(1)} ms`;

function ptrTo(instance: string, live = true) {
  return (e: MdnsEvent): boolean => e.answers.some((r) => r.type === 'PTR' && r.data === `${instance}._apple-mobdev2._tcp.local` && (live ? r.ttl > 0 : r.ttl === 0));
}

function all(e: MdnsEvent): readonly MdnsRecord[] {
  return [...e.answers, ...e.additionals];
}

/** Take whatever arrives on `stream` within `ms`. */
async function quietFor(stream: PlistStream, ms: number): Promise<number> {
  const until = Date.now() + ms;
  let taken = 0;
  for (;;) {
    const left = until - Date.now();
    if (left <= 0) return taken;
    try {
      await stream.next(left);
      taken++;
    } catch {
      return taken;
    }
  }
}

interface Ready {
  readonly announcedAt: number;
  readonly advert: { readonly instance: string; readonly txt: readonly string[]; readonly ipv4: readonly string[]; readonly ipv6: readonly string[] };
}

async function startPhone(ns: Netns, args: readonly string[]): Promise<{ proc: LineProcess; ready: Ready }> {
  const proc = ns.spawn('node', [CLI, ...args]);
  const line = await proc.waitForLine((l) => l.startsWith('{"event":"ready"'));
  return { proc, ready: JSON.parse(line) as Ready };
}

describe.skipIf(skip !== undefined)(`Wi-Fi phone in network namespaces${skip === undefined ? '' : ` (skipped: ${skip})`}`, () => {
  let lab: NetnsLab;
  let phoneNs: Netns;
  let hostNs: Netns;
  let fakeNs: Netns;
  let agent: NetnsAgent;
  let pairing: Pairing;
  let phone: { proc: LineProcess; ready: Ready };
  let ctl: string;
  let linkLocal: string;

  const control = async (...words: string[]): Promise<Record<string, unknown>> => {
    const result = await hostNs.run('node', [CLI, 'ctl', ctl, ...words]); // Unix sockets cross namespaces
    expect(result.code, result.stderr).toBe(0);
    return JSON.parse(result.stdout) as Record<string, unknown>;
  };

  beforeAll(async () => {
    lab = NetnsLab.create();
    const lan = lab.lan();
    phoneNs = lab.namespace('phone');
    hostNs = lab.namespace('host');
    fakeNs = lab.namespace('fake');
    lan.attach(phoneNs, 'wl0', '10.77.0.2/24');
    lan.attach(hostNs, 'eth0', '10.77.0.1/24');
    lan.attach(fakeNs, 'wl0', '10.77.0.3/24');
    linkLocal = phoneNs.addresses('wl0').linkLocal ?? '';
    expect(linkLocal).toMatch(/^fe80:/);
    pairing = makePairing();
    const state = join(lab.tmp, 'phone.json');
    writeFileSync(state, encodeIdentity(pairing.identity));
    agent = await hostNs.agent({ interfaceName: 'eth0' });
    ctl = join(lab.tmp, 'phone.sock');
    phone = await startPhone(phoneNs, ['--state', state, '--udid', UDID, '--interface', 'wl0', '--control', ctl, '--heartbeat-interval', '1']);
  });

  afterAll(async () => {
    await lab.cleanup();
    if (figures.length > 0) console.log(`\nWi-Fi phone in namespaces (this run):\n${figures.map(([k, v]) => `  ${k.padEnd(52)} ${v}`).join('\n')}`);
  });

  it('is discovered by a plain browser in another namespace, over IPv4 and IPv6 (fe80 with the zone)', async () => {
    const instance = `${HW_MAC}@${linkLocal}`;
    expect(phone.ready.advert.instance).toBe(instance);
    const v4 = await agent.waitFor((e) => e.family === 'ipv4' && ptrTo(instance)(e));
    const v6 = await agent.waitFor((e) => e.family === 'ipv6' && ptrTo(instance)(e));
    figures.push(['announcement → seen by the browser, IPv4', ms(v4.t - phone.ready.announcedAt)]);
    figures.push(['announcement → seen by the browser, IPv6', ms(v6.t - phone.ready.announcedAt)]);
    expect(v4.from).toBe('10.77.0.2');
    expect(v6.from).toBe(`${linkLocal}%eth0`);
    for (const e of [v4, v6]) {
      const records = all(e);
      expect(records.find((r) => r.type === 'SRV')?.data).toMatchObject({ port: 62078 });
      expect(records.filter((r) => r.type === 'A').map((r) => r.data)).toEqual(['10.77.0.2']);
      expect(records.filter((r) => r.type === 'AAAA').map((r) => r.data)).toEqual([linkLocal]);
    }
    // a query is answered too (not only the announcements)
    const before = agent.events.length;
    const asked = Date.now();
    await agent.query('_apple-mobdev2._tcp.local');
    const answer = await agent.waitFor(ptrTo(instance), 5000, before);
    figures.push(['PTR query → answer (wall clock, incl. agent hop)', ms(answer.t - asked)]);
  });

  it('carries TXT tags that verify against the trusted HostID, and only against it', async () => {
    const e = await agent.waitFor((x) => all(x).some((r) => r.type === 'TXT'));
    const txt = all(e).find((r) => r.type === 'TXT')?.data as Buffer[];
    expect(txt.map((b) => b.toString())).toEqual(phone.ready.advert.txt);
    expect(txtNamesHost(txt, pairing.record.hostId)).toBe(true);
    expect(txtNamesHost(txt, 'D1A3C9E4-0000-4000-8000-000000000000')).toBe(false);
  });

  it('serves lockdown over TCP from the host namespace: fe80::%zone and IPv4, TLS session with the record', async () => {
    const client = lockdownOver(await agent.dial(`${linkLocal}%eth0`, 62078));
    expect(await client.queryType()).toBe('com.apple.mobile.lockdown');
    expect(await client.getValue('UniqueDeviceID')).toBe(UDID);
    await expect(client.pair({ HostID: 'x' })).rejects.toMatchObject({ lockdownError: 'PairingProhibitedOverThisConnection' });
    await startSession(client, pairing.record);
    expect(await client.getValue('WiFiAddress')).toBe(HW_MAC);
    client.close();
    const pinned = await pinnedSession(await agent.dial('10.77.0.2', 62078), pairing.record);
    pinned.send({ Label: 'test', Request: 'GetValue', Key: 'UniqueDeviceID' });
    expect((await pinned.next())['Value']).toBe(UDID);
    pinned.stream.destroy();
  });

  it('heartbeat: Marco every Interval (1 s), Polo taken; knobs stop it, SleepyTime arrives', async () => {
    const client = lockdownOver(await agent.dial('10.77.0.2', 62078));
    await startSession(client, pairing.record);
    const service = await client.startService(HEARTBEAT_SERVICE);
    expect(service.enableServiceSsl).toBe(true);
    const hb = new PlistStream(await pinnedTls(await agent.dial('10.77.0.2', service.port), pairing.record));
    const times: number[] = [];
    for (let i = 0; i < 4; i++) {
      expect(await hb.next(3000)).toEqual({ Command: 'Marco', Interval: 1, SupportsSleepyTime: true });
      times.push(Date.now());
      hb.send({ Command: 'Polo' });
    }
    const gaps = times.slice(1).map((t, i) => t - (times[i] ?? t));
    figures.push(['Marco gaps at Interval 1 s', gaps.map((g) => `${g}`).join(', ') + ' ms']);
    for (const g of gaps) expect(Math.abs(g - 1000)).toBeLessThan(400);
    const status = await control('status');
    expect((status['heartbeat'] as { stats: { polosReceived: number } }).stats.polosReceived).toBeGreaterThanOrEqual(4);

    await control('heartbeat', 'marco=false');
    await quietFor(hb, 1200); // a Marco already on its way when the knob turned
    await expect(hb.next(2500)).rejects.toThrow(/no message/);
    await control('heartbeat', 'marco=true');
    expect((await hb.next(3000))['Command']).toBe('Marco');
    await control('sleepy');
    let m = await hb.next(3000);
    while (m['Command'] === 'Marco') m = await hb.next(3000);
    expect(m).toEqual({ Command: 'SleepyTime' });
    hb.stream.destroy();
    client.close();
  });

  it('a fake with the same UDID and the same TXT tags fails a pinned TLS session', async () => {
    const identifier = (phone.ready.advert.txt[0] ?? '').replace(/^identifier=/, '');
    const state = join(lab.tmp, 'phone.json');
    const fake = await startPhone(fakeNs, ['--state', state, '--fake', '--udid', UDID, '--interface', 'wl0', '--identifier', identifier, '--no-plain-services']);
    expect(fake.ready.advert.txt).toEqual(phone.ready.advert.txt); // tags copied: a tag match proves nothing
    const fakeLinkLocal = fakeNs.addresses('wl0').linkLocal ?? '';
    await agent.waitFor(ptrTo(`${HW_MAC}@${fakeLinkLocal}`));
    const probe = lockdownOver(await agent.dial('10.77.0.3', 62078));
    expect(await probe.getValue('UniqueDeviceID')).toBe(UDID);
    probe.close();
    const started = Date.now();
    await expect(pinnedSession(await agent.dial('10.77.0.3', 62078), pairing.record)).rejects.toBeInstanceOf(PinMismatchError);
    figures.push(['fake refused by the pin after', ms(Date.now() - started)]);
    await fake.proc.stop();
  });

  it('an IP change is announced: goodbye for the old address, the new one announced', async () => {
    const before = agent.events.length;
    const changed = Date.now();
    phoneNs.changeIpv4('wl0', '10.77.0.2/24', '10.77.0.22/24');
    const bye = await agent.waitFor((e) => all(e).some((r) => r.type === 'A' && r.data === '10.77.0.2' && r.ttl === 0), 5000, before);
    const hello = await agent.waitFor((e) => all(e).some((r) => r.type === 'A' && r.data === '10.77.0.22' && r.ttl > 0), 5000, before);
    figures.push(['IP change → new address announced (0.5 s poll)', ms(hello.t - changed)]);
    expect(bye.t).toBeLessThanOrEqual(hello.t);
    const client = lockdownOver(await agent.dial('10.77.0.22', 62078));
    expect(await client.queryType()).toBe('com.apple.mobile.lockdown');
    client.close();
  });

  it('link down: silence without FIN on an open heartbeat; link up: announced again, the connection lives on', async () => {
    const client = lockdownOver(await agent.dial('10.77.0.22', 62078));
    await startSession(client, pairing.record);
    const { port } = await client.startService(HEARTBEAT_SERVICE);
    const hb = new PlistStream(await pinnedTls(await agent.dial('10.77.0.22', port), pairing.record));
    await hb.next(3000);
    phoneNs.linkDown('wl0');
    const before = agent.events.length;
    await agent.query('_apple-mobdev2._tcp.local');
    await expect(hb.next(2500)).rejects.toThrow(/no message/); // no Marco, and no FIN or RST either
    expect(agent.events.slice(before).some((e) => e.from === '10.77.0.22')).toBe(false);
    const up = Date.now();
    phoneNs.linkUp('wl0');
    const back = await agent.waitFor((e) => e.from === '10.77.0.22' && ptrTo(`${HW_MAC}@${linkLocal}`)(e), 5000, before);
    figures.push(['link up → announced again (0.5 s poll)', ms(back.t - up)]);
    expect((await hb.next(5000))['Command']).toBe('Marco'); // retransmitted: the TCP connection survived
    hb.stream.destroy();
    client.close();
  });

  it('advert variants: private MAC, MAC-only TXT, IPv6 only', async () => {
    let before = agent.events.length;
    const priv = await control('advert', 'mac=private');
    const privInstance = (priv['advert'] as { instance: string }).instance;
    const privMac = privInstance.split('@')[0] ?? '';
    expect(privMac).not.toBe(HW_MAC);
    expect(parseInt(privMac.slice(0, 2), 16) & 0x02).toBe(0x02); // locally administered
    await agent.waitFor(ptrTo(`${HW_MAC}@${linkLocal}`, false), 5000, before); // the old name goes
    await agent.waitFor(ptrTo(privInstance), 5000, before);

    before = agent.events.length;
    await control('advert', 'mac=hardware', 'txt=mac-only');
    const old = await agent.waitFor(ptrTo(`${HW_MAC}@${linkLocal}`), 5000, before);
    const txt = all(old).find((r) => r.type === 'TXT')?.data as Buffer[];
    expect(txt.map((b) => b.length)).toEqual([0]);

    before = agent.events.length;
    await control('advert', 'txt=tags', 'families=ipv6');
    await new Promise((r) => setTimeout(r, 1500));
    const fresh = agent.events.slice(before).filter(ptrTo(`${HW_MAC}@${linkLocal}`));
    expect(fresh.length).toBeGreaterThan(0);
    expect(fresh.every((e) => e.family === 'ipv6')).toBe(true);
    expect(fresh.flatMap(all).some((r) => r.type === 'A')).toBe(false);
    await control('advert', 'families=dual');
  });

  it('Wi-Fi switch (EnableWifiConnections): off says goodbye and answers no query; the state file switching it on is followed', async () => {
    const instance = `${HW_MAC}@${linkLocal}`;
    let before = agent.events.length;
    expect(await control('wifi', 'enabled=false')).toMatchObject({ ok: true, wifiConnections: false });
    await agent.waitFor(ptrTo(instance, false), 5000, before);
    expect((await control('status'))['advert']).toBeUndefined();
    before = agent.events.length;
    await agent.query('_apple-mobdev2._tcp.local');
    await new Promise((r) => setTimeout(r, 1000));
    expect(agent.events.slice(before).some(ptrTo(instance))).toBe(false);
    // the USB side of the same phone (the bridge) writes the state file: the phone follows it
    const state = join(lab.tmp, 'phone.json');
    const switchedOn = Date.now();
    writeFileSync(state, encodeIdentity({ ...pairing.identity, wifiConnections: true }));
    const hello = await agent.waitFor(ptrTo(instance), 5000, before);
    figures.push(['state file switches Wi-Fi on → announced (0.25 s poll)', ms(hello.t - switchedOn)]);
    expect((await control('status'))['wifiConnections']).toBe(true);
  });

  it('goodbye: TTL 0 for the instance; SIGTERM says goodbye too', async () => {
    const instance = `${HW_MAC}@${linkLocal}`;
    let before = agent.events.length;
    const asked = Date.now();
    await control('goodbye');
    const bye = await agent.waitFor(ptrTo(instance, false), 5000, before);
    figures.push(['goodbye command → TTL-0 seen', ms(bye.t - asked)]);
    await control('advertise');
    await agent.waitFor(ptrTo(instance), 5000, before);
    // open connections (a session, a heartbeat) do not hold the stop up
    const client = lockdownOver(await agent.dial('10.77.0.22', 62078));
    await startSession(client, pairing.record);
    const { port } = await client.startService(HEARTBEAT_SERVICE);
    const hb = new PlistStream(await pinnedTls(await agent.dial('10.77.0.22', port), pairing.record));
    await hb.next(3000);
    before = agent.events.length;
    const stopping = Date.now();
    const code = await phone.proc.stop(8000);
    figures.push(['SIGTERM → exit, with a session and a heartbeat open', ms(Date.now() - stopping)]);
    expect(code, phone.proc.errLines.slice(-5).join('\n')).toBe(0);
    await agent.waitFor(ptrTo(instance, false), 5000, before);
  });
});
