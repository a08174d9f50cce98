/**
 * The network provider against emulated Wi-Fi phones on loopback addresses (real TCP, real TLS,
 * the phone's own lockdownd and heartbeat; no multicast): what is announced, when, and what a
 * client's Connect reaches.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DeviceRegistry } from '../../src/devices/index.js';
import type { CloseReason, Device, DeviceConnection } from '../../src/devices/index.js';
import { Pairing as PhonePairing } from '../../src/emulator/pairing.js';
import { fakeIdentityOf } from '../../src/emulator/network/fake-phone.js';
import { startLoopbackFace } from '../../src/emulator/network/wifi-phone.js';
import type { NetworkPhone } from '../../src/emulator/network/wifi-phone.js';
import { silentLogger } from '../../src/log.js';
import { NetworkProvider } from '../../src/network/index.js';
import type { Advert } from '../../src/network/index.js';
import { computeAuthTag } from '../../src/network/identity.js';
import { FilePairRecordStore } from '../../src/pairrecords/index.js';
import { buildXml } from '../../src/plist/index.js';
import { makePairing, pairRecordOf } from '../support/wifi-host.js';
import type { Pairing } from '../support/wifi-host.js';

const UDID = '00008120-0011223344556677';
const MAC = 'a4:c3:f0:12:34:56';

let pairing: Pairing;
let dir: string;
const cleanups: (() => Promise<void> | void)[] = [];

beforeAll(() => {
  pairing = makePairing();
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function recordPlist(p: Pairing): Buffer {
  return buildXml(pairRecordOf(p, MAC));
}

interface Stack {
  readonly registry: DeviceRegistry;
  readonly provider: NetworkProvider;
  readonly events: string[];
}

async function stack(opts: { graceMs?: number } = {}): Promise<Stack> {
  dir = mkdtempSync(join(tmpdir(), 'muxd-netprov-'));
  const store = new FilePairRecordStore({ dir });
  await store.save(UDID, recordPlist(pairing));
  const registry = new DeviceRegistry({ log: silentLogger() });
  const events: string[] = [];
  registry.on('attached', (d) => events.push(`attached ${d.id} ${d.info.connectionType}`));
  registry.on('detached', (d) => events.push(`detached ${d.id}`));
  const provider = new NetworkProvider({
    directory: registry,
    records: store,
    log: silentLogger(),
    initialBackoffMs: 50,
    maxBackoffMs: 200,
    timeoutMs: 2000,
    ...(opts.graceMs === undefined ? {} : { graceMs: () => opts.graceMs ?? 0 }),
  });
  cleanups.push(async () => {
    await provider.stop();
    await registry.shutdown();
    rmSync(dir, { recursive: true, force: true });
  });
  return { registry, provider, events };
}

async function phone(identity = pairing.identity, heartbeatS = 0.2): Promise<NetworkPhone> {
  const p = await startLoopbackFace({ udid: UDID, pairing: new PhonePairing({}, identity) }, { heartbeat: { intervalSeconds: heartbeatS }, servicePorts: { echo: 0, discard: 0, source: 0 } });
  cleanups.push(() => p.stop());
  return p;
}

function advertFor(p: NetworkPhone, opts: { tags?: boolean; mac?: string } = {}): Advert {
  const identifier = Buffer.from('5C0F3B4A-2D1E-4F60-8A7B-9C8D7E6F5A4B');
  return {
    instance: `${opts.mac ?? MAC}@fe80::1`,
    fullServiceName: `${opts.mac ?? MAC}@fe80::1._apple-mobdev2._tcp.local.`,
    mac: opts.mac ?? MAC,
    identifier,
    authTags: opts.tags === false ? [] : [Buffer.from(computeAuthTag(pairing.record.hostId, identifier).toString('base64'))],
    addresses: [{ address: p.bind, family: 4, interfaceIndex: 1 }],
  };
}

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

function networkDevice(s: Stack): Device | undefined {
  return s.registry.list().find((d) => d.info.connectionType === 'Network');
}

/** A client's tunnel, reduced to what the test checks. */
function sinkOf(conn: DeviceConnection): { data: Buffer[]; closed: CloseReason | undefined } {
  const state: { data: Buffer[]; closed: CloseReason | undefined } = { data: [], closed: undefined };
  conn.attach({ onData: (p, done) => { state.data.push(p); done(); }, onWritable: () => undefined, onClose: (r) => { state.closed = r; } });
  return state;
}

describe('network provider with emulated Wi-Fi phones', () => {
  it('an advert whose auth tag names a record is proven, then announced with its address and service name', async () => {
    const s = await stack();
    const p = await phone();
    await s.provider.advertUp(advertFor(p));
    await until(() => networkDevice(s) !== undefined);
    const d = networkDevice(s);
    expect(d?.info).toEqual({ connectionType: 'Network', serial: UDID, address: p.bind, family: 4, interfaceIndex: 1, escapedFullServiceName: `${MAC}@fe80::1._apple-mobdev2._tcp.local.` });
    expect(s.provider.states().get(UDID)).toBe('up');
    // the heartbeat is held: several Polos reached the phone
    await until(() => p.heartbeat.stats.polosReceived >= 2, 5000);
  });

  it('an old MAC-only advert matches by WiFiMACAddress; a stranger\'s advert is not announced', async () => {
    const s = await stack();
    const p = await phone();
    await s.provider.advertUp({ ...advertFor(p, { tags: false, mac: 'de:ad:be:ef:00:01' }), instance: 'x' });
    await new Promise((r) => setTimeout(r, 200));
    expect(networkDevice(s)).toBeUndefined();
    expect(s.provider.states().size).toBe(0);
    await s.provider.advertUp(advertFor(p, { tags: false }));
    await until(() => networkDevice(s) !== undefined);
  });

  it('a fake phone with the real advert (no device key) is never announced, and is not dialled forever', async () => {
    const s = await stack();
    const fake = await phone(await fakeIdentityOf(pairing.identity));
    await s.provider.advertUp(advertFor(fake));
    await until(() => s.provider.states().get(UDID) === 'waiting');
    await new Promise((r) => setTimeout(r, 300));
    expect(networkDevice(s)).toBeUndefined();
    expect(s.events).toEqual([]);
  });

  it('Connect is proxied: echo round trip; a closed port is refused; a lost heartbeat detaches and resets tunnels; the phone comes back by itself', async () => {
    const s = await stack({ graceMs: 100 });
    const p = await phone();
    await s.provider.advertUp(advertFor(p));
    await until(() => networkDevice(s) !== undefined);
    const d = networkDevice(s)!;
    const echoPort = p.status().ports['echo'];
    expect(echoPort).toBeGreaterThan(0);
    const conn = await d.connect(echoPort!);
    const sink = sinkOf(conn);
    conn.write(Buffer.from('marco?'));
    await until(() => Buffer.concat(sink.data).toString() === 'marco?');
    await expect(d.connect(1)).rejects.toMatchObject({ code: 'MUXD_ERR_CONNECTION_REFUSED' });

    // The phone stops its heartbeat: Detached after Interval + grace, the tunnel ends.
    p.heartbeat.knobs.sendMarco = false;
    const t0 = Date.now();
    await until(() => s.events.includes(`detached ${d.id}`), 5000);
    const lostAfter = Date.now() - t0;
    expect(lostAfter).toBeLessThan(2000);
    await until(() => sink.closed !== undefined);
    expect(sink.closed).toBe('device-gone');
    await expect(d.connect(echoPort!)).rejects.toMatchObject({ code: 'MUXD_ERR_DEVICE_GONE' });

    // It answers again: a new session, a new DeviceID, without any new advert.
    p.heartbeat.knobs.sendMarco = true;
    await until(() => s.events.filter((e) => e.startsWith('attached')).length === 2, 5000);
    const again = networkDevice(s)!;
    expect(again.id).not.toBe(d.id);
    expect(again.info.serial).toBe(UDID);
  });

  it('a manual device by address: its UDID is asked, then it is proven like an advertised one', async () => {
    const s = await stack();
    const p = await phone();
    expect(await s.provider.addManual({ address: p.bind, family: 4, interfaceIndex: 0 }, undefined, true)).toBe(UDID);
    await until(() => networkDevice(s) !== undefined);
    const info = networkDevice(s)?.info;
    expect(info?.connectionType === 'Network' ? info.escapedFullServiceName : 'not network').toBeUndefined();
    expect(s.provider.removeManual({ address: p.bind })).toBe(true);
    await until(() => networkDevice(s) === undefined);
    await expect(s.provider.addManual({ address: p.bind, family: 4, interfaceIndex: 0 }, '00008120-0000000000000000', true)).rejects.toMatchObject({ code: 'MUXD_ERR_NETWORK_IDENTITY' });
  });

  it('stop() ends every session and nothing dials afterwards', async () => {
    const s = await stack();
    const p = await phone();
    await s.provider.advertUp(advertFor(p));
    await until(() => networkDevice(s) !== undefined);
    await s.provider.stop();
    const open = p.status().heartbeat.open;
    await until(() => p.status().heartbeat.open < open || open === 0, 3000);
    const stats = p.status().heartbeat.stats;
    await new Promise((r) => setTimeout(r, 400));
    expect(p.status().heartbeat.stats).toEqual(stats);
  });
});
