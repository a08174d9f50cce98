/**
 * Preflight end to end in-process: DeviceRegistry + the emulated iPhone (with its Trust dialog)
 * + a FilePairRecordStore in a temp dir + the Preflight manager.
 */
import { once } from 'node:events';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createVirtualDevice, LOCKDOWN_PORT, MemoryTransportPair } from '../emulator/index.js';
import type { TrustMode, VirtualDevice } from '../emulator/index.js';
import type { Logger } from '../log.js';
import type { DeviceRegistry } from '../devices/index.js';
import type { MuxProvider } from '../mux/index.js';
import { muxDevices } from '../../test/support/mux-devices.js';
import type { Device } from '../devices/index.js';
import { FilePairRecordStore } from '../pairrecords/index.js';
import { isPlistDict, parsePlist } from '../plist/index.js';
import { Preflight } from './preflight.js';
import { LockdownClient, sessionCredentials } from '../lockdown/index.js';
import { silentLogger } from '../log.js';
import type { PreflightState } from './device-preflight.js';

interface Harness {
  registry: DeviceRegistry;
  mux: MuxProvider;
  store: FilePairRecordStore;
  preflight: Preflight;
  logs: Record<string, unknown>[];
  events: string[];
}

let dir = '';
let harness: Harness | undefined;
const devices: VirtualDevice[] = [];
let unhandled: unknown[] = [];
const onUnhandled = (err: unknown): void => { unhandled.push(err); };

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'muxd-preflight-'));
  unhandled = [];
  process.on('unhandledRejection', onUnhandled);
});

afterEach(async () => {
  await harness?.preflight.stop();
  await harness?.registry.shutdown();
  for (const d of devices.splice(0)) d.unplug();
  harness = undefined;
  rmSync(dir, { recursive: true, force: true });
  await new Promise((r) => setTimeout(r, 10));
  process.off('unhandledRejection', onUnhandled);
  expect(unhandled).toEqual([]);
});

function captureLogger(lines: Record<string, unknown>[]): Logger {
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  return pino({ level: 'debug' }, sink);
}

function setup(timeoutMs = 10_000): Harness {
  const logs: Record<string, unknown>[] = [];
  const log = captureLogger(logs);
  const { registry, mux } = muxDevices({ log: log.child({ layer: 'mux' }) });
  const store = new FilePairRecordStore({ dir, log });
  const preflight = new Preflight({ directory: registry, store, log, timeoutMs });
  const events: string[] = [];
  preflight.start();
  registry.on('attached', (d) => events.push(`attached ${d.id} ${preflight.stateOf(d.id) ?? 'none'}`));
  registry.on('paired', (d) => events.push(`paired ${d.id}`));
  registry.on('detached', (d) => events.push(`detached ${d.id}`));
  harness = { registry, mux, store, preflight, logs, events };
  return harness;
}

function phone(mode: TrustMode, autoTapMs = 30): VirtualDevice {
  const vd = createVirtualDevice({ emulator: { trust: { mode, autoTapMs } } });
  devices.push(vd);
  return vd;
}

async function plug(h: Harness, transport: VirtualDevice['transport'], info: VirtualDevice['info']): Promise<Device> {
  const attached = once(h.registry, 'attached') as Promise<[Device]>;
  h.mux.addDevice(transport, info);
  return (await attached)[0];
}

/** Plug the same phone again (it remembers its trusted hosts). */
async function replug(h: Harness, vd: VirtualDevice): Promise<Device> {
  vd.unplug();
  await new Promise((r) => setTimeout(r, 10));
  const pair = new MemoryTransportPair(vd.emulator);
  return plug(h, pair.host, vd.info);
}

/** Generous: RSA keys are made on a machine the whole suite shares. */
async function until(cond: () => boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function stateBecomes(h: Harness, id: number, state: PreflightState): Promise<void> {
  await until(() => h.preflight.stateOf(id) === state);
}

function recordPath(vd: VirtualDevice): string {
  return join(dir, `${vd.info.serial}.plist`);
}

async function savedHostId(vd: VirtualDevice): Promise<string> {
  const rec = parsePlist(await readFile(recordPath(vd)));
  if (!isPlistDict(rec) || typeof rec['HostID'] !== 'string') throw new Error('no HostID');
  return rec['HostID'];
}

function logged(h: Harness, pattern: RegExp): Record<string, unknown>[] {
  return h.logs.filter((l) => typeof l['msg'] === 'string' && pattern.test(l['msg']));
}

describe('preflight with the emulated iPhone', () => {
  it('first plug: Attached at once, Trust tapped → Pair → record saved 0600 → Paired', async () => {
    const h = setup();
    const vd = phone('auto');
    const paired = once(h.registry, 'paired') as Promise<[Device]>;
    const dev = await plug(h, vd.transport, vd.info);
    // Announced before preflight did anything at all.
    expect(h.events[0]).toBe(`attached ${dev.id} idle`);
    expect(h.registry.list().map((d) => d.id)).toEqual([dev.id]);
    expect((await paired)[0].id).toBe(dev.id);
    expect(h.preflight.stateOf(dev.id)).toBe('paired');
    expect(statSync(recordPath(vd)).mode & 0o777).toBe(0o600);
    const rec = parsePlist(await readFile(recordPath(vd)));
    expect(isPlistDict(rec) ? Object.keys(rec).sort() : []).toEqual([
      'DeviceCertificate', 'EscrowBag', 'HostCertificate', 'HostID', 'HostPrivateKey', 'RootCertificate', 'RootPrivateKey', 'SystemBUID', 'WiFiMACAddress',
    ]);
    expect(vd.emulator.pairing.isPairedWith(await savedHostId(vd))).toBe(true);
    expect(vd.emulator.pairing.untrustedHostBuid).toBe(await h.store.systemBuid());
    expect(vd.emulator.pairing.stats.pairRequests).toBe(2); // pending, then after the tap
    expect(h.events).toEqual([`attached ${dev.id} idle`, `paired ${dev.id}`]);
  });

  it('second plug with the saved record: StartSession over TLS succeeds, no new Pair, no prompt', async () => {
    const h = setup();
    const vd = phone('auto');
    const paired = once(h.registry, 'paired');
    await plug(h, vd.transport, vd.info);
    await paired;
    const hostId = await savedHostId(vd);
    const before = { ...vd.emulator.pairing.stats };
    const dev2 = await replug(h, vd);
    await stateBecomes(h, dev2.id, 'paired');
    const after = vd.emulator.pairing.stats;
    expect(after.pairRequests).toBe(before.pairRequests);
    expect(after.sessionsStarted).toBe(before.sessionsStarted + 1);
    expect(after.tlsHandshakes).toBe(before.tlsHandshakes + 1);
    expect(after.tlsFailures).toBe(0);
    expect(await savedHostId(vd)).toBe(hostId);
    expect(h.events.filter((e) => e.startsWith('paired'))).toHaveLength(1);
  });

  it('a phone in setup pairs at once, without the dialog', async () => {
    const h = setup();
    const vd = phone('setup');
    const paired = once(h.registry, 'paired');
    await plug(h, vd.transport, vd.info);
    await paired;
    expect(vd.emulator.pairing.stats.pairRequests).toBe(1);
    expect(vd.emulator.pairing.stats.notificationsSent).toBe(0);
  });

  it('user denies: the device stays listed, no record, the refusal is logged', async () => {
    const h = setup();
    const vd = phone('deny');
    const dev = await plug(h, vd.transport, vd.info);
    await stateBecomes(h, dev.id, 'waiting-for-trust');
    await until(() => vd.emulator.pairing.dialog === 'DENIED');
    // Don't Trust relays nothing: the host keeps waiting, nothing is saved, nothing is hidden.
    await new Promise((r) => setTimeout(r, 100));
    expect(h.registry.list().map((d) => d.id)).toEqual([dev.id]);
    expect(() => statSync(recordPath(vd))).toThrow();
    // On the next plug the phone refuses Pair outright: that refusal is what gets logged.
    const dev2 = await replug(h, vd);
    await stateBecomes(h, dev2.id, 'waiting-for-trust');
    expect(logged(h, /Don't Trust/)).toHaveLength(1);
    expect(h.registry.list().map((d) => d.id)).toEqual([dev2.id]);
    expect(() => statSync(recordPath(vd))).toThrow();
    expect(h.events.some((e) => e.startsWith('paired'))).toBe(false);
  });

  it('password protected: listed, no record, logged once; pairs once the user unlocks and taps Trust', async () => {
    const h = setup();
    const vd = phone('password');
    const dev = await plug(h, vd.transport, vd.info);
    await stateBecomes(h, dev.id, 'waiting-for-trust');
    expect(logged(h, /passcode/)).toHaveLength(1);
    expect(() => statSync(recordPath(vd))).toThrow();
    expect(h.registry.list().map((d) => d.id)).toEqual([dev.id]);
    expect(h.events.some((e) => e.startsWith('paired'))).toBe(false);
    // The user unlocks the phone: the dialog comes up, the tap relays request_pair, we pair.
    const paired = once(h.registry, 'paired');
    vd.emulator.pairing.unlock();
    await paired;
    expect(statSync(recordPath(vd)).mode & 0o777).toBe(0o600);
  });

  it('lockdown unreachable: still Attached, the reason logged once', async () => {
    const h = setup(300);
    const vd = createVirtualDevice({ emulator: { services: new Map() } });
    devices.push(vd);
    const dev = await plug(h, vd.transport, vd.info);
    await stateBecomes(h, dev.id, 'failed');
    expect(h.registry.list().map((d) => d.id)).toEqual([dev.id]);
    const lines = logged(h, /preflight failed/);
    expect(lines).toHaveLength(1);
    expect(JSON.stringify(lines[0])).toContain('MUXD_ERR_CONNECTION_REFUSED');
    expect(LOCKDOWN_PORT).toBe(62078);
  });

  it('stale record (TLS fails): record removed, pairing restarts and succeeds after the tap', async () => {
    const h = setup();
    const vd = phone('auto');
    const paired = once(h.registry, 'paired');
    await plug(h, vd.transport, vd.info);
    await paired;
    const oldHostId = await savedHostId(vd);
    expect(vd.emulator.pairing.invalidateSessionCertificates(oldHostId)).toBe(true);
    const pairedAgain = once(h.registry, 'paired') as Promise<[Device]>;
    const dev2 = await replug(h, vd);
    expect((await pairedAgain)[0].id).toBe(dev2.id);
    const newHostId = await savedHostId(vd);
    expect(newHostId).not.toBe(oldHostId);
    expect(vd.emulator.pairing.stats.tlsFailures).toBe(1);
    expect(logged(h, /deleting the stale record/)).toHaveLength(1);
  });

  it('request_host_buid → SetValue UntrustedHostBUID again', async () => {
    const h = setup();
    const vd = phone('wait');
    const dev = await plug(h, vd.transport, vd.info);
    await stateBecomes(h, dev.id, 'waiting-for-trust');
    const buid = await h.store.systemBuid();
    vd.emulator.pairing.untrustedHostBuid = undefined;
    vd.emulator.pairing.requestHostBuid();
    await until(() => vd.emulator.pairing.untrustedHostBuid === buid);
    expect(h.preflight.stateOf(dev.id)).toBe('waiting-for-trust');
    const paired = once(h.registry, 'paired');
    vd.emulator.pairing.tapTrust();
    await paired;
  });

  it('detach mid-preflight: cancelled, no leaks, no unhandled rejections', async () => {
    const h = setup();
    const vd = phone('wait');
    const dev = await plug(h, vd.transport, vd.info);
    await stateBecomes(h, dev.id, 'waiting-for-trust');
    const detached = once(h.registry, 'detached');
    vd.unplug();
    await detached;
    expect(h.preflight.stateOf(dev.id)).toBeUndefined();
    vd.emulator.pairing.tapTrust();
    await new Promise((r) => setTimeout(r, 50));
    expect(h.events.some((e) => e.startsWith('paired'))).toBe(false);
    expect(logged(h, /preflight failed/)).toHaveLength(0);
  });

  it('detach at every early step ends cleanly', async () => {
    for (const delayMs of [0, 1, 3, 8, 20]) {
      const h = setup();
      const vd = phone('auto');
      const dev = await plug(h, vd.transport, vd.info);
      await new Promise((r) => setTimeout(r, delayMs));
      vd.unplug();
      await until(() => h.preflight.stateOf(dev.id) === undefined);
      await h.preflight.stop();
      await h.registry.shutdown();
      expect(logged(h, /preflight failed/), `detach after ${delayMs} ms`).toHaveLength(0);
    }
  });

  it('daemon stop mid-preflight returns promptly and leaves nothing running', async () => {
    const h = setup();
    const vd = phone('wait');
    const dev = await plug(h, vd.transport, vd.info);
    await stateBecomes(h, dev.id, 'waiting-for-trust');
    const t0 = Date.now();
    await h.preflight.stop();
    expect(Date.now() - t0).toBeLessThan(500);
    vd.emulator.pairing.tapTrust();
    await new Promise((r) => setTimeout(r, 50));
    expect(h.events.some((e) => e.startsWith('paired'))).toBe(false);
  });

  it('a network device is not preflighted (proven paired before it is announced; pairing over Wi-Fi is refused)', async () => {
    const h = setup();
    const connects: number[] = [];
    const device = h.registry.add(
      { connectionType: 'Network', serial: '00008030-001A2B3C4D5E6F70', address: '10.0.0.2', family: 4, interfaceIndex: 2, escapedFullServiceName: undefined },
      (context) => ({
        start: () => { context.ready(); },
        connect: (port: number) => { connects.push(port); return Promise.reject(new Error('no')); },
        shutdown: () => { context.gone(); return Promise.resolve(); },
      }),
    );
    await new Promise((r) => setTimeout(r, 20));
    expect(h.events).toEqual([`attached ${device.id} none`]);
    expect(h.preflight.stateOf(device.id)).toBeUndefined();
    expect(connects).toEqual([]);
  });

  it('one preflight per device, several devices at once', async () => {
    const h = setup();
    const a = phone('auto');
    const b = createVirtualDevice({ emulator: { udid: '00008030-001A2B3C4D5E8030', trust: { mode: 'auto', autoTapMs: 30 } } });
    devices.push(b);
    const pairedIds = new Set<number>();
    h.registry.on('paired', (d) => pairedIds.add(d.id));
    h.mux.addDevice(a.transport, a.info);
    h.mux.addDevice(b.transport, b.info);
    await until(() => h.registry.list().length === 2);
    const [da, db] = h.registry.list() as [Device, Device];
    await until(() => pairedIds.size === 2, 25_000);
    expect([...pairedIds].sort()).toEqual([da.id, db.id].sort());
    expect(a.emulator.pairing.stats.pairSuccesses).toBe(1);
    expect(b.emulator.pairing.stats.pairSuccesses).toBe(1);
  });
});

describe('LockdownClient against the emulated iPhone', () => {
  it('StartSession with the record preflight saved → TLS → GetValue → StopSession → plain text again', async () => {
    const h = setup();
    const vd = phone('setup');
    const paired = once(h.registry, 'paired') as Promise<[Device]>;
    await plug(h, vd.transport, vd.info);
    const [dev] = await paired;
    const creds = sessionCredentials(await h.store.read(vd.info.serial));
    const lockdown = await LockdownClient.connect(dev, { log: silentLogger(), timeoutMs: 10_000 });
    try {
      const session = await lockdown.startSession({ hostId: creds.hostId, systemBuid: await h.store.systemBuid(), cert: creds.hostCertificate, key: creds.hostPrivateKey });
      expect(session.tls).toBe(true);
      expect(lockdown.inSession).toBe(true);
      expect(await lockdown.getValue('ProductVersion')).toBe('17.5');
      await lockdown.stopSession();
      expect(lockdown.inSession).toBe(false);
      expect(await lockdown.queryType()).toBe('com.apple.mobile.lockdown');
      expect(vd.emulator.pairing.stats.tlsFailures).toBe(0);
    } finally {
      lockdown.close();
    }
  });
});
