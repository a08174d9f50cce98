import { createPrivateKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildXml, parsePlist } from '../plist/index.js';
import { sessionCredentials } from '../lockdown/index.js';
import { DevicePublicKeyError } from './errors.js';
import { generatePairRecord, newHostId, withEscrowBag } from './pair-record.js';
import type { NewPairRecord } from './pair-record.js';

/** The phone's key as a real phone reports it: PEM PKCS#1 "RSA PUBLIC KEY". */
const device = generateKeyPairSync('rsa', { modulusLength: 2048 });
const devicePublicKey = Buffer.from(device.publicKey.export({ type: 'pkcs1', format: 'pem' }));
const SYSTEM_BUID = '0A1B2C3D-4E5F-6071-8293-A4B5C6D7E8F9';

function cert(pem: unknown): X509Certificate {
  if (!Buffer.isBuffer(pem)) throw new Error('not data');
  return new X509Certificate(pem);
}

describe('generatePairRecord', () => {
  let made: NewPairRecord;
  const now = new Date('2026-11-25T12:00:00Z');
  beforeAll(async () => {
    made = await generatePairRecord({ devicePublicKey, systemBuid: SYSTEM_BUID, wifiMacAddress: 'a4:c3:f0:12:34:56', now });
  });

  it('has exactly the keys of §4.3 (before the EscrowBag), PEMs as data', () => {
    expect(Object.keys(made.record).sort()).toEqual(
      ['DeviceCertificate', 'HostCertificate', 'HostID', 'HostPrivateKey', 'RootCertificate', 'RootPrivateKey', 'SystemBUID', 'WiFiMACAddress'],
    );
    for (const k of ['DeviceCertificate', 'HostCertificate', 'RootCertificate', 'HostPrivateKey', 'RootPrivateKey']) {
      expect(Buffer.isBuffer(made.record[k]), k).toBe(true);
    }
    expect((made.record['HostPrivateKey'] as Buffer).toString('utf8')).toMatch(/^-----BEGIN RSA PRIVATE KEY-----/);
    expect(made.record['SystemBUID']).toBe(SYSTEM_BUID);
    expect(made.record['HostID']).toBe(made.hostId);
    expect(made.hostId).toMatch(/^[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$/);
  });

  it('leaves the private keys out of the Pair request', () => {
    expect(Object.keys(made.pairRequestRecord).sort()).toEqual(['DeviceCertificate', 'HostCertificate', 'HostID', 'RootCertificate', 'SystemBUID', 'WiFiMACAddress']);
  });

  it('chains host and device certificates to the self-signed CA root', () => {
    const root = cert(made.record['RootCertificate']);
    const host = cert(made.record['HostCertificate']);
    const dev = cert(made.record['DeviceCertificate']);
    expect(root.ca).toBe(true);
    expect(root.verify(root.publicKey)).toBe(true);
    expect(host.ca).toBe(false);
    expect(dev.ca).toBe(false);
    expect(host.verify(root.publicKey)).toBe(true);
    expect(dev.verify(root.publicKey)).toBe(true);
    expect(host.checkIssued(root)).toBe(true);
    expect(dev.checkIssued(root)).toBe(true);
    // Not signed by anyone else.
    expect(host.verify(device.publicKey)).toBe(false);
  });

  it('puts the phone’s own public key in the device certificate', () => {
    const dev = cert(made.record['DeviceCertificate']);
    const want = device.publicKey.export({ type: 'spki', format: 'der' });
    expect(dev.publicKey.export({ type: 'spki', format: 'der' }).equals(want)).toBe(true);
  });

  it('pairs the host certificate with the host private key', () => {
    const host = cert(made.record['HostCertificate']);
    expect(host.checkPrivateKey(createPrivateKeyFrom(made.record['HostPrivateKey']))).toBe(true);
    const root = cert(made.record['RootCertificate']);
    expect(root.checkPrivateKey(createPrivateKeyFrom(made.record['RootPrivateKey']))).toBe(true);
  });

  it('is valid for ten years from now, signed with SHA-256, serial 0', () => {
    const root = cert(made.record['RootCertificate']);
    expect(new Date(root.validFrom).getTime()).toBe(now.getTime());
    expect(new Date(root.validTo).toISOString()).toBe('2036-11-25T12:00:00.000Z');
    expect(root.serialNumber).toMatch(/^0+$/);
    // sha256WithRSAEncryption OID 1.2.840.113549.1.1.11 in the DER.
    expect(root.raw.includes(Buffer.from('06092a864886f70d01010b', 'hex'))).toBe(true);
  });

  it('survives the XML store round trip and gives StartSession what it needs', () => {
    const saved = buildXml(withEscrowBag(made.record, Buffer.from('escrow')));
    const back = parsePlist(saved);
    expect(back).toMatchObject({ EscrowBag: Buffer.from('escrow') });
    const creds = sessionCredentials(saved);
    expect(creds.hostId).toBe(made.hostId);
    expect(creds.hostCertificate.equals(made.record['HostCertificate'] as Buffer)).toBe(true);
    expect(creds.hostPrivateKey.equals(made.record['HostPrivateKey'] as Buffer)).toBe(true);
    expect(creds.deviceCertificate?.equals(made.record['DeviceCertificate'] as Buffer)).toBe(true);
  });

  it('accepts an SPKI "PUBLIC KEY" too and omits an unknown WiFi address', async () => {
    const spki = Buffer.from(device.publicKey.export({ type: 'spki', format: 'pem' }));
    const r = await generatePairRecord({ devicePublicKey: spki, systemBuid: SYSTEM_BUID });
    expect(r.record['WiFiMACAddress']).toBeUndefined();
    expect(cert(r.record['DeviceCertificate']).publicKey.export({ type: 'spki', format: 'der' })
      .equals(device.publicKey.export({ type: 'spki', format: 'der' }))).toBe(true);
  });
});

function createPrivateKeyFrom(pem: unknown): KeyObject {
  if (!Buffer.isBuffer(pem)) throw new Error('not data');
  return createPrivateKey(pem);
}

describe('event loop', () => {
  it('keeps turning while a record is made (keys off-thread, signatures native)', async () => {
    /** The longest the event loop stood still while one record was made. */
    async function longestStall(): Promise<number> {
      let last = performance.now();
      let worst = 0;
      const timer = setInterval(() => {
        const now = performance.now();
        worst = Math.max(worst, now - last);
        last = now;
      }, 1);
      try {
        await generatePairRecord({ devicePublicKey, systemBuid: SYSTEM_BUID });
        // Let the interval see the gap left by the synchronous tail (certificates are made last).
        await new Promise((r) => setTimeout(r, 10));
      } finally {
        clearInterval(timer);
      }
      return worst;
    }
    // The best of three, so a moment of a loaded machine not scheduling us cannot fail it; forge's
    // pure-JS signing held the loop 40–300 ms per certificate, three in a row, every time.
    const stalls: number[] = [];
    for (let i = 0; i < 3 && Math.min(...stalls, Infinity) >= 100; i++) stalls.push(await longestStall());
    expect(Math.min(...stalls)).toBeLessThan(100);
  });
});

describe('bad inputs', () => {
  it('refuses a DevicePublicKey that is not a public key, or not RSA', async () => {
    await expect(generatePairRecord({ devicePublicKey: Buffer.from('junk'), systemBuid: SYSTEM_BUID })).rejects.toBeInstanceOf(DevicePublicKeyError);
    const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const ecPem = Buffer.from(ec.publicKey.export({ type: 'spki', format: 'pem' }));
    await expect(generatePairRecord({ devicePublicKey: ecPem, systemBuid: SYSTEM_BUID })).rejects.toThrow(/not RSA/);
  });

  it('newHostId is fresh each time', () => {
    expect(newHostId()).not.toBe(newHostId());
  });
});
