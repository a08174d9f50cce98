/**
 * Differential test: the same client-protocol requests, with no device attached, answered by
 * Debian's usbmuxd 1.1.1 (in a private mount namespace) and by our daemon (no --virtual-device).
 *
 * Each case yields an observation (header fields, Result number, plist key/type skeleton, a few
 * checked values). For every case there are two tests:
 *   - "reference: …" pins what usbmuxd 1.1.1 does (the harness check, and the documentation);
 *   - "ours: …" requires our observation to equal the reference's, unless the case is listed in
 *     INTENDED_DIFFERENCES below with the reason and the exact observation we produce instead.
 */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import plist from 'plist';
import type { PlistValue } from 'plist';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOurDaemon, startReferenceDaemon } from '../support/daemon.js';
import type { RunningDaemon } from '../support/daemon.js';
import { encodeBinaryConnect, encodeFrame, encodePlistRequest, MSG_LISTEN, MSG_PLIST, oneShot, RawMuxClient } from '../support/raw-client.js';
import { binaryResult, observe, observeFrame, plistBody, plistResult } from './observe.js';
import type { Observation } from './observe.js';
import { field } from './plist-shape.js';

const UDID = '00008030-0011223344556677';
const SILENCE_MS = 400;
const BUID_FORMAT = /^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$/;

/** A request the way libusbmuxd 2.0.2 builds it. */
function request(messageType: string, tag: number, extra: Readonly<Record<string, PlistValue>> = {}, progName = 'interop-diff'): Buffer {
  return encodePlistRequest({ ClientVersionString: 'libusbmuxd 2.0.2', MessageType: messageType, ProgName: progName, kLibUSBMuxVersion: 3, ...extra }, tag);
}

async function ask(d: RunningDaemon, frame: Buffer, waitMs = 2000): Promise<Observation> {
  return observe(await oneShot(d.socketPath, frame, waitMs));
}

/** Opens a client, sends `frames` one by one, collecting one outcome after each. */
async function conversation(d: RunningDaemon, steps: readonly { frame: Buffer; waitMs?: number }[]): Promise<Observation[]> {
  const client = await RawMuxClient.open(d.socketPath);
  try {
    const seen: Observation[] = [];
    for (const step of steps) {
      client.send(step.frame);
      seen.push(observe(await client.read(step.waitMs ?? 2000)));
    }
    return seen;
  } finally {
    client.close();
  }
}

function pairRecordXml(): Buffer {
  return Buffer.from(plist.build({ HostID: '5A1F4D3E-2B6C-4D8E-9F0A-1B2C3D4E5F60', SystemBUID: '0A1B2C3D-4E5F-6A7B-8C9D-0E1F2A3B4C5D', HostCertificate: Buffer.from('-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'), EscrowBag: Buffer.from([1, 2, 3, 4, 5, 6, 7, 8, 9]) }));
}

/**
 * A request whose string value holds characters the `plist` package refuses to write (control
 * characters): built with a placeholder, which is then replaced in the XML text.
 */
function rawStringRequest(messageType: string, tag: number, extra: Readonly<Record<string, PlistValue>>, placeholder: string, raw: string): Buffer {
  const body = request(messageType, tag, extra).subarray(16).toString('utf8').replace(placeholder, raw);
  return encodeFrame(1, MSG_PLIST, tag, Buffer.from(body, 'utf8'));
}

/** The text of `<key>name</key><string>…</string>` in a reply, exactly as written. */
function rawStringOf(body: Buffer, name: string): string | undefined {
  return new RegExp(`<key>${name}</key>\\s*<string>([^]*?)</string>`).exec(body.toString('utf8'))?.[1];
}

/** A pair record with keys named like Object.prototype members and a control character in a string. */
const AWKWARD_RECORD = Buffer.from(
  '<?xml version="1.0" encoding="UTF-8"?>\n<plist version="1.0"><dict>' +
    '<key>HostID</key><string>5A1F4D3E-2B6C-4D8E-9F0A-1B2C3D4E5F60</string>' +
    '<key>hasOwnProperty</key><true/><key>toString</key><dict><key>valueOf</key><array/></dict>' +
    '<key>Label</key><string>tab\there, bell\u0007, &amp; &lt;x&gt;</string>' +
    '<key>EscrowBag</key><data>AQIDBAUGBwgJ</data></dict></plist>',
  'utf8',
);

interface Case {
  readonly name: string;
  readonly run: (d: RunningDaemon) => Promise<unknown>;
  /** What usbmuxd 1.1.1 does (checked against the live reference). */
  readonly reference: unknown;
}

const CASES: readonly Case[] = [
  {
    name: 'Listen: Result 0, no Attached without devices, further input closes the listener',
    run: (d) => conversation(d, [{ frame: request('Listen', 1) }, { frame: Buffer.alloc(0), waitMs: SILENCE_MS }, { frame: request('ReadBUID', 2) }]),
    reference: [plistResult(0, 1), { outcome: 'silence' }, { outcome: 'closed' }],
  },
  {
    name: 'ListDevices: empty DeviceList, no MessageType',
    run: (d) => ask(d, request('ListDevices', 2)),
    reference: { outcome: 'frame', version: 1, message: MSG_PLIST, tag: 2, format: 'xml', shape: { DeviceList: [] } },
  },
  {
    name: 'ListListeners: one listener dict with the keys and values libusbmuxd sent',
    run: async (d) => {
      const listener = await RawMuxClient.open(d.socketPath);
      try {
        listener.send(request('Listen', 1, {}, 'interop-listener'));
        const listened = observe(await listener.read(2000));
        const reply = await oneShot(d.socketPath, request('ListListeners', 3));
        if (reply.kind !== 'frame') return [listened, observe(reply)];
        const list = field(plistBody(reply.frame), 'ListenerList');
        const first = list?.t === 'array' ? list.v[0] : undefined;
        const value = (key: string): unknown => {
          const v = first === undefined ? undefined : field(first, key);
          return v === undefined ? undefined : v.t === 'integer' ? Number(v.v) : v.v;
        };
        const idString = value('ID String');
        return [listened, observeFrame(reply.frame), {
          Blacklisted: value('Blacklisted'),
          ConnType: value('ConnType'),
          ProgName: value('ProgName'),
          kLibUSBMuxVersion: value('kLibUSBMuxVersion'),
          // "<client number>-<ProgName>"; the number is a per-daemon counter, only its form is compared.
          idStringForm: typeof idString === 'string' ? idString.replace(/^\d+-/, '<n>-') : idString,
        }];
      } finally {
        listener.close();
      }
    },
    reference: [
      plistResult(0, 1),
      { outcome: 'frame', version: 1, message: MSG_PLIST, tag: 3, format: 'xml', shape: { ListenerList: [{ Blacklisted: 'bool', ConnType: 'integer', 'ID String': 'string', ProgName: 'string', kLibUSBMuxVersion: 'integer' }] } },
      { Blacklisted: false, ConnType: 0, ProgName: 'interop-listener', kLibUSBMuxVersion: 3, idStringForm: '<n>-interop-listener' },
    ],
  },
  {
    name: 'ReadBUID: {BUID} in 8-4-4-4-12 uppercase hex, stable, equal to SystemConfiguration.plist',
    run: async (d) => {
      const first = await oneShot(d.socketPath, request('ReadBUID', 4));
      const second = await oneShot(d.socketPath, request('ReadBUID', 5));
      if (first.kind !== 'frame' || second.kind !== 'frame') return [observe(first), observe(second)];
      const buid = field(plistBody(first.frame), 'BUID');
      const again = field(plistBody(second.frame), 'BUID');
      const stored = plist.parse(readFileSync(join(d.configDir, 'SystemConfiguration.plist'), 'utf8')) as Record<string, unknown>;
      return [observeFrame(first.frame), {
        wellFormed: buid?.t === 'string' && BUID_FORMAT.test(buid.v),
        stable: buid?.t === 'string' && again?.t === 'string' && buid.v === again.v,
        matchesSystemConfiguration: buid?.t === 'string' && stored['SystemBUID'] === buid.v,
      }];
    },
    reference: [
      { outcome: 'frame', version: 1, message: MSG_PLIST, tag: 4, format: 'xml', shape: { BUID: 'string' } },
      { wellFormed: true, stable: true, matchesSystemConfiguration: true },
    ],
  },
  {
    name: 'ReadPairRecord of a UDID never saved: Result 2 (ENOENT)',
    run: (d) => ask(d, request('ReadPairRecord', 6, { PairRecordID: 'FFFFFFFF-0000000000000001' })),
    reference: plistResult(2, 6),
  },
  {
    name: 'ReadPairRecord without PairRecordID: Result 22 (EINVAL)',
    run: (d) => ask(d, request('ReadPairRecord', 7)),
    reference: plistResult(22, 7),
  },
  {
    name: 'ReadPairRecord with a path-traversal id',
    run: (d) => ask(d, request('ReadPairRecord', 8, { PairRecordID: '../../../../etc/passwd' })),
    reference: plistResult(2, 8),
  },
  {
    name: 'Save/Read/Delete pair record round trip',
    run: async (d) => {
      const data = pairRecordXml();
      const saved = await ask(d, request('SavePairRecord', 9, { PairRecordID: UDID, PairRecordData: data }));
      const read = await oneShot(d.socketPath, request('ReadPairRecord', 10, { PairRecordID: UDID }));
      let sameDict = false;
      if (read.kind === 'frame') {
        const bytes = field(plistBody(read.frame), 'PairRecordData');
        sameDict = bytes?.t === 'data' && JSON.stringify(plist.parse(bytes.v.toString('utf8'))) === JSON.stringify(plist.parse(data.toString('utf8')));
      }
      const deleted = await ask(d, request('DeletePairRecord', 11, { PairRecordID: UDID }));
      const readAgain = await ask(d, request('ReadPairRecord', 12, { PairRecordID: UDID }));
      const deletedAgain = await ask(d, request('DeletePairRecord', 13, { PairRecordID: UDID }));
      return { saved, read: observe(read), sameDict, deleted, readAgain, deletedAgain };
    },
    reference: {
      saved: plistResult(0, 9),
      read: { outcome: 'frame', version: 1, message: MSG_PLIST, tag: 10, format: 'xml', shape: { PairRecordData: 'data' } },
      sameDict: true,
      deleted: plistResult(0, 11),
      readAgain: plistResult(2, 12),
      deletedAgain: plistResult(2, 13),
    },
  },
  {
    name: 'pair record file: stored as XML under <UDID>.plist, file mode',
    run: async (d) => {
      const saved = await ask(d, request('SavePairRecord', 14, { PairRecordID: UDID, PairRecordData: pairRecordXml() }));
      const path = join(d.configDir, `${UDID}.plist`);
      const mode = (statSync(path).mode & 0o777).toString(8);
      const xml = readFileSync(path, 'utf8').startsWith('<?xml');
      await ask(d, request('DeletePairRecord', 15, { PairRecordID: UDID }));
      return { saved, xml, mode };
    },
    reference: { saved: plistResult(0, 14), xml: true, mode: '644' },
  },
  {
    name: 'SavePairRecord naming a DeviceID that does not exist: Result 0, no Paired to listeners',
    run: async (d) => {
      const listener = await RawMuxClient.open(d.socketPath);
      try {
        listener.send(request('Listen', 40));
        const listened = observe(await listener.read(2000));
        const saved = await ask(d, request('SavePairRecord', 41, { PairRecordID: UDID, PairRecordData: pairRecordXml(), DeviceID: 1 }));
        const notified = observe(await listener.read(SILENCE_MS));
        await ask(d, request('DeletePairRecord', 42, { PairRecordID: UDID }));
        return [listened, saved, notified];
      } finally {
        listener.close();
      }
    },
    reference: [plistResult(0, 40), plistResult(0, 41), { outcome: 'silence' }],
  },
  {
    name: 'SavePairRecord with invalid data: < 8 bytes, a plist array, missing data',
    run: async (d) => [
      await ask(d, request('SavePairRecord', 16, { PairRecordID: UDID, PairRecordData: Buffer.from('short') })),
      await ask(d, request('SavePairRecord', 17, { PairRecordID: UDID, PairRecordData: Buffer.from(plist.build(['not', 'a', 'dict'])) })),
      await ask(d, request('SavePairRecord', 18, { PairRecordID: UDID })),
    ],
    reference: [plistResult(22, 16), plistResult(22, 17), plistResult(22, 18)],
  },
  {
    name: 'Connect to DeviceID 1 (no device): Result 2 (BADDEV)',
    // PortNumber is htons(62078) read as a LE integer, exactly as libusbmuxd sends it.
    run: (d) => ask(d, request('Connect', 19, { DeviceID: 1, PortNumber: 32498 })),
    reference: plistResult(2, 19),
  },
  {
    name: 'Connect without DeviceID / without PortNumber',
    run: async (d) => [
      await ask(d, request('Connect', 20, { PortNumber: 32498 })),
      await ask(d, request('Connect', 21, { DeviceID: 1 })),
    ],
    reference: [plistResult(2, 20), plistResult(1, 21)],
  },
  {
    name: 'unknown MessageType: Result 1 (BADCOMMAND)',
    run: (d) => ask(d, request('Bogus', 22)),
    reference: plistResult(1, 22),
  },
  {
    name: 'unknown header version: Result 6 (BADVERSION) in binary, connection stays usable',
    run: (d) => conversation(d, [
      { frame: encodeFrame(7, MSG_PLIST, 23, Buffer.from(plist.build({ MessageType: 'ListDevices' }))) },
      { frame: request('ListDevices', 24) },
    ]),
    reference: [binaryResult(6, 23), { outcome: 'frame', version: 1, message: MSG_PLIST, tag: 24, format: 'xml', shape: { DeviceList: [] } }],
  },
  {
    name: 'binary v0 LISTEN: binary RESULT 0, then nothing',
    run: (d) => conversation(d, [{ frame: encodeFrame(0, MSG_LISTEN, 25) }, { frame: Buffer.alloc(0), waitMs: SILENCE_MS }]),
    reference: [binaryResult(0, 25), { outcome: 'silence' }],
  },
  {
    name: 'binary v0 CONNECT to DeviceID 1: binary RESULT 2',
    run: (d) => ask(d, encodeBinaryConnect(1, 62078, 26)),
    reference: binaryResult(2, 26),
  },
  {
    name: 'binary v0 unknown message type 7: binary RESULT 1',
    run: (d) => ask(d, encodeFrame(0, 7, 27)),
    reference: binaryResult(1, 27),
  },
  {
    name: 'malformed plist body, then a valid request on the same socket',
    run: (d) => conversation(d, [
      { frame: encodeFrame(1, MSG_PLIST, 28, Buffer.from('this is not a plist')), waitMs: SILENCE_MS },
      { frame: request('ListDevices', 29) },
    ]),
    reference: [{ outcome: 'silence' }, { outcome: 'frame', version: 1, message: MSG_PLIST, tag: 29, format: 'xml', shape: { DeviceList: [] } }],
  },
  {
    name: 'two requests in one write: both answered, in order',
    run: async (d) => {
      const client = await RawMuxClient.open(d.socketPath);
      try {
        client.send(Buffer.concat([request('ListDevices', 31), request('ReadPairRecord', 32, { PairRecordID: 'FFFFFFFF-0000000000000001' })]));
        return [observe(await client.read(2000)), observe(await client.read(2000))];
      } finally {
        client.close();
      }
    },
    reference: [{ outcome: 'frame', version: 1, message: MSG_PLIST, tag: 31, format: 'xml', shape: { DeviceList: [] } }, plistResult(2, 32)],
  },
  {
    name: 'frame length field below 16 or above 65536: the daemon closes the client',
    run: async (d) => {
      const tooShort = Buffer.alloc(16);
      tooShort.writeUInt32LE(8, 0);
      const tooLong = encodeFrame(1, MSG_PLIST, 30);
      tooLong.writeUInt32LE(65537, 0);
      return [await ask(d, tooShort), await ask(d, tooLong)];
    },
    reference: [{ outcome: 'closed' }, { outcome: 'closed' }],
  },
  {
    name: 'ListListeners: a ProgName with control characters and markup comes back as sent (only & < > escaped); the daemon carries on',
    run: async (d) => {
      const listener = await RawMuxClient.open(d.socketPath);
      try {
        listener.send(rawStringRequest('Listen', 50, {}, 'interop-diff', 'ctl\u0001\u001f&lt;&amp;&gt;\u00e9'));
        const listened = observe(await listener.read(2000));
        const reply = await oneShot(d.socketPath, request('ListListeners', 51));
        const progName = reply.kind === 'frame' ? rawStringOf(reply.frame.body, 'ProgName') : undefined;
        const after = await ask(d, request('ListDevices', 52));
        return [listened, progName, after];
      } finally {
        listener.close();
      }
    },
    reference: [plistResult(0, 50), 'ctl\u0001\u001f&lt;&amp;&gt;\u00e9', { outcome: 'frame', version: 1, message: MSG_PLIST, tag: 52, format: 'xml', shape: { DeviceList: [] } }],
  },
  {
    name: 'SavePairRecord with keys named hasOwnProperty / toString and a control character: stored in the same bytes',
    run: async (d) => {
      const saved = await ask(d, request('SavePairRecord', 53, { PairRecordID: UDID, PairRecordData: AWKWARD_RECORD }));
      const path = join(d.configDir, `${UDID}.plist`);
      const file = saved.outcome === 'frame' ? readFileSync(path, 'utf8') : undefined;
      await ask(d, request('DeletePairRecord', 54, { PairRecordID: UDID }));
      return { saved, file };
    },
    reference: {
      saved: plistResult(0, 53),
      file: '<?xml version="1.0" encoding="UTF-8"?>\n' +
        '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n' +
        '<plist version="1.0">\n<dict>\n' +
        '\t<key>HostID</key>\n\t<string>5A1F4D3E-2B6C-4D8E-9F0A-1B2C3D4E5F60</string>\n' +
        '\t<key>hasOwnProperty</key>\n\t<true/>\n' +
        '\t<key>toString</key>\n\t<dict>\n\t\t<key>valueOf</key>\n\t\t<array/>\n\t</dict>\n' +
        '\t<key>Label</key>\n\t<string>tab\there, bell\u0007, &amp; &lt;x&gt;</string>\n' +
        '\t<key>EscrowBag</key>\n\t<data>\n\tAQIDBAUGBwgJ\n\t</data>\n' +
        '</dict>\n</plist>\n',
    },
  },
];

/** Where we deliberately answer differently from usbmuxd 1.1.1, and why. */
const INTENDED_DIFFERENCES: Readonly<Record<string, { readonly reason: string; readonly ours: unknown }>> = {
  'ReadPairRecord with a path-traversal id': {
    reason: 'PairRecordIDs are validated against the UDID formats before any file access (CVE-2025-66004); '
      + 'usbmuxd 1.1.1 builds a path from the id and reports the missing "/etc/passwd.plist" as ENOENT. We answer EINVAL.',
    ours: plistResult(22, 8),
  },
  'pair record file: stored as XML under <UDID>.plist, file mode': {
    reason: 'pair records hold host private keys: we write them 0600 (atomically); usbmuxd creates them 0666 & ~umask = 0644.',
    ours: { saved: plistResult(0, 14), xml: true, mode: '600' },
  },
  'malformed plist body, then a valid request on the same socket': {
    reason: 'usbmuxd 1.1.1 ignores a body that does not parse (no reply, the client waits for its 5 s timeout); '
      + 'we answer Result 1 (BADCOMMAND) so a client never hangs. The socket stays usable in both.',
    ours: [plistResult(1, 28), { outcome: 'frame', version: 1, message: MSG_PLIST, tag: 29, format: 'xml', shape: { DeviceList: [] } }],
  },
};
// Not visible here because no device is attached: our ListDevices/Attached records add a
// `USBSerialNumber` key (the raw USB serial) beside usbmuxd's six Properties keys; libusbmuxd
// ignores extra keys (clients.test.ts checks the record against a virtual device).
// ReadBUID values differ by nature (random per daemon); only their form is compared.

describe('differential: usbmuxd 1.1.1 vs ours, no device attached', () => {
  let reference: RunningDaemon | undefined;
  // Ours starts beside the reference; if it cannot start, only the "ours" tests fail (with its log).
  let ours: Promise<RunningDaemon> = Promise.reject(new Error('not started'));
  ours.catch(() => undefined);
  const results = new Map<string, Promise<unknown>>();

  beforeAll(async () => {
    ours = startOurDaemon();
    ours.catch(() => undefined);
    reference = await startReferenceDaemon();
  });
  afterAll(async () => {
    await reference?.stop();
    await (await ours.catch(() => undefined))?.stop();
  });

  /** Runs a case against the reference once; both tests of the case share the result. */
  const referenceResult = (c: Case): Promise<unknown> => {
    let r = results.get(c.name);
    if (r === undefined) {
      r = c.run(reference!);
      results.set(c.name, r);
    }
    return r;
  };

  for (const c of CASES) {
    it(`reference: ${c.name}`, async () => {
      expect(await referenceResult(c)).toEqual(c.reference);
    });
    it(`ours: ${c.name}`, async () => {
      const theirs = await referenceResult(c);
      const mine = await c.run(await ours);
      const intended = INTENDED_DIFFERENCES[c.name];
      if (intended === undefined) {
        expect(mine).toEqual(theirs);
      } else {
        expect(intended.reason.length).toBeGreaterThan(20);
        expect(theirs).toEqual(c.reference);
        expect(mine).toEqual(intended.ours);
      }
    });
  }

  it('every intended difference names an existing case', () => {
    const names = new Set(CASES.map((c) => c.name));
    for (const name of Object.keys(INTENDED_DIFFERENCES)) expect(names).toContain(name);
  });
});
