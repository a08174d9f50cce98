/**
 * A phone's identity (its RSA key and the hosts it trusts) as JSON, so the USB harness's bridge
 * process can stay the same phone across unplug/replug (a real iPhone remembers its pairings).
 *
 * Format (version 1): { "version": 1, "devicePrivateKeyPem": "...", "hosts": [ { "hostId",
 * "systemBuid", "hostCertificate" (base64 DER), "rootCertificate" (base64 DER),
 * "deviceCertificatePem", "escrowBag" (base64), "sessionCertificatesValid" } ],
 * "enableWifiConnections": true|false }. A file without enableWifiConnections (written before it
 * existed) is a phone with Wi-Fi connections off, as a new phone is.
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import type { DeviceKey } from './pair-request.js';
import type { PairedHost, PhoneIdentity } from './pairing.js';

const VERSION = 1;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The identity as JSON text (Wi-Fi connections off unless `wifiConnections` says otherwise). */
export function encodeIdentity(identity: Required<Pick<PhoneIdentity, 'deviceKey' | 'hosts'>> & PhoneIdentity): string {
  return JSON.stringify(
    {
      version: VERSION,
      devicePrivateKeyPem: identity.deviceKey.privatePem,
      hosts: identity.hosts.map((h) => ({
        hostId: h.hostId,
        systemBuid: h.systemBuid,
        hostCertificate: h.hostCertificate.toString('base64'),
        rootCertificate: h.rootCertificate.toString('base64'),
        deviceCertificatePem: h.deviceCertificatePem,
        escrowBag: h.escrowBag.toString('base64'),
        sessionCertificatesValid: h.sessionCertificatesValid,
      })),
      enableWifiConnections: identity.wifiConnections ?? false,
    },
    null,
    2,
  );
}

function deviceKeyFromPrivatePem(privatePem: string): DeviceKey {
  const privateKey = createPrivateKey(privatePem);
  const publicKey = createPublicKey(privateKey);
  return {
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'pkcs1', format: 'pem' }).toString(),
    publicKey,
  };
}

function decodeHost(value: unknown): PairedHost | undefined {
  if (!isRecord(value)) return undefined;
  const { hostId, systemBuid, hostCertificate, rootCertificate, deviceCertificatePem, escrowBag, sessionCertificatesValid } = value;
  if (typeof hostId !== 'string' || typeof systemBuid !== 'string' || typeof deviceCertificatePem !== 'string') return undefined;
  if (typeof hostCertificate !== 'string' || typeof rootCertificate !== 'string' || typeof escrowBag !== 'string') return undefined;
  if (typeof sessionCertificatesValid !== 'boolean') return undefined;
  return {
    hostId,
    systemBuid,
    hostCertificate: Buffer.from(hostCertificate, 'base64'),
    rootCertificate: Buffer.from(rootCertificate, 'base64'),
    deviceCertificatePem,
    escrowBag: Buffer.from(escrowBag, 'base64'),
    sessionCertificatesValid,
  };
}

/** Parse JSON text written by {@link encodeIdentity}; a string says what is wrong with it. */
export function decodeIdentity(text: string): Required<PhoneIdentity> | string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return `not JSON: ${err instanceof Error ? err.message : String(err)}`;
  }
  if (!isRecord(value) || value['version'] !== VERSION) return `not a version ${VERSION} phone identity`;
  const pem = value['devicePrivateKeyPem'];
  const hosts = value['hosts'];
  if (typeof pem !== 'string' || !Array.isArray(hosts)) return 'devicePrivateKeyPem or hosts missing';
  const wifi = value['enableWifiConnections'] ?? false;
  if (typeof wifi !== 'boolean') return 'enableWifiConnections is not true or false';
  let deviceKey: DeviceKey;
  try {
    deviceKey = deviceKeyFromPrivatePem(pem);
  } catch (err) {
    return `devicePrivateKeyPem: ${err instanceof Error ? err.message : String(err)}`;
  }
  const decoded: PairedHost[] = [];
  for (const host of hosts) {
    const h = decodeHost(host);
    if (h === undefined) return 'a host entry is malformed';
    decoded.push(h);
  }
  return { deviceKey, hosts: decoded, wifiConnections: wifi };
}
