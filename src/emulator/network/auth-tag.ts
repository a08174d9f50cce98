/**
 * The phone's side of the `_apple-mobdev2._tcp` TXT identity (docs: wifi-devices.md §1.3): one
 * tag per trusted host, so a host can tell "this advert names a pairing of mine" without a
 * connection. The daemon verifies the same tags in src/network; the emulator keeps its own copy of
 * the ten lines so that it never imports host code (and so each side checks the other).
 *
 *   K   = HKDF-SHA512(ikm = UTF-8 bytes of the host's HostID, salt = empty, info = empty, 32 bytes)
 *   tag = base64(first 8 bytes of HMAC-SHA256(K, the raw `identifier` TXT value))
 *
 * TXT keys, as lockdownd names them (its strings hold "authTag" and "authTag#%u"): the first
 * trusted host's tag is `authTag`, the next ones `authTag#1`, `authTag#2`, …; netmuxd and
 * pymobiledevice3 accept `authTag` and any `authTag#…` key.
 */
import { createHmac, hkdfSync, randomUUID } from 'node:crypto';

export const AUTH_TAG_BYTES = 8;

/** The base64 tag that names the host with this HostID in an advert carrying `identifier`. */
export function mobdev2AuthTag(hostId: string, identifier: Buffer | string): string {
  const key = Buffer.from(hkdfSync('sha512', Buffer.from(hostId, 'utf8'), Buffer.alloc(0), Buffer.alloc(0), 32));
  const id = typeof identifier === 'string' ? Buffer.from(identifier, 'utf8') : identifier;
  return createHmac('sha256', key).update(id).digest().subarray(0, AUTH_TAG_BYTES).toString('base64');
}

/** TXT key of the `index`-th (0-based) trusted host's tag. */
export function authTagKey(index: number): string {
  return index === 0 ? 'authTag' : `authTag#${index}`;
}

/** A fresh `identifier` value: lockdownd makes it from an NSUUID (its strings: "UUIDString"). */
export function newMobdev2Identifier(): string {
  return randomUUID().toUpperCase();
}

/** The TXT strings of a tagged advert: `identifier=…`, then one `authTag…=…` per HostID, in order. */
export function mobdev2TxtStrings(identifier: string, hostIds: readonly string[]): Buffer[] {
  return [Buffer.from(`identifier=${identifier}`, 'utf8'), ...hostIds.map((hostId, i) => Buffer.from(`${authTagKey(i)}=${mobdev2AuthTag(hostId, identifier)}`, 'utf8'))];
}
