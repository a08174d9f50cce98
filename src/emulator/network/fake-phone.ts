/**
 * A FAKE of a paired phone, for the identity checks of a host: it claims the real phone's UDID,
 * copies its advert (identifier, and so the same authTags) and knows every public part of its
 * pairings (HostID, SystemBUID, the host and root certificates: all of them cross the network in
 * clear during a session's StartSession and TLS 1.2 handshake). What it cannot have is the real
 * phone's private key, so it presents a certificate of its own key instead of the record's
 * DeviceCertificate.
 *
 * A host that checks the server certificate against the pair record (the DeviceCertificate, or
 * its public key, the record's DevicePublicKey) refuses it at once. A host that does not pin
 * completes the TLS handshake with it: that is what this fake exists to catch.
 */
import { createPrivateKey } from 'node:crypto';
import type Forge from 'node-forge';
import { generateDeviceKeyAsync } from '../pair-request.js';
import type { PairedHost, PhoneIdentity } from '../pairing.js';

/** A self-signed certificate for `privatePem`'s key (what the fake shows as its DeviceCertificate). */
function selfSignedPem(forge: typeof Forge, privatePem: string): string {
  const pkcs1 = createPrivateKey(privatePem).export({ type: 'pkcs1', format: 'pem' }).toString();
  const key = forge.pki.privateKeyFromPem(pkcs1);
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
  cert.serialNumber = '00';
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + 365 * 24 * 3600 * 1000);
  cert.setExtensions([{ name: 'basicConstraints', cA: false }]);
  cert.sign(key, forge.md.sha256.create());
  return forge.pki.certificateToPem(cert);
}

/** The fake's identity: a key of its own, the real phone's hosts with its own certificate; it always advertises. */
export async function fakeIdentityOf(real: PhoneIdentity): Promise<Required<PhoneIdentity>> {
  // node-forge only when a fake is made: whoever imports the emulator does not pay for it.
  const [deviceKey, forge] = await Promise.all([generateDeviceKeyAsync(), import('node-forge').then((m) => m.default)]);
  const deviceCertificatePem = selfSignedPem(forge, deviceKey.privatePem);
  const hosts: PairedHost[] = (real.hosts ?? []).map((h) => ({ ...h, deviceCertificatePem, sessionCertificatesValid: true }));
  return { deviceKey, hosts, wifiConnections: true };
}
