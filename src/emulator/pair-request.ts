/**
 * Shape checks for the PairRecord a host sends with Pair and ValidatePair, and the phone's own
 * RSA key. Pure functions over parsed plists; no state.
 *
 * A Pair request from libimobiledevice carries `PairRecord` (the public half of the host's new
 * pair record: DeviceCertificate, HostCertificate, RootCertificate as PEM data, HostID and
 * SystemBUID strings), `ProtocolVersion "2"` and optionally `PairingOptions`.
 */
import { X509Certificate, generateKeyPair, generateKeyPairSync } from 'node:crypto';
import type { KeyObject } from 'node:crypto';

/** The phone's key pair: RSA 2048, like a real device's lockdown identity. */
export interface DeviceKey {
  /** PKCS#1 PEM ("-----BEGIN RSA PUBLIC KEY-----"), what GetValue DevicePublicKey returns. */
  readonly publicPem: string;
  /** PKCS#8 PEM, for the TLS server side of a session. */
  readonly privatePem: string;
  readonly publicKey: KeyObject;
}

function deviceKeyOf(publicKey: KeyObject, privateKey: KeyObject): DeviceKey {
  return {
    publicPem: publicKey.export({ type: 'pkcs1', format: 'pem' }).toString(),
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKey,
  };
}

/** Synchronous: holds the event loop for the whole RSA generation (0.1–0.8 s). */
export function generateDeviceKey(): DeviceKey {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return deviceKeyOf(publicKey, privateKey);
}

/** The same on libuv's thread pool: the event loop keeps turning meanwhile. */
export function generateDeviceKeyAsync(): Promise<DeviceKey> {
  return new Promise((resolve, reject) => {
    generateKeyPair('rsa', { modulusLength: 2048 }, (err, publicKey, privateKey) => {
      if (err) reject(err);
      else resolve(deviceKeyOf(publicKey, privateKey));
    });
  });
}

/** What the phone keeps of a host's Pair request. Certificates in DER (for byte comparison). */
export interface PairRequestRecord {
  readonly hostId: string;
  readonly systemBuid: string;
  readonly hostCertificate: Buffer;
  readonly rootCertificate: Buffer;
  /** The PEM as sent: the phone's TLS server certificate in later sessions. */
  readonly deviceCertificatePem: string;
}

/** Lockdown error string for a request that is not a well-formed pair record. */
export const INVALID_PAIR_RECORD = 'InvalidPairRecord';

function isDict(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !Buffer.isBuffer(value) && !(value instanceof Date);
}

/** A PEM certificate sent as data; undefined when it is not data or does not parse. */
function certificate(value: unknown): X509Certificate | undefined {
  if (!Buffer.isBuffer(value) || value.length === 0 || value.length > 64 * 1024) return undefined;
  try {
    return new X509Certificate(value);
  } catch {
    return undefined;
  }
}

/**
 * Checks a Pair request's shape and that its DeviceCertificate is for `deviceKey`. Returns the
 * record, or a reason (for logs and tests; the wire answer is {@link INVALID_PAIR_RECORD}).
 */
export function checkPairRequest(request: Record<string, unknown>, deviceKey: KeyObject): PairRequestRecord | string {
  if (request['ProtocolVersion'] !== '2') return 'ProtocolVersion is not "2"';
  const options = request['PairingOptions'];
  if (options !== undefined && !isDict(options)) return 'PairingOptions is not a dictionary';
  const record = checkRecordCertificates(request['PairRecord']);
  if (typeof record === 'string') return record;
  const device = certificate(record.deviceCertificatePemBuffer);
  if (device === undefined) return 'DeviceCertificate is not a PEM certificate';
  let samePublicKey: boolean;
  try {
    samePublicKey = device.publicKey.export({ type: 'spki', format: 'der' }).equals(deviceKey.export({ type: 'spki', format: 'der' }));
  } catch {
    samePublicKey = false;
  }
  if (!samePublicKey) return "DeviceCertificate's public key is not the phone's";
  const { deviceCertificatePemBuffer, ...rest } = record;
  return { ...rest, deviceCertificatePem: deviceCertificatePemBuffer.toString('latin1') };
}

interface CheckedRecord extends Omit<PairRequestRecord, 'deviceCertificatePem'> {
  readonly deviceCertificatePemBuffer: Buffer;
}

function checkRecordCertificates(value: unknown): CheckedRecord | string {
  if (!isDict(value)) return 'PairRecord is not a dictionary';
  const hostId = value['HostID'];
  const systemBuid = value['SystemBUID'];
  if (typeof hostId !== 'string' || hostId === '' || hostId.length > 256) return 'HostID is not a non-empty string';
  if (typeof systemBuid !== 'string' || systemBuid === '' || systemBuid.length > 256) return 'SystemBUID is not a non-empty string';
  const host = certificate(value['HostCertificate']);
  if (host === undefined) return 'HostCertificate is not a PEM certificate';
  const root = certificate(value['RootCertificate']);
  if (root === undefined) return 'RootCertificate is not a PEM certificate';
  const device = value['DeviceCertificate'];
  if (!Buffer.isBuffer(device)) return 'DeviceCertificate is not data';
  return { hostId, systemBuid, hostCertificate: host.raw, rootCertificate: root.raw, deviceCertificatePemBuffer: device };
}

/** ValidatePair: the HostID (and the HostCertificate, when sent) of a PairRecord dict. */
export function validatePairFields(request: Record<string, unknown>): { readonly hostId: string; readonly hostCertificate: Buffer | undefined } | string {
  const record = request['PairRecord'];
  if (!isDict(record)) return 'PairRecord is not a dictionary';
  const hostId = record['HostID'];
  if (typeof hostId !== 'string' || hostId === '') return 'HostID is not a non-empty string';
  const sent = record['HostCertificate'];
  if (sent === undefined) return { hostId, hostCertificate: undefined };
  const host = certificate(sent);
  if (host === undefined) return 'HostCertificate is not a PEM certificate';
  return { hostId, hostCertificate: host.raw };
}
