import { describe, expect, it } from 'vitest';
import { makeHostPairRecord, pairRequest } from '../host-records.js';
import { generateDeviceKey } from '../pair-request.js';
import { Pairing } from '../pairing.js';
import { GET_PROHIBITED, NetworkLockdownResponder, PAIRING_PROHIBITED, PRE_SESSION_KEYS } from './network-lockdown.js';
import type { ServiceLauncher } from './service-launcher.js';

const UDID = '00008030-001A2B3C4D5E802E';

function responder(): { r: NetworkLockdownResponder; launched: { name: string; inSession: boolean }[]; pairing: Pairing } {
  const launched: { name: string; inSession: boolean }[] = [];
  const launcher = {
    launch(name: string, session: unknown) {
      launched.push({ name, inSession: session !== undefined });
      return name === 'com.apple.mobile.heartbeat' ? { Port: 50_001, EnableServiceSSL: true } : { Error: 'InvalidService' };
    },
  } as unknown as ServiceLauncher;
  const pairing = new Pairing({ mode: 'setup' }, { deviceKey: generateDeviceKey() });
  return { r: new NetworkLockdownResponder({ udid: UDID, pairing }, launcher), launched, pairing };
}

describe('lockdownd over the network', () => {
  it('refuses Pair even from a phone in setup (it pairs over USB only)', () => {
    const { r, pairing } = responder();
    const record = makeHostPairRecord(pairing.deviceKey.publicPem, { bits: 1024 });
    expect(r.answer(pairRequest(record))).toEqual({ Request: 'Pair', Error: PAIRING_PROHIBITED });
    expect(pairing.pairedHostIds()).toEqual([]);
  });

  it('before a session: the basic keys only; DevicePublicKey, other keys and domains are GetProhibited', () => {
    const { r } = responder();
    expect(r.answer({ Request: 'GetValue', Key: 'UniqueDeviceID' })).toEqual({ Request: 'GetValue', Key: 'UniqueDeviceID', Value: UDID });
    expect(r.answer({ Request: 'GetValue', Key: 'DevicePublicKey' })).toEqual({ Request: 'GetValue', Key: 'DevicePublicKey', Error: GET_PROHIBITED });
    expect(r.answer({ Request: 'GetValue', Key: 'NoSuchKey' })).toEqual({ Request: 'GetValue', Key: 'NoSuchKey', Error: GET_PROHIBITED });
    expect(r.answer({ Request: 'GetValue', Domain: 'com.apple.mobile.battery' })).toMatchObject({ Error: GET_PROHIBITED });
    const all = r.answer({ Request: 'GetValue' })['Value'] as Record<string, unknown>;
    expect(Object.keys(all).every((k) => PRE_SESSION_KEYS.includes(k))).toBe(true);
    expect(Object.keys(all)).toContain('ProductVersion');
  });

  it('StartService goes to the launcher with the session; QueryType stays the USB answer', () => {
    const { r, launched } = responder();
    expect(r.answer({ Request: 'StartService', Service: 'com.apple.mobile.heartbeat' })).toEqual({ Request: 'StartService', Service: 'com.apple.mobile.heartbeat', Port: 50_001, EnableServiceSSL: true });
    expect(r.answer({ Request: 'StartService', Service: 42 })).toEqual({ Request: 'StartService', Error: 'InvalidService' });
    expect(launched).toEqual([{ name: 'com.apple.mobile.heartbeat', inSession: false }]);
    expect(r.answer({ Request: 'QueryType' })).toEqual({ Request: 'QueryType', Type: 'com.apple.mobile.lockdown' });
    expect(r.startedSession).toBeUndefined();
  });
});
