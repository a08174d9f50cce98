/**
 * A host's side of pairing, for tests of the emulated phone (like host-driver.ts): a root
 * certificate, a host certificate and a device certificate for the phone's public key, the
 * way a libimobiledevice-style host builds them (X.509 by node-forge, keys by node:crypto).
 * Also the host's binary-plist lockdown frame. Not used by the phone itself.
 */
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import bplistCreator from 'bplist-creator';
import forge from 'node-forge';
import type { PlistObject } from 'plist';
import { lengthPrefixed } from './lockdown.js';

export interface HostPairRecord {
  readonly hostId: string;
  readonly systemBuid: string;
  readonly rootCertificatePem: string;
  readonly rootPrivateKeyPem: string;
  readonly hostCertificatePem: string;
  readonly hostPrivateKeyPem: string;
  readonly deviceCertificatePem: string;
}

export interface HostRecordOptions {
  /** Signature digest (libimobiledevice 1.3.0 may use SHA-1). Default sha256. */
  readonly digest?: 'sha1' | 'sha256';
  readonly hostId?: string;
  readonly systemBuid?: string;
  /** RSA key size of the root and host keys. Default 2048. */
  readonly bits?: number;
}

function keyPair(bits: number): { privatePem: string; publicPem: string } {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: bits });
  return {
    privatePem: privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

let serial = 1;

function certificate(publicKey: forge.pki.PublicKey, signer: forge.pki.rsa.PrivateKey, options: { readonly ca: boolean; readonly digest: 'sha1' | 'sha256' }): string {
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  cert.serialNumber = (serial++).toString(16).padStart(2, '0');
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + 10 * 365 * 24 * 3600 * 1000);
  cert.setExtensions([{ name: 'basicConstraints', cA: options.ca }]);
  cert.sign(signer, options.digest === 'sha1' ? forge.md.sha1.create() : forge.md.sha256.create());
  return forge.pki.certificateToPem(cert);
}

/** A complete host pair record for a phone whose DevicePublicKey is `devicePublicKeyPem`. */
export function makeHostPairRecord(devicePublicKeyPem: string, options: HostRecordOptions = {}): HostPairRecord {
  const bits = options.bits ?? 2048;
  const digest = options.digest ?? 'sha256';
  const root = keyPair(bits);
  const host = keyPair(bits);
  const rootKey = forge.pki.privateKeyFromPem(root.privatePem);
  const rootPublic = forge.pki.publicKeyFromPem(root.publicPem);
  return {
    hostId: options.hostId ?? randomUUID().toUpperCase(),
    systemBuid: options.systemBuid ?? randomUUID().toUpperCase(),
    rootCertificatePem: certificate(rootPublic, rootKey, { ca: true, digest }),
    rootPrivateKeyPem: root.privatePem,
    hostCertificatePem: certificate(forge.pki.publicKeyFromPem(host.publicPem), rootKey, { ca: false, digest }),
    hostPrivateKeyPem: host.privatePem,
    deviceCertificatePem: certificate(forge.pki.publicKeyFromPem(devicePublicKeyPem), rootKey, { ca: false, digest }),
  };
}

/** The Pair request a host sends for `record` (public parts only). */
export function pairRequest(record: HostPairRecord, request: 'Pair' | 'ValidatePair' = 'Pair'): PlistObject {
  return {
    Label: 'test',
    Request: request,
    ProtocolVersion: '2',
    PairingOptions: { ExtendedPairingErrors: true },
    PairRecord: {
      DeviceCertificate: Buffer.from(record.deviceCertificatePem, 'latin1'),
      HostCertificate: Buffer.from(record.hostCertificatePem, 'latin1'),
      RootCertificate: Buffer.from(record.rootCertificatePem, 'latin1'),
      HostID: record.hostId,
      SystemBUID: record.systemBuid,
    },
  };
}

/** One lockdown message as a host may send it: 4-byte BE length, then a BINARY plist. */
export function binaryFrame(message: PlistObject): Buffer {
  return lengthPrefixed(bplistCreator(message));
}
