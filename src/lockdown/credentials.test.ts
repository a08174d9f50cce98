import { describe, expect, it } from 'vitest';
import { buildXml } from '../plist/index.js';
import { sessionCredentials } from './credentials.js';
import { UnusablePairRecordError } from './errors.js';

describe('sessionCredentials', () => {
  it('refuses records without what StartSession needs', () => {
    expect(() => sessionCredentials(Buffer.from('garbage'))).toThrow(UnusablePairRecordError);
    expect(() => sessionCredentials(buildXml({ HostID: 'X' }))).toThrow(/HostCertificate/);
    expect(() => sessionCredentials(buildXml({ HostCertificate: Buffer.from('a'), HostPrivateKey: Buffer.from('b') }))).toThrow(/HostID/);
    expect(() => sessionCredentials(buildXml(['x']))).toThrow(/dictionary/);
  });

  it('reads PEMs stored as data or as strings, and the WiFiMACAddress when present', () => {
    const asData = sessionCredentials(buildXml({ HostID: 'H', HostCertificate: Buffer.from('c'), HostPrivateKey: Buffer.from('k'), DeviceCertificate: Buffer.from('d'), WiFiMACAddress: 'aa:bb:cc:dd:ee:ff' }));
    expect(asData).toEqual({ hostId: 'H', hostCertificate: Buffer.from('c'), hostPrivateKey: Buffer.from('k'), deviceCertificate: Buffer.from('d'), wifiMacAddress: 'aa:bb:cc:dd:ee:ff' });
    const asStrings = sessionCredentials(buildXml({ HostID: 'H', HostCertificate: 'c', HostPrivateKey: 'k', WiFiMACAddress: '' }));
    expect(asStrings).toEqual({ hostId: 'H', hostCertificate: Buffer.from('c'), hostPrivateKey: Buffer.from('k'), deviceCertificate: undefined, wifiMacAddress: undefined });
  });
});
