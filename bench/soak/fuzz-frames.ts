/**
 * Hostile client frames, generated from a seeded Rng. Two families:
 *
 * - framed: a header whose length matches the body (wrong versions and message types, fuzzed
 *   plist bodies: deep, huge, binary bombs, wrong field types, non-UTF-8). The daemon must answer
 *   (or ignore) them and keep the connection in command state, so many go down one connection.
 * - breaking: random bytes, truncated frames, lengths below 16 or above 64 KiB, mutated headers.
 *   They may leave the daemon waiting for bytes that never come, or make it close the client,
 *   so each goes down a connection of its own.
 */
import { buildBinary, buildXml } from '../../src/plist/index.js';
import type { PlistDict, PlistValue } from '../../src/plist/index.js';
import type { Rng } from './harness.js';

const HEADER = 16;
const PLIST = 8;

export function frame(version: number, message: number, tag: number, body: Buffer): Buffer {
  const out = Buffer.alloc(HEADER + body.length);
  out.writeUInt32LE(out.length, 0);
  out.writeUInt32LE(version >>> 0, 4);
  out.writeUInt32LE(message >>> 0, 8);
  out.writeUInt32LE(tag >>> 0, 12);
  body.copy(out, HEADER);
  return out;
}

/** Listen is absent: a listener that sends more is closed, so it lives in breakingInput. */
const MESSAGE_TYPES = ['ListDevices', 'ListListeners', 'ReadBUID', 'ReadPairRecord', 'SavePairRecord', 'DeletePairRecord', 'Connect', 'Bogus', ''];
/** Fields each request reads; every one gets every wrong type. */
const FIELDS = ['MessageType', 'DeviceID', 'PortNumber', 'PairRecordID', 'PairRecordData', 'ProgName', 'ClientVersionString', 'BundleID', 'kLibUSBMuxVersion'];

/** Values of every plist type, and odd ones of the right type. */
function oddValue(rng: Rng): PlistValue {
  switch (rng.int(14)) {
    case 0: return rng.int(2) === 0;
    case 1: return -1;
    case 2: return 2 ** 53 + (rng.int(2) === 0 ? 0 : 1e6);
    case 3: return 0xffffffff + 1;
    case 4: return 1.5;
    case 5: return 'x'.repeat(rng.int(3000));
    case 6: return rng.bytes(rng.int(64));
    case 7: return new Date(rng.int(2) === 0 ? 0 : 8.64e15);
    case 8: return [1, 'two', [3]];
    case 9: return { nested: { deeper: 'yes' } };
    case 10: return '../../../../etc/passwd';
    case 11: return '\u0000\ud800\uffff';
    case 12: return 9007199254740993n;
    default: return rng.int(70000);
  }
}

/** bplist00 whose `levels` arrays each reference the next one `fan` times (expands to fan^levels). */
export function referenceBomb(levels: number, fan: number): Buffer {
  const objects: Buffer[] = [];
  for (let i = 0; i < levels; i++) objects.push(Buffer.from([0xa0 | fan, ...Array<number>(fan).fill(i + 1)]));
  objects.push(Buffer.from([0x51, 0x78]));
  const offsets: number[] = [];
  let at = 8;
  for (const object of objects) {
    offsets.push(at);
    at += object.length;
  }
  const table = Buffer.alloc(objects.length * 2);
  offsets.forEach((offset, i) => table.writeUInt16BE(offset, i * 2));
  const trailer = Buffer.alloc(32);
  trailer[6] = 2;
  trailer[7] = 1;
  trailer.writeBigUInt64BE(BigInt(objects.length), 8);
  trailer.writeBigUInt64BE(BigInt(at), 24);
  return Buffer.concat([Buffer.from('bplist00', 'latin1'), ...objects, table, trailer]);
}

/** A binary plist whose trailer claims a huge object count / offset table. */
function hugeCountBplist(rng: Rng): Buffer {
  const good = buildBinary({ MessageType: 'ListDevices' });
  const out = Buffer.from(good);
  const field = rng.pick([8, 16, 24]);
  out.writeBigUInt64BE(rng.int(2) === 0 ? 0xffffffffffffffffn : BigInt(rng.int(1 << 30)), out.length - 32 + field);
  if (rng.int(2) === 0) out[out.length - 32 + 6 + rng.int(2)] = rng.int(256);
  return out;
}

function requestDict(rng: Rng): PlistDict {
  const type = rng.pick(MESSAGE_TYPES);
  const dict: PlistDict = { MessageType: type, ProgName: 'soak-fuzz', ClientVersionString: 'soak', kLibUSBMuxVersion: 3 };
  // Connect is left to the bystander tunnel: a fuzz Connect that succeeds turns the fuzz
  // connection into a tunnel, which is fine but ends its usefulness, so aim it at a bad port.
  if (type === 'Connect') {
    dict['DeviceID'] = rng.int(3);
    dict['PortNumber'] = rng.pick([0, 1, 0x0100, 0xffff, 70000]);
  }
  if (type.includes('PairRecord')) {
    dict['PairRecordID'] = rng.pick(['..', '/', 'a/b', '\u0000', 'x'.repeat(5000), '00008030-001A2B3C4D5E802E', '../00008030-001A2B3C4D5E802E', '.']);
    dict['PairRecordData'] = rng.pick([Buffer.alloc(0), rng.bytes(32), referenceBomb(28, 2), hugeCountBplist(rng), buildXml({ HostID: 'soak' })]);
  }
  return dict;
}

/** XML, control characters and lone surrogates included (our writer takes any string, as libplist's does). */
export function encodeBody(dict: PlistDict): Buffer {
  return buildXml(dict);
}

/** One well-framed hostile input (header length matches the body). */
export function framedInput(rng: Rng, tag: number): Buffer {
  switch (rng.int(12)) {
    case 0: // wrong header version, plausible body
      return frame(rng.pick([2, 3, 0xffffffff, 7]), PLIST, tag, buildXml({ MessageType: 'ListDevices' }));
    case 1: // wrong message type
      return frame(rng.int(2), rng.pick([0, 1, 4, 5, 6, 7, 9, 0xffffffff]), tag, rng.bytes(rng.int(32)));
    case 2: // binary messages with the wrong body size
      return frame(0, 2, tag, rng.bytes(rng.pick([0, 1, 7, 9, 100])));
    case 3: { // every field with a wrong or odd type
      const dict = requestDict(rng);
      dict[rng.pick(FIELDS)] = oddValue(rng);
      return frame(1, PLIST, tag, encodeBody(dict));
    }
    case 4: { // deep nesting (written compactly: the builder's indentation would pass 64 KiB)
      const depth = rng.pick([33, 100, 1000, 5000]);
      const xml = `<plist><dict><key>MessageType</key><string>ListDevices</string><key>Deep</key>${'<array>'.repeat(depth)}${'</array>'.repeat(depth)}</dict></plist>`;
      return frame(1, PLIST, tag, Buffer.from(xml, 'utf8'));
    }
    case 5: { // huge: many keys, up to the frame limit
      const dict: PlistDict = { MessageType: 'ListDevices' };
      for (let n = 0; n < 1200; n++) dict[`k${n}`] = n;
      return frame(1, PLIST, tag, buildXml(dict));
    }
    case 6: // binary plist bombs as the body
      return frame(1, PLIST, tag, rng.int(2) === 0 ? referenceBomb(rng.pick([20, 30, 60]), rng.pick([2, 3, 14])) : hugeCountBplist(rng));
    case 7: { // non-UTF-8 bytes in strings
      const xml = encodeBody(requestDict(rng));
      const at = xml.indexOf('soak');
      if (at > 0) xml.set([0xff, 0xfe, 0xc3, 0x28], at);
      return frame(1, PLIST, tag, xml);
    }
    case 8: { // byte-flipped valid request body
      const body = encodeBody(requestDict(rng));
      for (let n = 0; n < 1 + rng.int(8); n++) body[rng.int(body.length)] = rng.int(256);
      return frame(1, PLIST, tag, body);
    }
    case 9: // XML oddities: entities, DOCTYPE games, CDATA, truncated documents
      return frame(1, PLIST, tag, Buffer.from(rng.pick([
        '<?xml version="1.0"?><!DOCTYPE p [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><plist><dict><key>MessageType</key><string>&b;</string></dict></plist>',
        '<plist><dict><key>MessageType</key><string><![CDATA[ListDevices]]></string></dict></plist>',
        '<plist><dict><key>MessageType</key><string>ListDevices',
        '<plist><dict><key>MessageType</key></dict></plist>',
        '<plist><array><integer>99999999999999999999999999</integer></array></plist>',
        '<plist><dict><key>__proto__</key><dict><key>MessageType</key><string>Listen</string></dict></dict></plist>',
        '',
      ]), 'utf8'));
    case 10: // random body
      return frame(1, PLIST, tag, rng.bytes(rng.int(512)));
    default: // a binary plist request with odd fields
      return frame(1, PLIST, tag, buildBinary(requestDict(rng)));
  }
}

/** One input that may break the framing; goes on its own connection. */
export function breakingInput(rng: Rng): Buffer {
  switch (rng.int(7)) {
    case 0:
      return rng.bytes(1 + rng.int(256));
    case 6: // Listen (plist or binary), then more input: the daemon closes the listener
      return Buffer.concat([
        rng.int(2) === 0 ? frame(0, 3, 1, Buffer.alloc(0)) : frame(1, PLIST, 1, buildXml({ MessageType: 'Listen' })),
        frame(1, PLIST, 2, buildXml({ MessageType: 'ListDevices' })),
      ]);
    case 1: { // truncated: the header promises more than is sent
      const whole = frame(1, PLIST, 1, buildXml({ MessageType: 'ListDevices' }));
      return whole.subarray(0, rng.int(whole.length));
    }
    case 2: { // oversized length
      const out = frame(1, PLIST, 1, Buffer.alloc(16));
      out.writeUInt32LE(rng.pick([65537, 131072, 0x7fffffff, 0xffffffff]), 0);
      return out;
    }
    case 3: { // length below the header
      const out = frame(1, PLIST, 1, Buffer.alloc(0));
      out.writeUInt32LE(rng.int(16), 0);
      return out;
    }
    case 4: { // a valid frame with a mutated header
      const out = frame(1, PLIST, 1, buildXml({ MessageType: 'ListDevices' }));
      for (let n = 0; n < 1 + rng.int(4); n++) out[rng.int(HEADER)] = rng.int(256);
      return out;
    }
    default: // a frame of exactly the limit, body junk
      return frame(1, PLIST, 1, rng.bytes(65536 - HEADER));
  }
}
