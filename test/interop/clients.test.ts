/**
 * Debian's real libimobiledevice clients (libusbmuxd-tools 2.0.2, libimobiledevice-utils 1.3.0)
 * against OUR daemon with the in-process emulated iPhone (`--virtual-device`): the strongest check
 * that our wire format is what libusbmuxd expects.
 *
 * Device services (src/emulator): echo on 7, source on 19, lockdownd on 62078.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import plist from 'plist';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  firstPatternMismatch,
  ideviceIdList,
  ideviceInfo,
  idevicePairSystemBuid,
  inetcatRead,
  parallelEchoes,
  parseIdeviceInfo,
  runClientOk,
  sha256,
  sha256OfPattern,
  startIproxy,
  tcpEchoRoundTrip,
} from '../support/clients.js';
import { startOurDaemon } from '../support/daemon.js';
import type { RunningDaemon } from '../support/daemon.js';
import { encodePlistRequest, oneShot, RawMuxClient } from '../support/raw-client.js';
import { plistBody } from './observe.js';
import { field, shapeOf } from './plist-shape.js';
import { DEFAULT_UDID as EMULATOR_DEFAULT_UDID, ECHO_PORT, SOURCE_PORT, sourceByte } from '../../src/emulator/index.js';

const DEFAULT_UDID = '00008030-001A2B3C4D5E802E';
const SECOND_UDID = '00008101-000A1B2C3D4E5F60';
const MiB = 1024 * 1024;

/** Print the daemon's log tail next to any failure. */
function showLogsOnFailure(get: () => RunningDaemon | undefined): void {
  beforeEach((ctx) => {
    ctx.onTestFailed(() => {
      console.error(`--- daemon log (tail) ---\n${get()?.logs().slice(-6000) ?? '(not started)'}`);
    });
  });
}

describe('real clients against our daemon, one virtual iPhone', () => {
  let daemon: RunningDaemon | undefined;
  const d = (): RunningDaemon => {
    if (daemon === undefined) throw new Error('daemon not started');
    return daemon;
  };
  beforeAll(async () => {
    daemon = await startOurDaemon({ virtualDevices: [''] });
  });
  afterAll(async () => {
    await daemon?.stop();
  });
  showLogsOnFailure(() => daemon);

  it('the UDID we expect is the emulator\'s default', () => {
    expect(EMULATOR_DEFAULT_UDID).toBe(DEFAULT_UDID);
  });

  it('idevice_id -l prints the UDID', async () => {
    expect(await ideviceIdList(d().socketPath)).toEqual([DEFAULT_UDID]);
  });

  it('idevice_id <UDID> prints the device name (lockdown GetValue DeviceName)', async () => {
    expect((await runClientOk(d().socketPath, 'idevice_id', [DEFAULT_UDID])).trim()).toBe('Virtual iPhone');
  });

  it('ideviceinfo -s prints the emulated lockdown values', async () => {
    const values = parseIdeviceInfo(await ideviceInfo(d().socketPath));
    expect(values.get('UniqueDeviceID')).toBe(DEFAULT_UDID);
    expect(values.get('ProductVersion')).toBe('17.5');
    expect(values.get('ProductType')).toBe('iPhone15,2');
    expect(values.get('DeviceClass')).toBe('iPhone');
    expect(values.get('DeviceName')).toBe('Virtual iPhone');
    expect(values.get('BuildVersion')).toMatch(/^\w+$/);
    expect(values.get('SerialNumber')).toMatch(/^\w+$/);
  });

  it('ideviceinfo -s -k ProductVersion prints just the value', async () => {
    expect(await ideviceInfo(d().socketPath, { key: 'ProductVersion' })).toBe('17.5\n');
  });

  it('ideviceinfo -s -u UDID -k UniqueDeviceID selects the device by UDID', async () => {
    expect((await ideviceInfo(d().socketPath, { key: 'UniqueDeviceID', udid: DEFAULT_UDID })).trim()).toBe(DEFAULT_UDID);
  });

  it('iproxy forwards a local port to echo (7): 4 MiB of random bytes come back intact', async () => {
    const proxy = await startIproxy(d().socketPath, ECHO_PORT);
    try {
      const data = randomBytes(4 * MiB);
      const started = Date.now();
      const back = await tcpEchoRoundTrip(proxy.localPort, data);
      const ms = Date.now() - started;
      expect(back.length).toBe(data.length);
      expect(sha256(back)).toBe(sha256(data));
      console.log(`iproxy echo 4 MiB: ${ms} ms (${((4 * MiB) / 1e6 / (ms / 1000)).toFixed(1)} MB/s one way)`);
    } finally {
      await proxy.stop();
    }
  });

  it('request/response through iproxy: requests on and around the 48 KiB segment and 64 KiB read sizes each come back whole, in turn, on one connection', async () => {
    // A bulk tail is held only while more is known to follow (a read that filled 64 KiB); a request
    // that ends the client's data must go out without waiting, or this exchange would stall.
    const proxy = await startIproxy(d().socketPath, ECHO_PORT);
    const sock = createConnection({ host: '127.0.0.1', port: proxy.localPort });
    try {
      await once(sock, 'connect');
      const received: Buffer[] = [];
      let have = 0;
      let wake: (() => void) | undefined;
      sock.on('data', (b: Buffer) => {
        received.push(b);
        have += b.length;
        wake?.();
      });
      for (const size of [1, 49115, 49116, 65535, 65536, 65537, 98230, 131072, 200000, 3]) {
        const request = randomBytes(size);
        sock.write(request);
        const deadline = Date.now() + 10_000;
        while (have < size) {
          if (Date.now() > deadline) throw new Error(`reply to ${size} bytes stalled at ${have}`);
          await new Promise<void>((resolve) => {
            wake = resolve;
            setTimeout(resolve, 200);
          });
        }
        const reply = Buffer.concat(received.splice(0));
        have = 0;
        expect(reply.length, `reply to ${size} bytes`).toBe(size);
        expect(sha256(reply), `reply to ${size} bytes`).toBe(sha256(request));
      }
    } finally {
      sock.destroy();
      await proxy.stop();
    }
  });

  it('iproxy echo under 8 parallel connections, 4 MiB each, every stream intact', async () => {
    const proxy = await startIproxy(d().socketPath, ECHO_PORT);
    try {
      const payloads = Array.from({ length: 8 }, () => randomBytes(4 * MiB));
      const started = Date.now();
      const backs = await parallelEchoes(proxy.localPort, payloads);
      const ms = Date.now() - started;
      backs.forEach((back, i) => {
        expect(sha256(back), `connection ${i}`).toBe(sha256(payloads[i]!));
      });
      console.log(`iproxy echo 8 x 4 MiB in parallel: ${ms} ms (${((32 * MiB) / 1e6 / (ms / 1000)).toFixed(1)} MB/s one way)`);
    } finally {
      await proxy.stop();
    }
  });

  it('inetcat 19 streams 16 MiB of the source pattern intact (device → host)', async () => {
    const length = 16 * MiB;
    const started = Date.now();
    const got = await inetcatRead(d().socketPath, SOURCE_PORT, length);
    const ms = Date.now() - started;
    expect(got.length).toBe(length);
    expect(firstPatternMismatch(got, sourceByte)).toBe(-1);
    expect(sha256(got)).toBe(sha256OfPattern(length, sourceByte));
    console.log(`inetcat source 16 MiB: ${ms} ms (${(length / 1e6 / (ms / 1000)).toFixed(1)} MB/s)`);
  });

  it('idevicepair systembuid prints our BUID, the one in <config dir>/SystemConfiguration.plist', async () => {
    const buid = await idevicePairSystemBuid(d().socketPath);
    expect(buid).toMatch(/^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$/);
    const stored = plist.parse(readFileSync(join(d().configDir, 'SystemConfiguration.plist'), 'utf8')) as Record<string, unknown>;
    expect(stored['SystemBUID']).toBe(buid);
  });

  it('ListDevices record carries what libusbmuxd reads (usbmuxd\'s six Properties keys, plus our USBSerialNumber)', async () => {
    const reply = await oneShot(d().socketPath, encodePlistRequest({ MessageType: 'ListDevices', ProgName: 'interop' }, 1));
    if (reply.kind !== 'frame') throw new Error(`no ListDevices reply: ${reply.kind}`);
    const body = plistBody(reply.frame);
    // Intended difference: usbmuxd 1.1.1 emits exactly six Properties keys; we add USBSerialNumber
    // (the raw descriptor serial, as Apple's usbmuxd does). libusbmuxd ignores keys it does not read.
    expect(shapeOf(body)).toEqual({
      DeviceList: [{
        DeviceID: 'integer',
        MessageType: 'string',
        Properties: { ConnectionSpeed: 'integer', ConnectionType: 'string', DeviceID: 'integer', LocationID: 'integer', ProductID: 'integer', SerialNumber: 'string', USBSerialNumber: 'string' },
      }],
    });
    const list = field(body, 'DeviceList');
    const record = list?.t === 'array' ? list.v[0] : undefined;
    const props = record === undefined ? undefined : field(record, 'Properties');
    const get = (key: string): unknown => {
      const v = props === undefined ? undefined : field(props, key);
      return v === undefined ? undefined : v.t === 'integer' ? Number(v.v) : v.v;
    };
    expect(record === undefined ? undefined : field(record, 'MessageType')).toEqual({ t: 'string', v: 'Attached' });
    expect(get('DeviceID')).toBe(1);
    expect(get('SerialNumber')).toBe(DEFAULT_UDID);
    expect(get('USBSerialNumber')).toBe(DEFAULT_UDID.replace('-', ''));
    expect(get('ConnectionType')).toBe('USB');
    expect(get('ProductID')).toBe(0x12a8);
    expect(get('ConnectionSpeed')).toBe(480_000_000);
  });

  it('a listener gets Result 0, then one Attached for the device', async () => {
    const client = await RawMuxClient.open(d().socketPath);
    try {
      client.send(encodePlistRequest({ MessageType: 'Listen', ProgName: 'interop' }, 7));
      const result = plistBody(await client.readFrame());
      expect(field(result, 'Number')).toEqual({ t: 'integer', v: 0n });
      const attached = await client.readFrame();
      expect(attached.tag).toBe(0);
      const props = field(plistBody(attached), 'Properties');
      expect(props === undefined ? undefined : field(props, 'SerialNumber')).toEqual({ t: 'string', v: DEFAULT_UDID });
    } finally {
      client.close();
    }
  });
});

describe('real clients against our daemon, two virtual iPhones', () => {
  let daemon: RunningDaemon | undefined;
  const d = (): RunningDaemon => {
    if (daemon === undefined) throw new Error('daemon not started');
    return daemon;
  };
  beforeAll(async () => {
    daemon = await startOurDaemon({ virtualDevices: ['', SECOND_UDID] });
  });
  afterAll(async () => {
    await daemon?.stop();
  });
  showLogsOnFailure(() => daemon);

  it('idevice_id -l prints both UDIDs', async () => {
    expect((await ideviceIdList(d().socketPath)).sort()).toEqual([DEFAULT_UDID, SECOND_UDID].sort());
  });

  it('ideviceinfo -u picks each device', async () => {
    for (const udid of [DEFAULT_UDID, SECOND_UDID]) {
      expect((await ideviceInfo(d().socketPath, { key: 'UniqueDeviceID', udid })).trim()).toBe(udid);
    }
  });

  it('iproxy -u reaches the second device\'s echo service', async () => {
    const proxy = await startIproxy(d().socketPath, ECHO_PORT, { udid: SECOND_UDID });
    try {
      const data = randomBytes(MiB);
      expect(sha256(await tcpEchoRoundTrip(proxy.localPort, data))).toBe(sha256(data));
    } finally {
      await proxy.stop();
    }
  });
});
