/**
 * The emulated phone's network face over real TCP on a loopback address (no multicast): lockdownd
 * on 62078 through the daemon's own lockdown client, the TLS heartbeat it starts, echo and source
 * with backpressure, the silent (frozen) phone, and a fake that claims the UDID without the key.
 */
import { once } from 'node:events';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HEARTBEAT_SERVICE } from '../../src/emulator/heartbeat.js';
import { Pairing as PhonePairing } from '../../src/emulator/pairing.js';
import { sourceBytes } from '../../src/emulator/services.js';
import { fakeIdentityOf } from '../../src/emulator/network/fake-phone.js';
import { startLoopbackFace } from '../../src/emulator/network/wifi-phone.js';
import type { NetworkPhone } from '../../src/emulator/network/wifi-phone.js';
import { LockdownError, LockdownTlsError } from '../../src/lockdown/errors.js';
import { PinMismatchError, PlistStream, lockdownOver, makePairing, pinnedSession, pinnedTls, startSession } from '../support/wifi-host.js';
import type { Pairing } from '../support/wifi-host.js';

const UDID = '00008120-0011223344556677';

async function dial(host: string, port: number): Promise<Socket> {
  const socket = connect({ host, port });
  await once(socket, 'connect');
  return socket;
}

let pairing: Pairing;
let phone: NetworkPhone;
let host: string;

beforeAll(async () => {
  pairing = makePairing();
  phone = await startLoopbackFace({ udid: UDID, pairing: new PhonePairing({}, pairing.identity) }, { heartbeat: { intervalSeconds: 0.3 } });
  host = phone.bind;
});

afterAll(async () => {
  await phone.stop();
});

describe('lockdownd over TCP', () => {
  it('listens on 127.0.0.x:62078 and answers QueryType and basic values before a session', async () => {
    expect(host).toMatch(/^127\.0\.0\.\d+$/);
    expect(phone.lockdownPort).toBe(62078);
    const client = lockdownOver(await dial(host, 62078));
    expect(await client.queryType()).toBe('com.apple.mobile.lockdown');
    expect(await client.getValue('UniqueDeviceID')).toBe(UDID);
    expect(await client.getValue('ProductVersion')).toBe('17.5');
    await expect(client.getValue('DevicePublicKey')).rejects.toMatchObject({ lockdownError: 'GetProhibited' });
    await expect(client.getValue('WiFiAddress')).rejects.toMatchObject({ lockdownError: 'GetProhibited' });
    const all = await client.request('GetValue');
    expect(Object.keys(all['Value'] as object)).toContain('ProductType');
    expect(Object.keys(all['Value'] as object)).not.toContain('WiFiAddress');
    client.close();
  });

  it('refuses Pair over the network', async () => {
    const client = lockdownOver(await dial(host, 62078));
    const err: unknown = await client.pair({ HostID: 'X' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LockdownError);
    expect((err as LockdownError).lockdownError).toBe('PairingProhibitedOverThisConnection');
    client.close();
  });

  it('runs a TLS session with the pair record, and starts the heartbeat on a fresh TLS port', async () => {
    const client = lockdownOver(await dial(host, 62078));
    await startSession(client, pairing.record);
    expect(client.inSession).toBe(true);
    expect(await client.getValue('WiFiAddress')).toBe('a4:c3:f0:12:34:56');
    const started = await client.startService(HEARTBEAT_SERVICE);
    expect(started.enableServiceSsl).toBe(true);
    expect(started.port).not.toBe(62078);
    await expect(client.startService('com.apple.no.such.service')).rejects.toMatchObject({ lockdownError: 'InvalidService' });

    const hb = new PlistStream(await pinnedTls(await dial(host, started.port), pairing.record));
    const first = await hb.next();
    expect(first).toEqual({ Command: 'Marco', Interval: 0.3, SupportsSleepyTime: true });
    const t0 = Date.now();
    hb.send({ Command: 'Polo' });
    await hb.next();
    const gap = Date.now() - t0;
    expect(gap).toBeGreaterThanOrEqual(250);
    expect(gap).toBeLessThan(2000);
    expect(phone.heartbeat.sleepyTime()).toBeGreaterThanOrEqual(1);
    let m = await hb.next();
    while (m['Command'] === 'Marco') m = await hb.next();
    expect(m).toEqual({ Command: 'SleepyTime' });
    // one connection per StartService: the port is closed now
    await expect(dial(host, started.port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    hb.stream.destroy();
    client.close();
  });

  it('refuses a session to a host it does not trust', async () => {
    const stranger = makePairing({ deviceKey: pairing.deviceKey });
    const client = lockdownOver(await dial(host, 62078));
    await expect(startSession(client, stranger.record)).rejects.toMatchObject({ lockdownError: 'InvalidHostID' });
  });
});

describe('hostile input', () => {
  it('garbage on 62078 and on a TLS service port costs that connection only', async () => {
    const junk = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 31 + 7) & 0xff));
    const a = await dial(host, 62078);
    a.write(junk);
    await Promise.race([once(a, 'close'), new Promise((r) => setTimeout(r, 2000))]);
    a.destroy();
    const client = lockdownOver(await dial(host, 62078));
    await startSession(client, pairing.record);
    const { port } = await client.startService(HEARTBEAT_SERVICE);
    const b = await dial(host, port);
    b.write(junk); // not a ClientHello
    await once(b, 'close');
    expect(phone.launcher.stats.tlsFailures).toBeGreaterThanOrEqual(1);
    expect(await client.getValue('UniqueDeviceID')).toBe(UDID); // the phone and other connections carry on
    client.close();
  });
});

describe('plain service ports', () => {
  it('echo keeps every byte in order, with the host not reading for a while (backpressure)', async () => {
    const echo = phone.status().ports['echo'];
    if (echo === undefined) {
      expect(phone.status().unavailablePorts.map((p) => p.service)).toContain('echo'); // not root: port 7 left out
      return;
    }
    const socket = await dial(host, echo);
    socket.pause();
    const payload = Buffer.alloc(16 * 1024 * 1024, 0);
    for (let i = 0; i < payload.length; i += 4) payload.writeUInt32LE(i, i);
    socket.write(payload);
    await new Promise((r) => setTimeout(r, 300));
    // the phone stopped reading: far less than the payload has crossed while we read nothing
    expect(socket.writableLength).toBeGreaterThan(0);
    const chunks: Buffer[] = [];
    let got = 0;
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      if (got >= payload.length) socket.end();
    });
    socket.resume();
    await once(socket, 'end');
    expect(Buffer.concat(chunks).equals(payload)).toBe(true);
  });

  it('source sends the deterministic stream', async () => {
    const source = phone.status().ports['source'];
    if (source === undefined) return;
    const socket = await dial(host, source);
    const chunks: Buffer[] = [];
    let got = 0;
    await new Promise<void>((resolve) => {
      socket.on('data', (c: Buffer) => {
        chunks.push(c);
        got += c.length;
        if (got >= 1_000_000) resolve();
      });
    });
    socket.destroy();
    const data = Buffer.concat(chunks).subarray(0, 1_000_000);
    expect(data.equals(sourceBytes(0, 1_000_000))).toBe(true);
  });
});

describe('a silent phone (freeze)', () => {
  it('sends no Marco and no reply while frozen, and delivers after thaw', async () => {
    const client = lockdownOver(await dial(host, 62078), 1000);
    await startSession(client, pairing.record);
    const { port } = await client.startService(HEARTBEAT_SERVICE);
    const hb = new PlistStream(await pinnedTls(await dial(host, port), pairing.record));
    await hb.next();
    phone.freeze();
    await expect(hb.next(900)).rejects.toThrow(/no message/);
    await expect(client.getValue('DeviceName')).rejects.toMatchObject({ code: 'MUXD_ERR_LOCKDOWN_TIMEOUT' });
    phone.thaw();
    expect((await hb.next())['Command']).toBe('Marco'); // held Marcos come out, like retransmissions
    hb.stream.destroy();
  }, 15_000);
});

describe('a fake that claims the UDID without the key', () => {
  it('fails a pinned session, though a client that does not pin completes TLS with it', async () => {
    const fake = await startLoopbackFace({ udid: UDID, pairing: new PhonePairing({}, await fakeIdentityOf(pairing.identity)) });
    try {
      const plain = lockdownOver(await dial(fake.bind, 62078));
      expect(await plain.getValue('UniqueDeviceID')).toBe(UDID);
      plain.close();
      await expect(pinnedSession(await dial(fake.bind, 62078), pairing.record)).rejects.toBeInstanceOf(PinMismatchError);
      // the real phone passes the same check
      const real = await pinnedSession(await dial(host, 62078), pairing.record);
      real.send({ Label: 'test', Request: 'GetValue', Key: 'UniqueDeviceID' });
      expect((await real.next())['Value']).toBe(UDID);
      real.stream.destroy();
      // what the daemon's preflight client does (no pin) is NOT enough over Wi-Fi:
      const unpinned = lockdownOver(await dial(fake.bind, 62078));
      await startSession(unpinned, pairing.record);
      expect(unpinned.inSession).toBe(true);
      unpinned.close();
    } finally {
      await fake.stop();
    }
  });

  it('a phone with a stale record fails the TLS handshake', async () => {
    const stale = new PhonePairing({}, pairing.identity);
    stale.invalidateSessionCertificates(pairing.record.hostId);
    const face = await startLoopbackFace({ udid: UDID, pairing: stale });
    try {
      const client = lockdownOver(await dial(face.bind, 62078));
      await expect(startSession(client, pairing.record)).rejects.toBeInstanceOf(LockdownTlsError);
    } finally {
      await face.stop();
    }
  });
});
