/**
 * NetworkAddress against Debian's real clients (libusbmuxd 2.0.2, libimobiledevice 1.3.0): a tiny
 * usbmuxd of our own lists one Network device whose NetworkAddress (network-address.ts) points at
 * a TCP listener on 127.0.0.x:62078 playing lockdownd; we check which layouts each client accepts
 * and dials, and that chooseAddressLayout() gives each the one it reads.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chooseAddressLayout } from '../../src/server/address-layout.js';
import { encodeFrame, MessageType, ProtocolVersion } from '../../src/server/framing.js';
import { encodeNetworkAddress } from '../../src/server/network-address.js';
import type { AddressLayout } from '../../src/server/network-address.js';
import { buildXml, isPlistDict, parsePlist } from '../../src/plist/index.js';
import type { PlistDict, WritablePlistDict } from '../../src/plist/index.js';
import { runClient, startIproxy } from '../support/clients.js';

const UDID = '00008030-00AA00BB00CC802E';

interface FakeMuxd {
  readonly path: string;
  /** The layout each ListDevices got, by ProgName. */
  readonly served: { progName: string; clientVersion: string; layout: AddressLayout }[];
  /** Force a layout (undefined: chooseAddressLayout decides). */
  force: AddressLayout | undefined;
  close(): Promise<void>;
}

/** Our own minimal usbmuxd: ListDevices with one Network device; ReadBUID; everything else Result 0. */
function fakeMuxd(dir: string, phoneIp: string): Promise<FakeMuxd> {
  const path = join(dir, 'muxd.sock');
  const muxd: FakeMuxd = { path, served: [], force: undefined, close: () => new Promise((r) => { server.close(() => { r(); }); }) };
  const reply = (sock: Socket, tag: number, body: WritablePlistDict): void => {
    sock.write(encodeFrame(ProtocolVersion.PLIST, MessageType.PLIST, tag, buildXml(body)));
  };
  const server: Server = createServer((sock) => {
    let buf = Buffer.alloc(0);
    sock.on('error', () => { /* clients hang up as they like */ });
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 16 && buf.length >= buf.readUInt32LE(0)) {
        const len = buf.readUInt32LE(0);
        const tag = buf.readUInt32LE(12);
        const msg = parsePlist(buf.subarray(16, len));
        buf = buf.subarray(len);
        const req: PlistDict = isPlistDict(msg) ? msg : {};
        const type = req['MessageType'];
        const progName = typeof req['ProgName'] === 'string' ? req['ProgName'] : '';
        const clientVersion = typeof req['ClientVersionString'] === 'string' ? req['ClientVersionString'] : '';
        if (type === 'ListDevices') {
          const layout = muxd.force ?? chooseAddressLayout({ progName, clientVersionString: clientVersion }).layout;
          muxd.served.push({ progName, clientVersion, layout });
          reply(sock, tag, { DeviceList: [{ DeviceID: 7, MessageType: 'Attached', Properties: {
            ConnectionType: 'Network', DeviceID: 7, SerialNumber: UDID, InterfaceIndex: 1,
            EscapedFullServiceName: `aa:bb:cc:dd:ee:ff@fe80::1._apple-mobdev2._tcp.local.`,
            NetworkAddress: encodeNetworkAddress({ address: phoneIp }, layout),
          } }] });
        } else if (type === 'ReadBUID') {
          reply(sock, tag, { BUID: '11111111-2222-3333-4444-555555555555' });
        } else if (type === 'ReadPairRecord') {
          reply(sock, tag, { MessageType: 'Result', Number: 2 });
        } else {
          reply(sock, tag, { MessageType: 'Result', Number: 0 });
        }
      }
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => { resolve(muxd); });
  });
}

interface FakeLockdown {
  readonly ip: string;
  connections: number;
  close(): Promise<void>;
}

/** lockdownd on ip:62078, enough for `ideviceinfo -s` (QueryType, GetValue without a session). */
async function fakeLockdown(): Promise<FakeLockdown> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const ip = `127.0.${1 + Math.floor(Math.random() * 250)}.${2 + Math.floor(Math.random() * 250)}`;
    const state = { connections: 0 };
    const server = createServer((sock) => {
      state.connections++;
      let buf = Buffer.alloc(0);
      sock.on('error', () => { /* the client decides when to go */ });
      sock.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
          const len = buf.readUInt32BE(0);
          const msg = parsePlist(buf.subarray(4, 4 + len));
          buf = buf.subarray(4 + len);
          const req = isPlistDict(msg) ? msg : {};
          const request = typeof req['Request'] === 'string' ? req['Request'] : '';
          let body: WritablePlistDict;
          if (request === 'QueryType') body = { Request: 'QueryType', Type: 'com.apple.mobile.lockdown' };
          else if (request === 'GetValue') {
            const values: Record<string, string> = { DeviceName: 'Fake Wi-Fi iPhone', ProductType: 'iPhone12,1', ProductVersion: '17.5', UniqueDeviceID: UDID };
            const key = req['Key'];
            body = typeof key === 'string' ? { Request: 'GetValue', Key: key, Value: values[key] ?? '' } : { Request: 'GetValue', Value: values };
          }
          else body = { Request: request, Error: 'InvalidService' };
          const xml = buildXml(body);
          const head = Buffer.alloc(4);
          head.writeUInt32BE(xml.length, 0);
          sock.write(Buffer.concat([head, xml]));
        }
      });
    });
    const ok = await new Promise<boolean>((resolve) => {
      server.once('error', () => { resolve(false); });
      server.listen(62078, ip, () => { resolve(true); });
    });
    if (ok) {
      return {
        ip,
        get connections() { return state.connections; },
        set connections(n: number) { state.connections = n; },
        close: () => new Promise((r) => { server.close(() => { r(); }); }),
      };
    }
  }
  throw new Error('no free 127.0.x.y:62078');
}

describe('NetworkAddress with Debian 12 clients', () => {
  let dir: string;
  let phone: FakeLockdown;
  let muxd: FakeMuxd;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'netaddr-'));
    phone = await fakeLockdown();
    muxd = await fakeMuxd(dir, phone.ip);
  });
  afterAll(async () => {
    await muxd.close();
    await phone.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('idevice_id -n lists the device (it copies the blob without reading the family)', async () => {
    muxd.force = undefined;
    const r = await runClient(muxd.path, 'idevice_id', ['-n']);
    expect(r.stdout).toContain(UDID);
    expect(muxd.served.at(-1)).toEqual({ progName: 'idevice_id', clientVersion: 'libusbmuxd 2.0.2', layout: 'bsd' });
  });

  it('ideviceinfo -n dials the BSD blob it was given (chosen for libusbmuxd 2.0.2) and reads lockdownd', async () => {
    muxd.force = undefined;
    const before = phone.connections;
    const r = await runClient(muxd.path, 'ideviceinfo', ['-n', '-s', '-u', UDID, '-k', 'DeviceName']);
    expect(r.stdout.trim()).toBe('Fake Wi-Fi iPhone');
    expect(phone.connections).toBeGreaterThan(before);
    expect(muxd.served.at(-1)?.layout).toBe('bsd');
  });

  it('ideviceinfo -n (libimobiledevice 1.3.0) cannot use the Linux layout: why the layout is chosen per client', async () => {
    muxd.force = 'linux';
    const before = phone.connections;
    const r = await runClient(muxd.path, 'ideviceinfo', ['-n', '-s', '-u', UDID, '-k', 'DeviceName']);
    expect(r.code).not.toBe(0);
    expect(phone.connections).toBe(before);
    muxd.force = undefined;
  });

  it('iproxy -n dials the BSD blob and carries bytes both ways', async () => {
    muxd.force = undefined;
    const proxy = await startIproxy(muxd.path, 62078, { udid: UDID, network: true });
    try {
      const before = phone.connections;
      const { connect } = await import('node:net');
      const answer = await new Promise<Buffer>((resolve, reject) => {
        const s = connect(proxy.localPort, '127.0.0.1');
        const xml = buildXml({ Request: 'QueryType' });
        const head = Buffer.alloc(4);
        head.writeUInt32BE(xml.length, 0);
        s.on('connect', () => { s.write(Buffer.concat([head, xml])); });
        let got = Buffer.alloc(0);
        s.on('data', (d: Buffer) => {
          got = Buffer.concat([got, d]);
          if (got.length >= 4 && got.length >= 4 + got.readUInt32BE(0)) { s.destroy(); resolve(got.subarray(4)); }
        });
        s.on('error', reject);
        setTimeout(() => { s.destroy(); reject(new Error(`no answer through iproxy: ${proxy.logs()}`)); }, 10_000);
      });
      expect(answer.toString()).toContain('com.apple.mobile.lockdown');
      expect(phone.connections).toBe(before + 1);
      expect(muxd.served.at(-1)).toMatchObject({ progName: 'iproxy', layout: 'bsd' });
    } finally {
      await proxy.stop();
    }
  });
});
