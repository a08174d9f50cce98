import fc from 'fast-check';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { makeHostPairRecord, pairRequest } from './host-records.js';
import type { HostPairRecord } from './host-records.js';
import { generateDeviceKey } from './pair-request.js';
import type { DeviceKey } from './pair-request.js';
import { NOTIFICATION_REQUEST_HOST_BUID, NOTIFICATION_REQUEST_PAIR, Pairing } from './pairing.js';
import type { TrustMode, TrustOptions } from './pairing.js';

/** One phone key for every test (RSA generation is the slow part); pairings share it. */
let phoneKey: DeviceKey;
let hostA: HostPairRecord;
let hostB: HostPairRecord;

function pairing(options: TrustOptions): Pairing {
  return new Pairing(options, { deviceKey: phoneKey });
}

beforeAll(() => {
  phoneKey = generateDeviceKey();
  hostA = makeHostPairRecord(phoneKey.publicPem, { bits: 1024 });
  hostB = makeHostPairRecord(phoneKey.publicPem, { bits: 1024 });
});

afterEach(() => {
  vi.useRealTimers();
});

describe('trust modes', () => {
  it('setup: Pair succeeds at once with an EscrowBag; no dialog, no notification', () => {
    const p = pairing({ mode: 'setup' });
    const seen: string[] = [];
    p.observe((n) => (seen.push(n), true));
    const reply = p.pair(pairRequest(hostA));
    expect(reply['Request']).toBe('Pair');
    expect(reply['Error']).toBeUndefined();
    expect(Buffer.isBuffer(reply['EscrowBag']) && reply['EscrowBag'].length).toBe(32);
    expect(p.dialog).toBe('NONE');
    expect(p.isPairedWith(hostA.hostId)).toBe(true);
    expect(seen).toEqual([]);
    expect(p.stats).toMatchObject({ pairRequests: 1, pairSuccesses: 1, notificationsSent: 0 });
  });

  it('auto: pending, the tap after autoTapMs relays request_pair, then Pair succeeds', () => {
    vi.useFakeTimers();
    const p = pairing({ mode: 'auto', autoTapMs: 300 });
    const seen: string[] = [];
    p.observe((n) => (seen.push(n), true));
    expect(p.pair(pairRequest(hostA))).toEqual({ Request: 'Pair', Error: 'PairingDialogResponsePending' });
    expect(p.dialog).toBe('PENDING');
    vi.advanceTimersByTime(299);
    expect(p.pair(pairRequest(hostA))).toEqual({ Request: 'Pair', Error: 'PairingDialogResponsePending' });
    vi.advanceTimersByTime(1);
    expect(p.dialog).toBe('TRUSTED');
    expect(seen).toEqual([NOTIFICATION_REQUEST_PAIR]);
    expect(p.pair(pairRequest(hostA))['Error']).toBeUndefined();
    expect(p.dialog).toBe('NONE');
    expect(p.pairedHostIds()).toEqual([hostA.hostId]);
    expect(p.stats.notificationsSent).toBe(1);
  });

  it('reports dialog changes, Pair answers and sessions to onEvent', () => {
    const p = pairing({ mode: 'wait' });
    const events: unknown[] = [];
    p.onEvent = (e) => events.push(e);
    p.pair(pairRequest(hostA));
    p.tapTrust();
    p.pair(pairRequest(hostA));
    p.startSession(hostA.hostId);
    expect(events).toEqual([
      { kind: 'dialog', state: 'PENDING' },
      { kind: 'pair', hostId: hostA.hostId, error: 'PairingDialogResponsePending' },
      { kind: 'dialog', state: 'TRUSTED' },
      { kind: 'pair', hostId: hostA.hostId, error: undefined },
      { kind: 'dialog', state: 'NONE' },
      { kind: 'session', hostId: hostA.hostId },
    ]);
  });

  it('wait: nobody taps until tapTrust(); tapDontTrust() denies for good', () => {
    vi.useFakeTimers();
    const p = pairing({ mode: 'wait', autoTapMs: 10 });
    expect(p.tapTrust()).toBe(false); // no dialog yet
    expect(p.pair(pairRequest(hostA))['Error']).toBe('PairingDialogResponsePending');
    vi.advanceTimersByTime(10_000);
    expect(p.dialog).toBe('PENDING');
    expect(p.tapDontTrust()).toBe(true);
    expect(p.pair(pairRequest(hostA))['Error']).toBe('UserDeniedPairing');
    expect(p.tapTrust()).toBe(false);
    expect(p.pair(pairRequest(hostB))['Error']).toBe('UserDeniedPairing');
  });

  it('deny: the user taps Don\'t Trust after autoTapMs, without a notification', () => {
    vi.useFakeTimers();
    const p = pairing({ mode: 'deny', autoTapMs: 50 });
    const seen: string[] = [];
    p.observe((n) => (seen.push(n), true));
    expect(p.pair(pairRequest(hostA))['Error']).toBe('PairingDialogResponsePending');
    vi.advanceTimersByTime(50);
    expect(p.dialog).toBe('DENIED');
    expect(p.pair(pairRequest(hostA))['Error']).toBe('UserDeniedPairing');
    expect(seen).toEqual([]);
  });

  it('password: PasswordProtected until unlock(), then the dialog as in auto', () => {
    vi.useFakeTimers();
    const p = pairing({ mode: 'password', autoTapMs: 5 });
    expect(p.pair(pairRequest(hostA))['Error']).toBe('PasswordProtected');
    vi.advanceTimersByTime(100);
    expect(p.pair(pairRequest(hostA))['Error']).toBe('PasswordProtected');
    p.unlock();
    expect(p.pair(pairRequest(hostA))['Error']).toBe('PairingDialogResponsePending');
    vi.advanceTimersByTime(5);
    expect(p.pair(pairRequest(hostA))['Error']).toBeUndefined();
  });

  it('password: a host that tried while locked gets the dialog at unlock, and the tap relays request_pair', () => {
    vi.useFakeTimers();
    const p = pairing({ mode: 'password', autoTapMs: 5 });
    const seen: string[] = [];
    p.observe((n) => (seen.push(n), true));
    p.unlock(); // nobody tried yet: nothing shows
    expect(p.dialog).toBe('NONE');
    const locked = pairing({ mode: 'password', autoTapMs: 5 });
    locked.observe((n) => (seen.push(n), true));
    expect(locked.pair(pairRequest(hostA))['Error']).toBe('PasswordProtected');
    expect(locked.dialog).toBe('NONE');
    locked.unlock();
    expect(locked.dialog).toBe('PENDING');
    vi.advanceTimersByTime(5);
    expect(locked.dialog).toBe('TRUSTED');
    expect(seen).toEqual([NOTIFICATION_REQUEST_PAIR]);
    expect(locked.pair(pairRequest(hostA))['Error']).toBeUndefined();
  });

  it('a paired host pairs again without a dialog; a forgotten one needs the dialog again', () => {
    const p = pairing({ mode: 'wait' });
    p.pair(pairRequest(hostA));
    p.tapTrust();
    expect(p.pair(pairRequest(hostA))['Error']).toBeUndefined();
    expect(p.pair(pairRequest(hostA))['Error']).toBeUndefined();
    expect(p.forgetHost(hostA.hostId)).toBe(true);
    expect(p.forgetHost(hostA.hostId)).toBe(false);
    expect(p.startSession(hostA.hostId)).toBe('InvalidHostID');
    expect(p.pair(pairRequest(hostA))['Error']).toBe('PairingDialogResponsePending');
  });

  it('requestHostBuid relays request_host_buid; observers can unsubscribe', () => {
    const p = pairing({});
    const seen: string[] = [];
    const stop = p.observe((n) => (seen.push(n), true));
    p.requestHostBuid();
    stop();
    p.requestHostBuid();
    expect(seen).toEqual([NOTIFICATION_REQUEST_HOST_BUID]);
    expect(p.stats.notificationsSent).toBe(1);
  });
});

describe('Pair shape checks (InvalidPairRecord, never the dialog)', () => {
  const record = (over: Record<string, unknown>): Record<string, unknown> => {
    const base = pairRequest(hostA) as Record<string, unknown>;
    return { ...base, PairRecord: { ...(base['PairRecord'] as Record<string, unknown>), ...over } };
  };
  const cases: [string, () => Record<string, unknown>, RegExp][] = [
    ['no PairRecord', () => ({ Request: 'Pair', ProtocolVersion: '2' }), /PairRecord is not a dictionary/],
    ['PairRecord an array', () => ({ ...pairRequest(hostA), PairRecord: ['x'] }), /PairRecord is not a dictionary/],
    ['ProtocolVersion 1', () => ({ ...pairRequest(hostA), ProtocolVersion: '1' }), /ProtocolVersion/],
    ['ProtocolVersion as a number', () => ({ ...pairRequest(hostA), ProtocolVersion: 2 }), /ProtocolVersion/],
    ['PairingOptions a string', () => ({ ...pairRequest(hostA), PairingOptions: 'yes' }), /PairingOptions/],
    ['HostID missing', () => record({ HostID: undefined }), /HostID/],
    ['HostID a number', () => record({ HostID: 7 }), /HostID/],
    ['SystemBUID empty', () => record({ SystemBUID: '' }), /SystemBUID/],
    ['HostCertificate a string', () => record({ HostCertificate: hostA.hostCertificatePem }), /HostCertificate/],
    ['RootCertificate garbage data', () => record({ RootCertificate: Buffer.from('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n') }), /RootCertificate/],
    ['DeviceCertificate missing', () => record({ DeviceCertificate: undefined }), /DeviceCertificate/],
    ['DeviceCertificate for another key', () => record({ DeviceCertificate: Buffer.from(hostA.hostCertificatePem) }), /public key is not the phone's/],
  ];
  for (const [name, make, why] of cases) {
    it(name, () => {
      const p = pairing({ mode: 'wait' });
      expect(p.pair(make())).toEqual({ Request: 'Pair', Error: 'InvalidPairRecord' });
      expect(p.lastRejection).toMatch(why);
      expect(p.dialog).toBe('NONE');
      const setup = pairing({ mode: 'setup' });
      expect(setup.pair(make())['Error']).toBe('InvalidPairRecord');
      expect(setup.pairedHostIds()).toEqual([]);
    });
  }

  it('ValidatePair: success for the paired host and its certificate, InvalidHostID otherwise', () => {
    const p = pairing({ mode: 'setup' });
    expect(p.validatePair(pairRequest(hostA, 'ValidatePair'))).toEqual({ Request: 'ValidatePair', Error: 'InvalidHostID' });
    p.pair(pairRequest(hostA));
    expect(p.validatePair(pairRequest(hostA, 'ValidatePair'))).toEqual({ Request: 'ValidatePair' });
    const wrongCert = { ...pairRequest(hostA, 'ValidatePair'), PairRecord: { HostID: hostA.hostId, HostCertificate: Buffer.from(hostB.hostCertificatePem) } };
    expect(p.validatePair(wrongCert)).toEqual({ Request: 'ValidatePair', Error: 'InvalidHostID' });
    expect(p.validatePair({ Request: 'ValidatePair', PairRecord: { HostID: hostA.hostId } })).toEqual({ Request: 'ValidatePair' });
    expect(p.validatePair({ Request: 'ValidatePair' })).toEqual({ Request: 'ValidatePair', Error: 'InvalidPairRecord' });
  });

  it('Unpair forgets the host (then InvalidHostID); a malformed one is InvalidPairRecord', () => {
    const p = pairing({ mode: 'setup' });
    p.pair(pairRequest(hostA));
    expect(p.unpair({ Request: 'Unpair', PairRecord: { HostID: hostA.hostId } })).toEqual({ Request: 'Unpair' });
    expect(p.isPairedWith(hostA.hostId)).toBe(false);
    expect(p.unpair({ Request: 'Unpair', PairRecord: { HostID: hostA.hostId } })).toEqual({ Request: 'Unpair', Error: 'InvalidHostID' });
    expect(p.unpair({ Request: 'Unpair' })).toEqual({ Request: 'Unpair', Error: 'InvalidPairRecord' });
  });

  it('the device key is generated once, lazily, as PKCS#1 PEM', () => {
    const p = new Pairing();
    const first = p.deviceKey;
    expect(p.deviceKey).toBe(first);
    expect(first.publicPem).toMatch(/^-----BEGIN RSA PUBLIC KEY-----\n/);
    expect(first.publicKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
  });
});

type Step = { kind: 'pair'; host: 0 | 1 } | { kind: 'tap' } | { kind: 'deny' } | { kind: 'forget'; host: 0 | 1 } | { kind: 'unlock' } | { kind: 'time' };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant('pair' as const), host: fc.constantFrom(0 as const, 1 as const) }),
  fc.constant({ kind: 'tap' as const }),
  fc.constant({ kind: 'deny' as const }),
  fc.record({ kind: fc.constant('forget' as const), host: fc.constantFrom(0 as const, 1 as const) }),
  fc.constant({ kind: 'unlock' as const }),
  fc.constant({ kind: 'time' as const }),
);

describe('trust dialog state machine (property)', () => {
  it('Pair never succeeds before trust (except setup mode or an already paired host); denial is final; one notification per Trust tap', () => {
    vi.useFakeTimers();
    const modes: TrustMode[] = ['auto', 'wait', 'deny', 'password', 'setup'];
    fc.assert(
      fc.property(fc.constantFrom(...modes), fc.array(stepArb, { maxLength: 40 }), (mode, steps) => {
        const p = pairing({ mode, autoTapMs: 100 });
        const hosts = [hostA, hostB] as const;
        let notifications = 0;
        p.observe(() => (notifications++, true));
        let trustTaps = 0;
        let deniedEver = false;
        for (const step of steps) {
          const before = p.dialog;
          const wasTrusted = before === 'TRUSTED';
          switch (step.kind) {
            case 'pair': {
              const host = hosts[step.host];
              const paired = p.isPairedWith(host.hostId);
              const reply = p.pair(pairRequest(host));
              const ok = reply['Error'] === undefined;
              if (ok) expect(mode === 'setup' || paired || wasTrusted).toBe(true);
              if (!ok) expect(['PairingDialogResponsePending', 'UserDeniedPairing', 'PasswordProtected']).toContain(reply['Error']);
              if (deniedEver && !paired && mode !== 'setup') expect(reply['Error']).toBe('UserDeniedPairing');
              if (mode === 'setup') expect(ok).toBe(true);
              break;
            }
            case 'tap':
              if (p.tapTrust()) trustTaps++;
              else expect(before).not.toBe('PENDING');
              break;
            case 'deny':
              if (p.tapDontTrust()) deniedEver = true;
              break;
            case 'forget':
              p.forgetHost(hosts[step.host].hostId);
              expect(p.isPairedWith(hosts[step.host].hostId)).toBe(false);
              break;
            case 'unlock':
              p.unlock();
              break;
            case 'time': {
              const pending = p.dialog === 'PENDING';
              vi.advanceTimersByTime(100);
              if (pending && (mode === 'auto' || mode === 'password')) {
                expect(p.dialog).toBe('TRUSTED');
                trustTaps++;
              }
              if (pending && mode === 'deny') {
                expect(p.dialog).toBe('DENIED');
                deniedEver = true;
              }
              if (pending && mode === 'wait') expect(p.dialog).toBe('PENDING');
              break;
            }
          }
          if (deniedEver) expect(p.dialog).toBe('DENIED');
          if (mode === 'setup') expect(p.dialog).toBe('NONE');
          expect(notifications).toBe(trustTaps);
        }
        vi.clearAllTimers();
      }),
      { numRuns: 300 },
    );
  });
});

describe('device key', () => {
  it('prepareKey makes the key off the event loop once; deviceKey then returns that key', async () => {
    const p = new Pairing({ mode: 'wait' });
    let turns = 0;
    const ticker = setInterval(() => { turns++; }, 1);
    const [a, b] = await Promise.all([p.prepareKey(), p.prepareKey()]);
    clearInterval(ticker);
    expect(a).toBe(b);
    expect(p.deviceKey).toBe(a);
    expect(a.publicPem).toMatch(/^-----BEGIN RSA PUBLIC KEY-----/);
    expect(turns).toBeGreaterThan(0); // the loop kept turning while the key was made
  });
});
