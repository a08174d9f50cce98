/**
 * Which paired phone might an `_apple-mobdev2._tcp` advert be? The candidates, best first; a
 * candidate is a hint, never proof: the provider proves each with a lockdown TLS session before
 * announcing anything (an advert is anyone's to forge, and a tag names a host pairing, not a
 * phone: pymobiledevice3 and Apple use one HostID per host, so several records can match).
 *
 * 1. TXT `identifier` + `authTag` / `authTag#N`, against each record's HostID
 *    (../shared/docs/wifi-devices.md §1.3, as MobileDevice, netmuxd and pymobiledevice3 do):
 *      K   = HKDF-SHA512(IKM = HostID as UTF-8, salt = empty, info = empty, 32 bytes)
 *      tag = first 8 bytes of HMAC-SHA256(K, identifier as raw bytes)
 *    An advertised tag is trimmed of ASCII whitespace and base64-decoded; it counts only at exactly
 *    8 bytes. This is the only match that works for iOS 17.1+/26.4+ phones, which put a private
 *    (per-network) MAC in the instance name.
 * 2. The MAC of the instance name (`<mac>@<fe80::…>`) equal to a record's `WiFiMACAddress`
 *    (older iOS; compared normalised, case-insensitively).
 * Records matched by tag come first, in the order given; MAC matches follow, each UDID once.
 */
import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import type { PlistDict } from '../plist/index.js';

export const AUTH_TAG_LENGTH = 8;

/** What matching needs from one pair record. */
export interface PairRecordIdentity {
  readonly udid: string;
  readonly hostId: string | undefined;
  readonly wifiMacAddress: string | undefined;
}

/** What matching needs from one advert (see mdns-browser.ts `MobdevAdvert`, which has these fields). */
export interface AdvertIdentity {
  /** The raw TXT `identifier` value, undefined when absent. */
  readonly identifier: Buffer | undefined;
  /** The raw values of TXT `authTag` and `authTag#N`, undecoded. */
  readonly authTags: readonly Buffer[];
  /** The MAC of the instance name, normalised (normaliseMac), if it has one. */
  readonly mac: string | undefined;
}

export type MatchMethod = 'auth-tag' | 'mac';

export interface IdentityCandidate {
  readonly udid: string;
  readonly by: MatchMethod;
}

/** The candidates for `advert`, best first; empty when no record matches. */
export function matchAdvert(advert: AdvertIdentity, records: Iterable<PairRecordIdentity>): IdentityCandidate[] {
  const list = [...records];
  const out: IdentityCandidate[] = [];
  const seen = new Set<string>();
  const tags = advert.authTags.map(decodeAuthTag).filter((t): t is Buffer => t !== undefined);
  if (advert.identifier !== undefined && tags.length > 0) {
    const identifier = advert.identifier;
    const expectedByHost = new Map<string, Buffer>();
    for (const r of list) {
      if (r.hostId === undefined || r.hostId === '' || seen.has(r.udid)) continue;
      let expected = expectedByHost.get(r.hostId);
      if (expected === undefined) {
        expected = computeAuthTag(r.hostId, identifier);
        expectedByHost.set(r.hostId, expected);
      }
      if (tags.some((t) => timingSafeEqual(t, expected))) {
        out.push({ udid: r.udid, by: 'auth-tag' });
        seen.add(r.udid);
      }
    }
  }
  const mac = advert.mac === undefined ? undefined : normaliseMac(advert.mac);
  if (mac !== undefined) {
    for (const r of list) {
      if (seen.has(r.udid) || r.wifiMacAddress === undefined) continue;
      if (normaliseMac(r.wifiMacAddress) === mac) {
        out.push({ udid: r.udid, by: 'mac' });
        seen.add(r.udid);
      }
    }
  }
  return out;
}

/** K = HKDF-SHA512(HostID UTF-8, empty salt, empty info) → 32 bytes. */
export function authTagKey(hostId: string): Buffer {
  return Buffer.from(hkdfSync('sha512', Buffer.from(hostId, 'utf8'), Buffer.alloc(0), Buffer.alloc(0), 32));
}

/** The 8-byte tag a phone paired with `hostId` advertises next to `identifier`. */
export function computeAuthTag(hostId: string, identifier: Buffer): Buffer {
  return createHmac('sha256', authTagKey(hostId)).update(identifier).digest().subarray(0, AUTH_TAG_LENGTH);
}

/** A TXT authTag value → its 8 bytes, or undefined if it is not base64 of exactly 8 bytes. */
export function decodeAuthTag(raw: Buffer): Buffer | undefined {
  // a tag is 12 characters; anything much longer is not one (and not worth decoding)
  if (raw.length > 64) return undefined;
  const text = raw.toString('latin1').replace(/^[ \t\n\v\f\r]+|[ \t\n\v\f\r]+$/g, '');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text)) return undefined;
  const bytes = Buffer.from(text, 'base64');
  return bytes.length === AUTH_TAG_LENGTH ? bytes : undefined;
}

/**
 * `AA-BB-CC-DD-EE-FF`, `aa:bb:cc:dd:ee:ff`, `a:b:c:d:e:f`, `aabbccddeeff` → `aa:bb:cc:dd:ee:ff`;
 * undefined for anything else.
 */
export function normaliseMac(text: string): string | undefined {
  const t = text.trim();
  let octets: string[];
  if (/^[0-9A-Fa-f]{12}$/.test(t)) octets = t.match(/../g) ?? [];
  else if (/^[0-9A-Fa-f]{1,2}([:-])(?:[0-9A-Fa-f]{1,2}\1){4}[0-9A-Fa-f]{1,2}$/.test(t)) octets = t.split(/[:-]/);
  else return undefined;
  return octets.map((o) => o.padStart(2, '0').toLowerCase()).join(':');
}

/** `HostID` and `WiFiMACAddress` of a parsed pair record (either may be missing in old records). */
export function pairRecordIdentity(udid: string, record: PlistDict): PairRecordIdentity {
  const hostId = record['HostID'];
  const mac = record['WiFiMACAddress'];
  return {
    udid,
    hostId: typeof hostId === 'string' ? hostId : undefined,
    wifiMacAddress: typeof mac === 'string' ? mac : undefined,
  };
}
