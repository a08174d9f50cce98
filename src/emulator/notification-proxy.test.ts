import plist from 'plist';
import { describe, expect, it } from 'vitest';
import { FakeServiceConnection } from './fake-connection.js';
import { binaryFrame, makeHostPairRecord, pairRequest } from './host-records.js';
import { generateDeviceKey } from './pair-request.js';
import { NOTIFICATION_PROXY_PORT, frameLockdownMessage } from './lockdown.js';
import { LockdownFrameReader } from './lockdown-frames.js';
import { createNotificationProxyService } from './notification-proxy.js';
import { NOTIFICATION_REQUEST_HOST_BUID, NOTIFICATION_REQUEST_PAIR, Pairing } from './pairing.js';

function open(pairing: Pairing): { conn: FakeServiceConnection; send(bytes: Buffer): void; received(): Record<string, unknown>[] } {
  const service = createNotificationProxyService(pairing);
  const messages: Record<string, unknown>[] = [];
  const reader = new LockdownFrameReader({
    onMessage: (m) => messages.push(m),
    onBad: (reason) => {
      throw new Error(reason);
    },
  });
  const conn = new FakeServiceConnection(NOTIFICATION_PROXY_PORT, (data) => {
    reader.push(Buffer.from(data));
  }, () => service.onClose?.(conn, 'device-closed'));
  service.onOpen?.(conn);
  return {
    conn,
    send(bytes) {
      service.onData(conn, bytes);
    },
    received: () => messages.splice(0),
  };
}

const observe = (name: string): Buffer => frameLockdownMessage({ Command: 'ObserveNotification', Name: name });

describe('notification proxy', () => {
  it('relays only the observed names, to every observing connection', () => {
    const pairing = new Pairing({ mode: 'wait' });
    const a = open(pairing);
    const b = open(pairing);
    a.send(observe(NOTIFICATION_REQUEST_PAIR));
    a.send(binaryFrame({ Command: 'ObserveNotification', Name: NOTIFICATION_REQUEST_HOST_BUID }));
    b.send(observe(NOTIFICATION_REQUEST_HOST_BUID));
    pairing.requestHostBuid();
    expect(a.received()).toEqual([{ Command: 'RelayNotification', Name: NOTIFICATION_REQUEST_HOST_BUID }]);
    expect(b.received()).toEqual([{ Command: 'RelayNotification', Name: NOTIFICATION_REQUEST_HOST_BUID }]);
    expect(pairing.stats.notificationsSent).toBe(2);
  });

  it('the Trust tap relays request_pair to an observer', () => {
    const key = generateDeviceKey();
    const pairing = new Pairing({ mode: 'wait' }, { deviceKey: key });
    const a = open(pairing);
    a.send(observe(NOTIFICATION_REQUEST_PAIR));
    expect(pairing.tapTrust()).toBe(false); // no dialog showing: nothing to tap
    expect(pairing.pair(pairRequest(makeHostPairRecord(key.publicPem, { bits: 1024 })))['Error']).toBe('PairingDialogResponsePending');
    expect(a.received()).toEqual([]);
    expect(pairing.tapTrust()).toBe(true);
    expect(a.received()).toEqual([{ Command: 'RelayNotification', Name: NOTIFICATION_REQUEST_PAIR }]);
  });

  it('Shutdown → ProxyDeath, then the connection closes and observes nothing more', () => {
    const pairing = new Pairing();
    const a = open(pairing);
    a.send(observe(NOTIFICATION_REQUEST_HOST_BUID));
    a.send(frameLockdownMessage({ Command: 'Shutdown' }));
    expect(a.received()).toEqual([{ Command: 'ProxyDeath' }]);
    expect(a.conn.closed).toBe(true);
    pairing.requestHostBuid();
    expect(a.received()).toEqual([]);
    expect(pairing.stats.notificationsSent).toBe(0);
  });

  it('frames split at every byte offset', () => {
    const stream = Buffer.concat([observe(NOTIFICATION_REQUEST_PAIR), observe(NOTIFICATION_REQUEST_HOST_BUID), frameLockdownMessage({ Command: 'Shutdown' })]);
    for (let at = 0; at <= stream.length; at++) {
      const pairing = new Pairing();
      const a = open(pairing);
      a.send(stream.subarray(0, at));
      pairing.requestHostBuid();
      const early = a.received();
      a.send(stream.subarray(at));
      const observed = at >= observe(NOTIFICATION_REQUEST_PAIR).length + observe(NOTIFICATION_REQUEST_HOST_BUID).length;
      const relay = { Command: 'RelayNotification', Name: NOTIFICATION_REQUEST_HOST_BUID };
      const expected = at === stream.length ? [{ Command: 'ProxyDeath' }] : observed ? [relay, { Command: 'ProxyDeath' }] : [{ Command: 'ProxyDeath' }];
      expect([...early, ...a.received()], `split at ${at}`).toEqual(expected);
      expect(a.conn.closed).toBe(true);
    }
  });

  it('garbage, oversized frames and a Name that is not a string reset the connection', () => {
    const bad = [
      Buffer.concat([Buffer.from([0, 0, 0, 5]), Buffer.from('hello')]),
      Buffer.from([0x7f, 0xff, 0xff, 0xff]),
      frameLockdownMessage({ Command: 'ObserveNotification', Name: 5 }),
      Buffer.concat([Buffer.from([0, 0, 0, 9]), Buffer.from(plist.build(['x']).slice(0, 9))]),
    ];
    for (const bytes of bad) {
      const pairing = new Pairing();
      const a = open(pairing);
      a.send(bytes);
      expect(a.conn.closed, bytes.toString('hex')).toBe(true);
      pairing.requestHostBuid();
      expect(a.received()).toEqual([]);
    }
  });

  it('PostNotification and unknown commands are ignored', () => {
    const pairing = new Pairing();
    const a = open(pairing);
    a.send(frameLockdownMessage({ Command: 'PostNotification', Name: 'x' }));
    a.send(frameLockdownMessage({ Command: 'Frobnicate' }));
    expect(a.conn.closed).toBe(false);
    expect(a.received()).toEqual([]);
  });
});
