import { describe, expect, it } from 'vitest';
import { makeHostPairRecord, pairRequest } from './host-records.js';
import { generateDeviceKey } from './pair-request.js';
import { Pairing } from './pairing.js';
import { decodeIdentity, encodeIdentity } from './pairing-state.js';

describe('phone identity as JSON', () => {
  it('round trip: same key, same hosts (certificates, EscrowBag, stale flag)', () => {
    const key = generateDeviceKey();
    const p = new Pairing({ mode: 'setup' }, { deviceKey: key });
    const a = makeHostPairRecord(key.publicPem, { bits: 1024 });
    const b = makeHostPairRecord(key.publicPem, { bits: 1024 });
    p.pair(pairRequest(a));
    p.pair(pairRequest(b));
    p.invalidateSessionCertificates(b.hostId);
    const decoded = decodeIdentity(encodeIdentity(p.identity()));
    if (typeof decoded === 'string') throw new Error(decoded);
    expect(decoded.deviceKey.publicPem).toBe(key.publicPem);
    expect(decoded.deviceKey.publicKey.equals(key.publicKey)).toBe(true);
    expect(decoded.hosts).toEqual(p.identity().hosts);
    const restored = new Pairing({ mode: 'wait' }, decoded);
    expect(restored.pairedHostIds().sort()).toEqual([a.hostId, b.hostId].sort());
    expect(restored.host(b.hostId)?.sessionCertificatesValid).toBe(false);
    // A paired host pairs again at once, no dialog, even in wait mode.
    expect(restored.pair(pairRequest(a))['Error']).toBeUndefined();
    expect(restored.dialog).toBe('NONE');
  });

  it('keeps the Wi-Fi switch; a file written before it existed is a phone with Wi-Fi connections off', () => {
    const key = generateDeviceKey();
    const on = decodeIdentity(encodeIdentity({ deviceKey: key, hosts: [], wifiConnections: true }));
    if (typeof on === 'string') throw new Error(on);
    expect(on.wifiConnections).toBe(true);
    expect(new Pairing({}, on).wifiConnections).toBe(true);
    const old = JSON.parse(encodeIdentity({ deviceKey: key, hosts: [] })) as Record<string, unknown>;
    expect(old['enableWifiConnections']).toBe(false);
    delete old['enableWifiConnections'];
    const decoded = decodeIdentity(JSON.stringify(old));
    if (typeof decoded === 'string') throw new Error(decoded);
    expect(decoded.wifiConnections).toBe(false);
    expect(decodeIdentity(JSON.stringify({ ...old, enableWifiConnections: 'yes' }))).toMatch(/enableWifiConnections/);
  });

  it('adopt(): hosts and switch from another process; listeners hear only of a change; the key stays', () => {
    const key = generateDeviceKey();
    const p = new Pairing({ mode: 'setup' }, { deviceKey: key });
    let heard = 0;
    p.onIdentityChange(() => heard++);
    const a = makeHostPairRecord(key.publicPem, { bits: 1024 });
    const other = new Pairing({ mode: 'setup' }, { deviceKey: key });
    other.pair(pairRequest(a));
    p.adopt(other.identity());
    expect(p.pairedHostIds()).toEqual([a.hostId]);
    expect(heard).toBe(1);
    p.adopt(other.identity());
    expect(heard).toBe(1);
    p.adopt({ ...other.identity(), wifiConnections: true });
    expect(p.wifiConnections).toBe(true);
    expect(heard).toBe(2);
    p.adopt({ hosts: [] });
    expect(p.pairedHostIds()).toEqual([]);
    expect(p.wifiConnections).toBe(false);
    expect(p.deviceKey).toBe(key);
    expect(heard).toBe(3);
  });

  it('rejects what it did not write', () => {
    expect(decodeIdentity('[]')).toMatch(/version 1/);
    expect(decodeIdentity('{"version":2}')).toMatch(/version 1/);
    expect(decodeIdentity('{"version":1,"hosts":[]}')).toMatch(/missing/);
    const key = generateDeviceKey();
    expect(decodeIdentity(JSON.stringify({ version: 1, devicePrivateKeyPem: key.privatePem, hosts: [{ hostId: 'x' }] }))).toMatch(/host entry/);
    expect(decodeIdentity('{')).toMatch(/not JSON/);
  });
});
