import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { authTagKey, computeAuthTag, decodeAuthTag, matchAdvert, normaliseMac, pairRecordIdentity } from './identity.js';
import type { AdvertIdentity, PairRecordIdentity } from './identity.js';

// Test vector computed independently with Python's hmac/hashlib (HKDF written out per RFC 5869):
//   prk = HMAC-SHA512(key = b'', HostID); K = HMAC-SHA512(prk, b'\x01')[:32]
//   tag = HMAC-SHA256(K, identifier)[:8]
const HOST_ID = 'A1B2C3D4-E5F6-4789-8ABC-DEF012345678';
const IDENTIFIER = Buffer.from('2E6C0D3B-7A4F-4E51-9C3A-5B1D2F7E8A90');
const K_HEX = '59b8916913e64d34d41466ce5b5ff84d77ada5be8d566350815ceffc3f3132c6';
const TAG_HEX = 'a352a9f74a13aae2';
const TAG_B64 = 'o1Kp90oTquI=';
// the identifier is raw bytes, not text
const RAW_IDENTIFIER = Buffer.from('00ff10203040506070', 'hex');
const RAW_TAG_HEX = 'f834c99b6e049bac';

const advert = (over: Partial<AdvertIdentity>): AdvertIdentity => ({ identifier: IDENTIFIER, authTags: [], mac: undefined, ...over });
const rec = (udid: string, hostId?: string, wifiMacAddress?: string): PairRecordIdentity => ({ udid, hostId, wifiMacAddress });

describe('auth tag derivation', () => {
  it('matches the independent vector', () => {
    expect(authTagKey(HOST_ID).toString('hex')).toBe(K_HEX);
    expect(computeAuthTag(HOST_ID, IDENTIFIER).toString('hex')).toBe(TAG_HEX);
    expect(computeAuthTag(HOST_ID, IDENTIFIER).toString('base64')).toBe(TAG_B64);
    expect(computeAuthTag(HOST_ID, RAW_IDENTIFIER).toString('hex')).toBe(RAW_TAG_HEX);
  });

  it('decodeAuthTag: trims ASCII whitespace, needs base64 of exactly 8 bytes', () => {
    expect(decodeAuthTag(Buffer.from(TAG_B64))?.toString('hex')).toBe(TAG_HEX);
    expect(decodeAuthTag(Buffer.from(` \t${TAG_B64}\r\n`))?.toString('hex')).toBe(TAG_HEX);
    expect(decodeAuthTag(Buffer.from('o1Kp90oTquI'))?.toString('hex')).toBe(TAG_HEX); // unpadded
    expect(decodeAuthTag(Buffer.from('4mobHidi'))).toBeUndefined(); // 6 bytes: a _remotepairing tag
    expect(decodeAuthTag(Buffer.from('o1Kp90oTquKq'))).toBeUndefined(); // 9 bytes
    expect(decodeAuthTag(Buffer.from('o1Kp 90oTquI='))).toBeUndefined();
    expect(decodeAuthTag(Buffer.from('o1Kp90oT-uI='))).toBeUndefined();
    expect(decodeAuthTag(Buffer.from(''))).toBeUndefined();
    expect(decodeAuthTag(Buffer.alloc(5000, 0x41))).toBeUndefined();
  });

  it('decodeAuthTag never throws and yields 8 bytes or nothing', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 80 }), (b) => {
      const t = decodeAuthTag(Buffer.from(b));
      expect(t === undefined || t.length === 8).toBe(true);
    }));
  });
});

describe('matchAdvert', () => {
  const tag = Buffer.from(TAG_B64);

  it('finds the record whose HostID made the tag, and every record sharing that HostID', () => {
    const records = [rec('UDID-A', 'OTHER-HOST'), rec('UDID-B', HOST_ID), rec('UDID-C', HOST_ID), rec('UDID-D')];
    expect(matchAdvert(advert({ authTags: [Buffer.from('AAAAAAAAAAA='), tag] }), records)).toEqual([
      { udid: 'UDID-B', by: 'auth-tag' },
      { udid: 'UDID-C', by: 'auth-tag' },
    ]);
  });

  it('needs the identifier: tags alone match nothing', () => {
    expect(matchAdvert(advert({ identifier: undefined, authTags: [tag] }), [rec('U', HOST_ID)])).toEqual([]);
  });

  it('a tag over another identifier does not match', () => {
    expect(matchAdvert(advert({ identifier: Buffer.from('x'), authTags: [tag] }), [rec('U', HOST_ID)])).toEqual([]);
  });

  it('falls back to the MAC of the instance name, normalised; tag matches come first, each UDID once', () => {
    const records = [rec('MAC-ONLY', 'H2', 'AA:BB:CC:0D:0E:0F'), rec('BOTH', HOST_ID, 'aa:bb:cc:d:e:f'), rec('NEITHER', 'H3', '02:00:00:00:00:01')];
    expect(matchAdvert(advert({ authTags: [tag], mac: 'aa:bb:cc:0d:0e:0f' }), records)).toEqual([
      { udid: 'BOTH', by: 'auth-tag' },
      { udid: 'MAC-ONLY', by: 'mac' },
    ]);
    // a private MAC (iOS 26.4+) matches no record's WiFiMACAddress: only the tag finds it
    expect(matchAdvert(advert({ authTags: [], mac: '06:11:22:33:44:55' }), records)).toEqual([]);
  });

  it('property: a phone paired with a host advertises a tag that names exactly the records of that HostID', () => {
    const hostIds = fc.uniqueArray(fc.uuid().map((u) => u.toUpperCase()), { minLength: 1, maxLength: 4 });
    fc.assert(fc.property(hostIds, fc.uint8Array({ minLength: 1, maxLength: 64 }), fc.nat(), fc.array(fc.constantFrom(' ', '\t', '\n'), { maxLength: 2 }), (ids, ident, pick, ws) => {
      const identifier = Buffer.from(ident);
      const records = ids.flatMap((h, i) => [rec(`U${i}a`, h), rec(`U${i}b`, h)]);
      const host = ids[pick % ids.length]!;
      const tagText = ws.join('') + computeAuthTag(host, identifier).toString('base64') + ws.join('');
      const found = matchAdvert(advert({ identifier, authTags: [Buffer.from(tagText)] }), records);
      expect(found.map((c) => c.udid)).toEqual(records.filter((r) => r.hostId === host).map((r) => r.udid));
      expect(found.every((c) => c.by === 'auth-tag')).toBe(true);
    }), { numRuns: 200 });
  });
});

describe('normaliseMac', () => {
  it('accepts the spellings in the wild', () => {
    for (const s of ['AA:BB:CC:0D:0E:0F', 'aa-bb-cc-0d-0e-0f', 'aa:bb:cc:d:e:f', 'AABBCC0D0E0F', ' aa:bb:cc:0d:0e:0f ']) {
      expect(normaliseMac(s)).toBe('aa:bb:cc:0d:0e:0f');
    }
  });

  it('refuses what is not a MAC', () => {
    for (const s of ['', 'aa:bb:cc:dd:ee', 'aa:bb:cc:dd:ee:ff:00', 'aa:bb-cc:dd:ee:ff', 'gg:bb:cc:dd:ee:ff', 'aaa:bb:cc:dd:ee:f', 'fe80::1']) {
      expect(normaliseMac(s)).toBeUndefined();
    }
  });

  it('property: every spelling of six bytes normalises to the same text', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 6, maxLength: 6 }), fc.constantFrom(':', '-'), fc.boolean(), (b, sep, upper) => {
      const canonical = [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
      const spelt = [...b].map((x) => x.toString(16)).join(sep);
      expect(normaliseMac(upper ? spelt.toUpperCase() : spelt)).toBe(canonical);
    }));
  });
});

describe('pairRecordIdentity', () => {
  it('takes HostID and WiFiMACAddress when they are strings', () => {
    expect(pairRecordIdentity('U', { HostID: 'H', WiFiMACAddress: 'aa:bb:cc:dd:ee:ff', SystemBUID: 'S' })).toEqual({ udid: 'U', hostId: 'H', wifiMacAddress: 'aa:bb:cc:dd:ee:ff' });
    expect(pairRecordIdentity('U', { HostID: Buffer.from('H'), WiFiMACAddress: 3 })).toEqual({ udid: 'U', hostId: undefined, wifiMacAddress: undefined });
  });
});
