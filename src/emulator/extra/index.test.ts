import { once } from 'node:events';
import { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import type { TLSSocket } from 'node:tls';
import { beforeAll, describe, expect, it } from 'vitest';
import { FakeServiceConnection } from '../fake-connection.js';
import { makeHostPairRecord, pairRequest } from '../host-records.js';
import type { HostPairRecord } from '../host-records.js';
import { createVirtualDevice } from '../index.js';
import { coreServiceCatalog, frameLockdownMessage, LockdownResponder } from '../lockdown.js';
import type { LockdownSession } from '../lockdown.js';
import { LockdownFrameReader } from '../lockdown-frames.js';
import { Pairing } from '../pairing.js';
import { PHONE_TLS_CIPHERS } from '../phone-tls.js';
import type { Service } from '../service.js';
import { AFC_PORT, HEARTBEAT_PORT, installExtraServices, SYSLOG_RELAY_PORT } from './index.js';

const UDID = '00008030-001A2B3C4D5E802E';

interface Phone {
  readonly ports: Map<number, Service>;
  readonly responder: LockdownResponder;
  readonly session: LockdownSession;
  readonly host: HostPairRecord;
  readonly pairing: Pairing;
}

/** A phone that trusts one host, with the extra services, and a lockdown session of that host. */
function pairedPhone(): Phone {
  const pairing = new Pairing({ mode: 'setup' });
  const catalog = coreServiceCatalog();
  const ports = new Map<number, Service>();
  installExtraServices({ listen: (port, service) => ports.set(port, service), catalog, pairing });
  const responder = new LockdownResponder({ udid: UDID, pairing, catalog });
  const host = makeHostPairRecord(pairing.deviceKey.publicPem, { bits: 1024 });
  expect(responder.answer(pairRequest(host))['Error']).toBeUndefined();
  const session = pairing.startSession(host.hostId);
  if (typeof session === 'string') throw new Error(session);
  return { ports, responder, session, host, pairing };
}

/** A host TLS client on a fresh connection to `service`; its messages in `messages`. */
async function tlsClient(service: Service, cert: string, key: string): Promise<{ conn: FakeServiceConnection; socket: TLSSocket; messages: Record<string, unknown>[] }> {
  const pipe: Duplex = new Duplex({
    read() {
      // the phone pushes
    },
    write(chunk: Buffer, _enc, cb) {
      if (!conn.closed) service.onData(conn, Buffer.from(chunk));
      cb();
    },
  });
  const conn: FakeServiceConnection = new FakeServiceConnection(HEARTBEAT_PORT, (d) => pipe.push(Buffer.from(d)), () => {
    service.onClose?.(conn, 'device-closed');
    setTimeout(() => pipe.destroy(new Error('connection reset by the phone')), 10);
  });
  service.onOpen?.(conn);
  const socket = tlsConnect({ socket: pipe, cert, key, rejectUnauthorized: false, ciphers: PHONE_TLS_CIPHERS });
  const messages: Record<string, unknown>[] = [];
  const reader = new LockdownFrameReader({ onMessage: (m) => messages.push(m), onBad: () => undefined });
  socket.on('data', (d: Buffer) => {
    reader.push(d);
  });
  await once(socket, 'secureConnect');
  return { conn, socket, messages };
}

async function until(check: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('extra services on a phone: StartService, plain and TLS', () => {
  let phone: Phone;
  beforeAll(() => {
    phone = pairedPhone();
  });

  it('StartService hands out each extra service in a session, with EnableServiceSSL; none outside one', () => {
    const start = (name: string, session?: LockdownSession): Record<string, unknown> => phone.responder.answer({ Request: 'StartService', Service: name }, session);
    expect(start('com.apple.syslog_relay', phone.session)).toEqual({ Request: 'StartService', Service: 'com.apple.syslog_relay', Port: SYSLOG_RELAY_PORT, EnableServiceSSL: false });
    expect(start('com.apple.afc', phone.session)).toMatchObject({ Port: AFC_PORT, EnableServiceSSL: false });
    expect(start('com.apple.mobile.installation_proxy', phone.session)).toMatchObject({ EnableServiceSSL: false });
    expect(start('com.apple.crashreportcopymobile', phone.session)).toMatchObject({ EnableServiceSSL: false });
    expect(start('com.apple.mobile.heartbeat', phone.session)).toMatchObject({ Port: HEARTBEAT_PORT, EnableServiceSSL: true });
    expect(phone.responder.catalog.takeHost(HEARTBEAT_PORT)).toBe(phone.session.host); // drain what the line above expected
    expect(start('com.apple.afc')).toMatchObject({ Error: 'InvalidService' });
    expect(start('com.apple.instruments.remoteserver', phone.session)).toMatchObject({ Error: 'InvalidService' });
  });

  it('the heartbeat over TLS: the phone presents the host record\'s device certificate and sends Marco; Polo is read', async () => {
    phone.responder.answer({ Request: 'StartService', Service: 'com.apple.mobile.heartbeat' }, phone.session);
    const service = phone.ports.get(HEARTBEAT_PORT);
    if (service === undefined) throw new Error('no heartbeat');
    const { socket, messages, conn } = await tlsClient(service, phone.host.hostCertificatePem, phone.host.hostPrivateKeyPem);
    expect(socket.getPeerX509Certificate()?.toString()).toBe(new (await import('node:crypto')).X509Certificate(phone.host.deviceCertificatePem).toString());
    await until(() => messages.length > 0);
    expect(messages[0]).toEqual({ Command: 'Marco', Interval: 10, SupportsSleepyTime: true });
    socket.write(frameLockdownMessage({ Command: 'Polo' }));
    await new Promise((r) => setTimeout(r, 50));
    expect(conn.closed).toBe(false);
    conn.close();
    socket.destroy();
  });

  it('a connection to the TLS port nobody started, or with a stranger certificate, is reset', async () => {
    const service = phone.ports.get(HEARTBEAT_PORT);
    if (service === undefined) throw new Error('no heartbeat');
    const stray = new FakeServiceConnection(HEARTBEAT_PORT);
    service.onOpen?.(stray);
    expect(stray.closed).toBe(true);

    phone.responder.answer({ Request: 'StartService', Service: 'com.apple.mobile.heartbeat' }, phone.session);
    const stranger = makeHostPairRecord(phone.pairing.deviceKey.publicPem, { bits: 1024 });
    const failures = phone.pairing.stats.tlsFailures;
    await expect(tlsClient(service, stranger.hostCertificatePem, stranger.hostPrivateKeyPem).then(async (c) => {
      await until(() => c.conn.closed);
      throw new Error('connection reset by the phone');
    })).rejects.toThrow(/reset by the phone/);
    expect(phone.pairing.stats.tlsFailures).toBe(failures + 1);
  });
});

describe('composition', () => {
  it('createVirtualDevice installs the extras; extras: false or custom services give a minimal phone', () => {
    const full = createVirtualDevice();
    expect(full.extras).toBeDefined();
    expect(full.emulator.catalog.names()).toEqual([
      'com.apple.mobile.insecure_notification_proxy',
      'com.apple.mobile.notification_proxy',
      'com.apple.syslog_relay',
      'com.apple.mobile.heartbeat',
      'com.apple.mobile.installation_proxy',
      'com.apple.afc',
      'com.apple.crashreportmover',
      'com.apple.crashreportcopymobile',
    ]);
    const minimal = createVirtualDevice({ extras: false });
    expect(minimal.extras).toBeUndefined();
    expect(minimal.emulator.catalog.names()).toEqual(['com.apple.mobile.insecure_notification_proxy', 'com.apple.mobile.notification_proxy']);
    expect(createVirtualDevice({ emulator: { services: new Map() } }).extras).toBeUndefined();
    const some = createVirtualDevice({ extras: { exclude: ['afc', 'crashReportCopy', 'crashReportMover'], ssl: { syslog: true } } });
    expect(some.emulator.catalog.lookup('com.apple.afc')).toBeUndefined();
    expect(some.emulator.catalog.lookup('com.apple.syslog_relay')?.ssl).toBe(true);
  });
});
