/**
 * Throw-away TLS certificates made by openssl in a directory: P-256 keys, two days, for tests of
 * the TCP listener's client-certificate check (test/integration/tcp-access.test.ts,
 * test/interop/remote-tls.test.ts).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TestCertificate {
  readonly pemFile: string;
  readonly keyFile: string;
  readonly pem: Buffer;
  readonly key: Buffer;
}

/** A key and certificate `name`.pem/.key in `dir` for `cn`, signed by `ca` (self-signed when undefined). */
export function makeCertificate(dir: string, name: string, cn: string, ca?: string): TestCertificate {
  const openssl = (...args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  };
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`];
  if (ca === undefined) {
    openssl('req', '-x509', ...key, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=${cn}`);
  } else {
    openssl('req', ...key, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
    openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.pem`, '-days', '2');
  }
  const pemFile = join(dir, `${name}.pem`);
  const keyFile = join(dir, `${name}.key`);
  return { pemFile, keyFile, pem: readFileSync(pemFile), key: readFileSync(keyFile) };
}
