import { createHmac, hkdfSync } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { authTagKey, mobdev2AuthTag, mobdev2TxtStrings, newMobdev2Identifier } from './auth-tag.js';

/** Independent vector (computed with RFC 5869 by hand in Python's stdlib by its authors; public test suite). */
const HOST_ID = '00112233-4455-6677-8899-AABBCCDDEEFF';
const IDENTIFIER = 'unit-test-bonjour-identifier';

describe('mobdev2 authTag', () => {
  it('matches the independent vector: HKDF key and tag bytes in hex', () => {
    const key = Buffer.from(hkdfSync('sha512', Buffer.from(HOST_ID), Buffer.alloc(0), Buffer.alloc(0), 32));
    expect(key.toString('hex')).toBe('9b39b9e1953bfdd6f8e46081c75f5c1c118053140b5651c417add8826a143439');
    const tag = mobdev2AuthTag(HOST_ID, IDENTIFIER);
    expect(Buffer.from(tag, 'base64').toString('hex')).toBe('c5d49dfdb583a388');
    expect(tag).toBe('xdSd/bWDo4g=');
  });

  it('takes the identifier as raw bytes (a string is its UTF-8)', () => {
    expect(mobdev2AuthTag(HOST_ID, Buffer.from(IDENTIFIER))).toBe(mobdev2AuthTag(HOST_ID, IDENTIFIER));
    // a second vector with UUID-shaped values, as a phone and libimobiledevice make them; the hex is
    // also checked against the primitives written out step by step
    const hostId = '8F4E2A1C-0B3D-4C5E-9F60-718293A4B5C6';
    const identifier = '5C0F3B4A-2D1E-4F60-8A7B-9C8D7E6F5A4B';
    expect(mobdev2AuthTag(hostId, identifier)).toBe('sj5o8nOD7Z8=');
    expect(hexTag(hostId, identifier)).toBe('b23e68f27383ed9f');
    expect(hexTag(HOST_ID, IDENTIFIER)).toBe('c5d49dfdb583a388');
  });

  it('is 8 bytes, and changes with the HostID (property)', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), fc.uint8Array({ minLength: 0, maxLength: 64 }), (a, b, id) => {
        const ta = mobdev2AuthTag(a, Buffer.from(id));
        expect(Buffer.from(ta, 'base64')).toHaveLength(8);
        if (a !== b) expect(ta).not.toBe(mobdev2AuthTag(b, Buffer.from(id)));
      }),
    );
  });

  it('names TXT keys authTag, authTag#1, authTag#2 and writes identifier first', () => {
    expect([0, 1, 2].map(authTagKey)).toEqual(['authTag', 'authTag#1', 'authTag#2']);
    const id = newMobdev2Identifier();
    expect(id).toMatch(/^[0-9A-F-]{36}$/);
    const strings = mobdev2TxtStrings(id, ['H1', 'H2']).map((b) => b.toString());
    expect(strings).toEqual([`identifier=${id}`, `authTag=${mobdev2AuthTag('H1', id)}`, `authTag#1=${mobdev2AuthTag('H2', id)}`]);
  });
});

/** The same computation written out again with the primitives, step by step. */
function hexTag(hostId: string, identifier: string): string {
  const prk = createHmac('sha512', Buffer.alloc(64)).update(Buffer.from(hostId)).digest(); // extract, empty salt = 64 zero bytes
  const okm = createHmac('sha512', prk).update(Buffer.from([1])).digest().subarray(0, 32); // expand, empty info, one block
  return createHmac('sha256', okm).update(Buffer.from(identifier)).digest().subarray(0, 8).toString('hex');
}
