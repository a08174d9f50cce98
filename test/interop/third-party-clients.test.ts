/**
 * Third-party clients nobody here wrote, against our daemon and against Debian's usbmuxd 1.1.1:
 * pymobiledevice3 11.45.0 and tidevice 0.12.11 (PyPI) and go-ios 1.2.0 (npm), installed by
 * scripts/setup-clients.sh. Each daemon drives the same emulated iPhone through node-usb / libusb
 * under umockdev (one testbed per daemon, test/support/usb-testbed.ts), with preflight on as a
 * system daemon runs (each pairs the phone on attach; trust mode auto taps Trust after 0.3 s).
 *
 * Per client and daemon: list, Listen, lockdown values in a TLS session, pair (and a session with
 * the new record), and through the client's own port forwarder: 4 MiB echoed (both ways, by hash),
 * 4 MiB from the source service (against its pattern), 4 MiB uploaded to discard then closed (every
 * byte counted at the phone), and 40 short connections one after another. Then the phone's
 * services as each client uses them (third-party-services.ts: date, language, battery, apps, AFC
 * listing and a file round trip, syslog, crash reports, heartbeat, developer mode), on the same rig.
 * The matrix of outcomes is printed at the end (bench/results/2026-12-07-clients.md keeps one).
 *
 * Needs root for the reference's private mount namespace (CI is root).
 */
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sourceByte } from '../../src/emulator/services.js';
import { firstPatternMismatch, freePort, sha256, tcpEchoRoundTrip } from '../support/clients.js';
import { encodePlistRequest, oneShot } from '../support/raw-client.js';
import { ClientSeat, describeResult, requireThirdPartyClients, THIRD_PARTY_CLIENTS } from '../support/third-party-clients.js';
import type { Running, ThirdPartyClient } from '../support/third-party-clients.js';
import { TESTBED_UDID, hardwareMode, startUsbStack, stopUsbStack } from '../support/usb-testbed.js';
import type { UsbStack } from '../support/usb-testbed.js';
import { parseJsonLines, SERVICE_COMMANDS } from './third-party-services.js';

const ECHO = 7;
const DISCARD = 9;
const SOURCE = 19;
const BULK = 4 * 1024 * 1024;
const SHORT_CONNECTIONS = 40;
/** A pairing client that reports the pending trust dialog is run again this long after. */
const PAIR_RETRY_MS = 700;

type Kind = 'ours' | 'reference';

/** One cell per client × command × daemon: 'ok', or what went wrong. */
const matrix = new Map<string, string>();
function record(client: ThirdPartyClient, command: string, kind: Kind, outcome: string): void {
  matrix.set(`${client}\t${command}\t${kind}`, outcome);
}

/** Runs `body`, records 'ok' or the first line of its error, and rethrows. */
async function cell(client: ThirdPartyClient, command: string, kind: Kind, body: () => Promise<string | undefined>): Promise<void> {
  try {
    const note = await body();
    record(client, command, kind, note === undefined ? 'ok' : `ok (${note})`);
  } catch (err) {
    record(client, command, kind, `FAIL: ${(err instanceof Error ? err.message : String(err)).split('\n')[0] ?? ''}`);
    throw err;
  }
}

interface Rig extends UsbStack {
  stopped: boolean;
}

/**
 * Ready: the phone is listed and the daemon's preflight has paired it (its record is readable), so
 * both daemons are in the same state when the clients start. (Ours lists the phone as soon as its
 * mux handshake is done, usbmuxd 1.1.1 once its preflight has asked for trust; a client that opens
 * lockdown in between finds no pair record: tidevice list then leaves the phone out.)
 */
async function startRig(kind: Kind): Promise<Rig> {
  const stack = await startUsbStack(kind, { preflight: true, listedWithinMs: 20_000 });
  const daemon = stack.daemon;
  const deadline = Date.now() + 20_000;
  for (;;) {
    const reply = await oneShot(daemon.socketPath, encodePlistRequest({ MessageType: 'ReadPairRecord', PairRecordID: TESTBED_UDID, ProgName: 'third-party-rig' }, 1), 3000);
    if (reply.kind === 'frame' && reply.frame.body.includes('PairRecordData')) break;
    if (Date.now() > deadline) {
      await stopUsbStack(stack);
      throw new Error(`${kind}: preflight did not pair the phone within 20 s\n${daemon.logs().slice(-3000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { ...stack, stopped: false };
}

/** Waits until no OUT transfer has reached the phone for `quietMs`, then stops daemon, bridge and testbed. */
async function stopRig(rig: Rig, quietMs = 500): Promise<void> {
  if (rig.stopped) return;
  rig.stopped = true;
  let last = -1;
  for (let i = 0; i < 100; i++) {
    const now = (await rig.testbed.stats()).outBytes;
    if (now === last) break;
    last = now;
    await new Promise((r) => setTimeout(r, quietMs));
  }
  await stopUsbStack(rig);
}

/** What the phone's discard service received in this rig's life (from the bridge's closing stats). */
function discarded(rig: Rig): number {
  const m = /"discardBytes":(\d+)/.exec(rig.bridge.logs());
  if (m?.[1] === undefined) throw new Error(`no stats line from the emulator bridge:\n${rig.bridge.logs().slice(-2000)}`);
  return Number(m[1]);
}

/** Sends `data` through 127.0.0.1:port and ends; resolves once the far side has closed too. */
function upload(port: number, data: Buffer, timeoutMs = 60_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error('upload: the forwarder did not close the connection'));
    }, timeoutMs);
    sock.on('data', () => undefined);
    sock.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    sock.once('connect', () => {
      sock.end(data);
    });
  });
}

/** Reads `length` bytes from 127.0.0.1:port, then closes. */
function download(port: number, length: number, timeoutMs = 60_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let got = 0;
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`download: ${got} of ${length} bytes`));
    }, timeoutMs);
    sock.on('data', (b: Buffer) => {
      chunks.push(b);
      got += b.length;
      if (got >= length) {
        clearTimeout(timer);
        sock.destroy();
        resolve(Buffer.concat(chunks).subarray(0, length));
      }
    });
    sock.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.once('close', () => {
      clearTimeout(timer);
      if (got < length) reject(new Error(`download: closed after ${got} of ${length} bytes`));
    });
  });
}

/** The dialog answer each client prints for PairingDialogResponsePending. */
const DIALOG_PENDING = /PairingDialog|Please accept|trust dialog|PairingDialogResponsePending/i;

/** `pair` until it succeeds; returns how many attempts met the pending trust dialog. */
async function pairUntilTrusted(seat: ClientSeat, args: readonly string[], succeeded: (out: string) => boolean): Promise<number> {
  let pending = 0;
  for (let attempt = 0; attempt < 4; attempt++) {
    const r = await seat.run(args, 30_000);
    const out = r.stdout + r.stderr;
    if (r.code === 0 && succeeded(out)) return pending;
    if (!DIALOG_PENDING.test(out)) throw new Error(`pair: ${describeResult(r)}`);
    pending++;
    await new Promise((resolve) => setTimeout(resolve, PAIR_RETRY_MS));
  }
  throw new Error(`pair: still pending after ${pending} attempts`);
}

const PMD3_LISTEN = `
import asyncio, sys
from pymobiledevice3.usbmux import create_mux
async def main():
    mux = await create_mux(sys.argv[1])
    await mux.listen()
    await mux.receive_device_state_update()
    print(mux.devices[0].serial)
    await mux.close()
asyncio.run(main())
`;

/** The commands of one client. Each returns a note for the matrix, or throws. */
interface ClientCommands {
  list(seat: ClientSeat): Promise<void>;
  listen(seat: ClientSeat): Promise<void>;
  /** Lockdown values read in a TLS session with the daemon's pair record. */
  values(seat: ClientSeat): Promise<void>;
  /** Pair (a new host record), then a session with it; returns the pending-dialog count. */
  pair(seat: ClientSeat): Promise<number>;
}

const COMMANDS: Readonly<Record<ThirdPartyClient, ClientCommands>> = {
  pymobiledevice3: {
    async list(seat) {
      const devices = JSON.parse(await seat.ok(['usbmux', 'list'])) as { UniqueDeviceID?: string; ConnectionType?: string }[];
      expect(devices.map((d) => [d.UniqueDeviceID, d.ConnectionType])).toEqual([[TESTBED_UDID, 'USB']]);
    },
    async listen(seat) {
      const r = await seat.python(PMD3_LISTEN);
      expect(r.code, describeResult(r)).toBe(0);
      expect(r.stdout.trim()).toBe(TESTBED_UDID);
    },
    async values(seat) {
      const info = JSON.parse(await seat.ok(['lockdown', 'info'])) as Record<string, unknown>;
      expect([info['UniqueDeviceID'], info['ProductVersion'], info['DeviceName']]).toEqual([TESTBED_UDID, '17.5', 'Virtual iPhone']);
    },
    async pair(seat) {
      const pending = await pairUntilTrusted(seat, ['lockdown', 'pair'], () => true);
      const info = JSON.parse(await seat.ok(['lockdown', 'info'])) as Record<string, unknown>;
      expect(info['UniqueDeviceID']).toBe(TESTBED_UDID);
      return pending;
    },
  },
  'go-ios': {
    async list(seat) {
      const lines = parseJsonLines(await seat.ok(['list']));
      expect(lines).toContainEqual({ deviceList: [TESTBED_UDID] });
    },
    async listen(seat) {
      const running = await seat.spawnUntil(['listen'], (out) => out.includes('"MessageType":"Attached"'));
      await running.stop();
      const attached = parseJsonLines(running.output()).find((l) => (l as { MessageType?: string }).MessageType === 'Attached') as { Properties?: { SerialNumber?: string } } | undefined;
      expect(attached?.Properties?.SerialNumber).toBe(TESTBED_UDID);
    },
    async values(seat) {
      const info = parseJsonLines(await seat.ok(['info'])).find((l) => typeof l === 'object' && l !== null && 'UniqueDeviceID' in l) as Record<string, unknown> | undefined;
      expect([info?.['UniqueDeviceID'], info?.['ProductVersion'], info?.['DeviceName']]).toEqual([TESTBED_UDID, '17.5', 'Virtual iPhone']);
    },
    async pair(seat) {
      const pending = await pairUntilTrusted(seat, ['pair'], (out) => /Successfully paired/.test(out));
      expect(await seat.ok(['readpair'])).toMatch(/HostID/);
      const name = await seat.ok(['devicename']);
      expect(name).toMatch(/Virtual iPhone/);
      return pending;
    },
  },
  tidevice: {
    async list(seat) {
      const out = await seat.ok(['list']);
      expect(out).toMatch(new RegExp(`${TESTBED_UDID}\\s+\\S+\\s+Virtual iPhone`));
    },
    async listen(seat) {
      const running = await seat.spawnUntil(['watch'], (out) => out.includes("'MessageType': 'Attached'"));
      await running.stop();
      expect(running.output()).toContain(`'SerialNumber': '${TESTBED_UDID}'`);
    },
    async values(seat) {
      const out = await seat.ok(['info']);
      expect(out).toMatch(new RegExp(`UniqueDeviceID:\\s+${TESTBED_UDID}`));
      expect(out).toMatch(/ProductVersion:\s+17\.5/);
    },
    async pair(seat) {
      const pending = await pairUntilTrusted(seat, ['pair'], (out) => /Paired with device/.test(out));
      expect(await seat.ok(['info'])).toMatch(/DeviceName:\s+Virtual iPhone/);
      return pending;
    },
  },
};

describe.skipIf(hardwareMode())('third-party clients against usbmuxd 1.1.1 and ours, on the emulated iPhone under umockdev', () => {
  beforeAll(() => {
    requireThirdPartyClients();
  });
  afterAll(() => {
    const rows = [...matrix].map(([key, outcome]) => `| ${key.split('\t').join(' | ')} | ${outcome} |`);
    console.info(['| client | command | daemon | outcome |', '| --- | --- | --- | --- |', ...rows].join('\n'));
  });

  for (const kind of ['reference', 'ours'] as const) {
    for (const client of THIRD_PARTY_CLIENTS) {
      describe(`${client} against ${kind === 'ours' ? 'ours' : 'usbmuxd 1.1.1'}`, () => {
        let rig: Rig | undefined;
        let seat: ClientSeat | undefined;
        let forwarder: Running | undefined;
        let port = 0;
        let uploaded = 0;
        const commands = COMMANDS[client];
        const s = (): ClientSeat => {
          if (seat === undefined) throw new Error('rig not started');
          return seat;
        };

        beforeAll(async () => {
          rig = await startRig(kind);
          seat = new ClientSeat(client, rig.daemon.socketPath);
        }, 60_000);
        afterAll(async () => {
          await forwarder?.stop();
          await seat?.dispose();
          if (rig !== undefined) await stopRig(rig);
        }, 60_000);

        it('list', () => cell(client, 'list', kind, async () => {
          await commands.list(s());
          return undefined;
        }));
        it('Listen (Attached)', () => cell(client, 'Listen', kind, async () => {
          await commands.listen(s());
          return undefined;
        }));
        it('lockdown values in a session (the daemon\'s pair record)', () => cell(client, 'lockdown values', kind, async () => {
          await commands.values(s());
          return undefined;
        }));
        for (const service of SERVICE_COMMANDS[client]) {
          it(`service: ${service.command}`, () => cell(client, service.command, kind, () => service.run(s())));
        }
        it('pair a new host record, then a session with it', () => cell(client, 'pair, then a session', kind, async () => {
          const pending = await commands.pair(s());
          return pending === 0 ? undefined : `trust dialog pending on ${pending} attempt${pending === 1 ? '' : 's'} first`;
        }));
        it('forward: 4 MiB to echo and back, by hash', () => cell(client, 'forward: echo 4 MiB', kind, async () => {
          port = await freePort();
          forwarder = await s().forward(port, ECHO);
          const data = randomBytes(BULK);
          expect(sha256(await tcpEchoRoundTrip(port, data, 60_000))).toBe(sha256(data));
          await forwarder.stop();
          forwarder = undefined;
          return undefined;
        }));
        it('forward: 4 MiB from source, against its pattern', () => cell(client, 'forward: source 4 MiB', kind, async () => {
          port = await freePort();
          forwarder = await s().forward(port, SOURCE);
          expect(firstPatternMismatch(await download(port, BULK), sourceByte)).toBe(-1);
          await forwarder.stop();
          forwarder = undefined;
          return undefined;
        }));
        it(`forward: ${SHORT_CONNECTIONS} short connections one after another`, () => cell(client, `forward: ${SHORT_CONNECTIONS} short connections`, kind, async () => {
          port = await freePort();
          forwarder = await s().forward(port, ECHO);
          for (let i = 0; i < SHORT_CONNECTIONS; i++) {
            const data = randomBytes(1000 + i);
            expect((await tcpEchoRoundTrip(port, data, 10_000)).equals(data)).toBe(true);
          }
          await forwarder.stop();
          forwarder = undefined;
          return undefined;
        }));
        it('forward: 4 MiB to discard, then close; the phone counts every byte', () => cell(client, 'forward: upload 4 MiB, close', kind, async () => {
          port = await freePort();
          forwarder = await s().forward(port, DISCARD);
          await upload(port, randomBytes(BULK));
          uploaded += BULK;
          await forwarder.stop();
          forwarder = undefined;
          if (rig === undefined) throw new Error('rig not started');
          await stopRig(rig);
          expect(discarded(rig)).toBe(uploaded);
          return undefined;
        }));
      });
    }
  }
});
