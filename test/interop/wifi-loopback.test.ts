/**
 * The in-process phone's network face on a loopback address (what `--virtual-device` will offer
 * as a Network device), reached by Debian's real clients the way they reach a Wi-Fi phone:
 * libimobiledevice 1.3.0 lists the device through a usbmuxd socket, then DIALS the NetworkAddress
 * itself on port 62078 (it never sends Connect for a network device) and reads the pair record
 * through the socket. The socket here is a stub that serves exactly those three requests, so this
 * proves the phone side and the NetworkAddress layout 1.3.0 reads (BSD: byte 0 = length, byte 1 =
 * family), independently of the daemon's network provider.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import plist from 'plist';
import type { PlistObject } from 'plist';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Pairing as PhonePairing } from '../../src/emulator/pairing.js';
import { startLoopbackFace } from '../../src/emulator/network/wifi-phone.js';
import type { NetworkPhone } from '../../src/emulator/network/wifi-phone.js';
import { parseIdeviceInfo, runClient, startIproxy, tcpEchoRoundTrip } from '../support/clients.js';
import { buildXml } from '../../src/plist/index.js';
import { encodeFrame, MessageType, ProtocolVersion } from '../../src/server/framing.js';
import { makePairing, pairRecordOf } from '../support/wifi-host.js';
import type { Pairing } from '../support/wifi-host.js';

const UDID = '00008101-000E2D3C4B5A6978';
const DEVICE_ID = 7;

/** sockaddr_in in the BSD layout libimobiledevice ≤ 1.3.0 and iproxy read, port 0, zero-padded to 128. */
function bsdSockaddrV4(address: string): Buffer {
  const blob = Buffer.alloc(128);
  blob[0] = 0x10;
  blob[1] = 0x02;
  address.split('.').forEach((octet, i) => {
    blob[4 + i] = Number(octet);
  });
  return blob;
}

/** A usbmuxd socket that knows one Network device and its pair record; nothing else. */
function stubMuxd(path: string, pairing: Pairing, address: string): Promise<Server> {
  const record = pairRecordOf(pairing, 'a4:c3:f0:12:34:56');
  const answer = (request: Record<string, unknown>): PlistObject => {
    switch (request['MessageType']) {
      case 'ListDevices':
        return {
          DeviceList: [
            {
              DeviceID: DEVICE_ID,
              MessageType: 'Attached',
              Properties: {
                ConnectionType: 'Network',
                DeviceID: DEVICE_ID,
                SerialNumber: UDID,
                NetworkAddress: bsdSockaddrV4(address),
                EscapedFullServiceName: `a4:c3:f0:12:34:56@${address}._apple-mobdev2._tcp.local.`,
                InterfaceIndex: 1,
              },
            },
          ],
        };
      case 'ReadBUID':
        return { BUID: pairing.record.systemBuid };
      case 'ReadPairRecord':
        return request['PairRecordID'] === UDID ? { PairRecordData: Buffer.from(buildXml(record)) } : { MessageType: 'Result', Number: 2 };
      default:
        return { MessageType: 'Result', Number: 1 };
    }
  };
  const server = createServer((socket: Socket) => {
    let buf = Buffer.alloc(0);
    socket.on('error', () => socket.destroy());
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 16 && buf.length >= buf.readUInt32LE(0)) {
        const length = buf.readUInt32LE(0);
        const tag = buf.readUInt32LE(12);
        const request = plist.parse(buf.subarray(16, length).toString('utf8')) as Record<string, unknown>;
        buf = buf.subarray(length);
        socket.write(encodeFrame(ProtocolVersion.PLIST, MessageType.PLIST, tag, Buffer.from(plist.build(answer(request)))));
      }
    });
  });
  return new Promise((resolve) => {
    server.listen(path, () => {
      resolve(server);
    });
  });
}

describe('the loopback network face, reached by libimobiledevice 1.3.0 as a Network device', () => {
  let dir: string;
  let socketPath: string;
  let pairing: Pairing;
  let phone: NetworkPhone;
  let muxd: Server;

  beforeAll(async () => {
    pairing = makePairing();
    phone = await startLoopbackFace({ udid: UDID, pairing: new PhonePairing({}, pairing.identity) });
    dir = mkdtempSync(join(tmpdir(), 'wifi-loopback-'));
    socketPath = join(dir, 'usbmuxd.sock');
    muxd = await stubMuxd(socketPath, pairing, phone.bind);
  });

  afterAll(async () => {
    muxd.close();
    await phone.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('idevice_id -n lists it', async () => {
    const result = await runClient(socketPath, 'idevice_id', ['-n']);
    expect(result.stdout.trim().split('\n')).toContain(UDID);
  });

  it('ideviceinfo -n: a TLS session straight to <address>:62078 with the record read through the socket', async () => {
    const result = await runClient(socketPath, 'ideviceinfo', ['-n', '-u', UDID]);
    expect(result.code, result.stderr).toBe(0);
    const values = parseIdeviceInfo(result.stdout);
    expect(values.get('UniqueDeviceID')).toBe(UDID);
    expect(values.get('WiFiAddress')).toBe('a4:c3:f0:12:34:56'); // only answered inside a session
    expect(phone.pairing.stats.tlsHandshakes).toBeGreaterThanOrEqual(1);
  });

  it('iproxy -n: TCP to the echo port, dialled by iproxy itself from the NetworkAddress', async (ctx) => {
    if (phone.status().ports['echo'] === undefined) ctx.skip(); // port 7 needs root
    const proxy = await startIproxy(socketPath, 7, { udid: UDID, network: true });
    try {
      const data = Buffer.alloc(256 * 1024);
      for (let i = 0; i < data.length; i++) data[i] = (i * 13) & 0xff;
      expect((await tcpEchoRoundTrip(proxy.localPort, data)).equals(data)).toBe(true);
    } finally {
      await proxy.stop();
    }
  });

  it('ideviceinfo -n -s: the pre-session subset only', async () => {
    const result = await runClient(socketPath, 'ideviceinfo', ['-n', '-s', '-u', UDID]);
    expect(result.code, result.stderr).toBe(0);
    const values = parseIdeviceInfo(result.stdout);
    expect(values.get('ProductVersion')).toBe('17.5');
    expect(values.has('WiFiAddress')).toBe(false);
  });
});
