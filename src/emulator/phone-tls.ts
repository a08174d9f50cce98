/**
 * The phone's side of TLS with a paired host, shared by lockdown sessions (lockdown-session.ts)
 * and services started with EnableServiceSSL (service-tls.ts): its identity is the host's pair
 * record DeviceCertificate with the phone's own key; it asks for the client's certificate and
 * accepts the record's HostCertificate (or its RootCertificate, which libimobiledevice 1.3.0
 * presents instead). Security level 0 (SHA-1 signed certificates of older hosts), TLS 1.0 to 1.2
 * like a real phone.
 */
import { createSecureContext } from 'node:tls';
import type { SecureContext, TLSSocket } from 'node:tls';
import type { PairedHost, Pairing } from './pairing.js';

/** OpenSSL cipher string of the phone's TLS side: every default suite, SHA-1 certificates allowed. */
export const PHONE_TLS_CIPHERS = 'DEFAULT:@SECLEVEL=0';
export const PHONE_TLS_MIN_VERSION = 'TLSv1';
export const PHONE_TLS_MAX_VERSION = 'TLSv1.2';

const contexts = new WeakMap<PairedHost, SecureContext>();

/** The phone's TLS server context for `host` (made once per host). */
export function phoneSecureContext(host: PairedHost, pairing: Pairing): SecureContext {
  let context = contexts.get(host);
  if (context === undefined) {
    context = createSecureContext({
      key: pairing.deviceKey.privatePem,
      cert: host.deviceCertificatePem,
      ciphers: PHONE_TLS_CIPHERS,
      minVersion: PHONE_TLS_MIN_VERSION,
      maxVersion: PHONE_TLS_MAX_VERSION,
    });
    contexts.set(host, context);
  }
  return context;
}

/** Why the client's certificate is refused after the handshake, or undefined when it is the host's. */
export function clientCertificateProblem(socket: TLSSocket, host: PairedHost): string | undefined {
  const peer = socket.getPeerX509Certificate();
  if (peer === undefined) return 'no client certificate';
  if (peer.raw.equals(host.hostCertificate) || peer.raw.equals(host.rootCertificate)) return undefined;
  return "the client certificate is not the host's";
}
