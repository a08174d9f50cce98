/**
 * Pair records: making a new one for a phone (what StartSession needs from a stored one is read by
 * src/lockdown/credentials.ts).
 *
 * A new record (docs/usbmux-protocol.md §4.3) holds three certificates, all X.509 v3, serial 0,
 * empty subject and issuer names (as the records real phones have always accepted), valid
 * for ten years from now, signed with SHA-256:
 *
 *   RootCertificate   self-signed, CA:TRUE (critical)          key: RootPrivateKey (new RSA 2048)
 *   HostCertificate   signed by the root, CA:FALSE, TLS client  key: HostPrivateKey (new RSA 2048)
 *   DeviceCertificate signed by the root, CA:FALSE, for the phone's own DevicePublicKey
 *
 * Keys come from node:crypto (asynchronous, off the event loop). The certificates are built by
 * node-forge, a maintained pure-JS X.509 library (no ASN.1 written by hand here), but SIGNED by
 * node:crypto: forge's own RSA signing is pure JS and held the event loop 90–300 ms per
 * certificate (measured under load), which would stall every tunnel of every device; the native
 * signature of forge's DER-encoded TBSCertificate takes about a millisecond.
 * node-forge is loaded on the first pairing only, so it costs the daemon's startup nothing.
 * PEMs are stored as plist data; private keys are PKCS#1 ("RSA PRIVATE KEY"), like
 * libimobiledevice's records, so every client that reads the record understands them.
 */
import { createPublicKey, generateKeyPair, randomUUID, sign } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import type Forge from 'node-forge';
import type { PlistDict } from '../plist/index.js';
import { DevicePublicKeyError } from './errors.js';

const VALIDITY_YEARS = 10;

export interface NewPairRecordInput {
  /** The phone's `DevicePublicKey` value: PEM of its RSA public key (PKCS#1 or SPKI). */
  readonly devicePublicKey: Buffer;
  /** Our SystemBUID (from the pair-record store). */
  readonly systemBuid: string;
  /** The phone's `WiFiAddress`, when it told us. */
  readonly wifiMacAddress?: string | undefined;
  /** Clock for the validity window (tests). */
  readonly now?: Date;
}

/** A freshly made record: what is saved, and the public part sent in the Pair request. */
export interface NewPairRecord {
  readonly hostId: string;
  /** Every key of §4.3 except EscrowBag (added from the Pair reply with {@link withEscrowBag}). */
  readonly record: PlistDict;
  /** The record without the private keys: the `PairRecord` of the Pair request. */
  readonly pairRequestRecord: PlistDict;
}

function rsaKeyPair(): Promise<{ publicKey: string; privateKey: string }> {
  return new Promise((resolve, reject) => {
    generateKeyPair(
      'rsa',
      { modulusLength: 2048, publicExponent: 65537, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs1', format: 'pem' } },
      (err, publicKey, privateKey) => {
        if (err) reject(err);
        else resolve({ publicKey, privateKey });
      },
    );
  });
}

/** The phone's public key as node-forge needs it (SPKI PEM), whatever PEM flavour it came in. */
function devicePublicKeyPem(value: Buffer): string {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: value, format: 'pem' });
  } catch (err) {
    throw new DevicePublicKeyError('DevicePublicKey is not a PEM public key', { cause: err });
  }
  if (key.asymmetricKeyType !== 'rsa') throw new DevicePublicKeyError(`DevicePublicKey is ${key.asymmetricKeyType ?? 'an unknown'} key, not RSA`);
  return key.export({ type: 'spki', format: 'pem' }).toString();
}

interface CertSpec {
  readonly publicKeyPem: string;
  readonly signingKeyPem: string;
  readonly ca: boolean;
  readonly now: Date;
}

let forgeLoading: Promise<typeof Forge> | undefined;

function loadForge(): Promise<typeof Forge> {
  forgeLoading ??= import('node-forge').then((m) => m.default);
  return forgeLoading;
}

function makeCertificate(forge: typeof Forge, spec: CertSpec): string {
  const cert = forge.pki.createCertificate();
  cert.serialNumber = '00';
  cert.publicKey = forge.pki.publicKeyFromPem(spec.publicKeyPem);
  cert.validity.notBefore = spec.now;
  const notAfter = new Date(spec.now.getTime());
  notAfter.setUTCFullYear(notAfter.getUTCFullYear() + VALIDITY_YEARS);
  cert.validity.notAfter = notAfter;
  cert.setSubject([]);
  cert.setIssuer([]);
  cert.setExtensions(
    spec.ca
      ? [{ name: 'basicConstraints', cA: true, critical: true }, { name: 'subjectKeyIdentifier' }]
      : [
          { name: 'basicConstraints', cA: false, critical: true },
          { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
          { name: 'subjectKeyIdentifier' },
        ],
  );
  signNatively(forge, cert, spec.signingKeyPem);
  return forge.pki.certificateToPem(cert);
}

/** What forge exports but its type definitions leave out. */
interface ForgeTbs {
  getTBSCertificate(cert: Forge.pki.Certificate): Forge.asn1.Asn1;
}

/** sha256WithRSAEncryption over forge's TBSCertificate, computed by node:crypto (PKCS#1 v1.5). */
function signNatively(forge: typeof Forge, cert: Forge.pki.Certificate, signingKeyPem: string): void {
  const oid = forge.pki.oids['sha256WithRSAEncryption'];
  if (oid === undefined) throw new Error('node-forge lacks the sha256WithRSAEncryption OID');
  cert.signatureOid = oid;
  cert.siginfo.algorithmOid = oid;
  const tbs = (forge.pki as unknown as ForgeTbs).getTBSCertificate(cert);
  cert.tbsCertificate = tbs;
  const der = Buffer.from(forge.asn1.toDer(tbs).getBytes(), 'binary');
  cert.signature = sign('sha256', der, signingKeyPem).toString('binary');
}

/** A new HostID: an upper-case UUID, fresh for each pairing. */
export function newHostId(): string {
  return randomUUID().toUpperCase();
}

/** Make the keys and certificates of a new pairing with the phone whose public key is given. */
export async function generatePairRecord(input: NewPairRecordInput): Promise<NewPairRecord> {
  const devicePem = devicePublicKeyPem(input.devicePublicKey);
  const now = input.now ?? new Date();
  const [root, host, forge] = await Promise.all([rsaKeyPair(), rsaKeyPair(), loadForge()]);
  const rootCert = makeCertificate(forge, { publicKeyPem: root.publicKey, signingKeyPem: root.privateKey, ca: true, now });
  const hostCert = makeCertificate(forge, { publicKeyPem: host.publicKey, signingKeyPem: root.privateKey, ca: false, now });
  const deviceCert = makeCertificate(forge, { publicKeyPem: devicePem, signingKeyPem: root.privateKey, ca: false, now });
  const hostId = newHostId();
  const pairRequestRecord: PlistDict = {
    DeviceCertificate: Buffer.from(deviceCert, 'utf8'),
    HostCertificate: Buffer.from(hostCert, 'utf8'),
    RootCertificate: Buffer.from(rootCert, 'utf8'),
    HostID: hostId,
    SystemBUID: input.systemBuid,
  };
  if (input.wifiMacAddress !== undefined) pairRequestRecord['WiFiMACAddress'] = input.wifiMacAddress;
  const record: PlistDict = {
    ...pairRequestRecord,
    HostPrivateKey: Buffer.from(host.privateKey, 'utf8'),
    RootPrivateKey: Buffer.from(root.privateKey, 'utf8'),
  };
  return { hostId, record, pairRequestRecord };
}

/** The record to save after a successful Pair: with the phone's EscrowBag when it sent one. */
export function withEscrowBag(record: PlistDict, escrowBag: Buffer | undefined): PlistDict {
  return escrowBag === undefined ? record : { ...record, EscrowBag: escrowBag };
}
