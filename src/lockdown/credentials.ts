/**
 * What a TLS session with lockdownd needs from a stored pair record (docs/usbmux-protocol.md §4.3):
 * the HostID to name ourselves with, the host certificate and key to present, and the device
 * certificate the phone must present back. The record's WiFiMACAddress is read too: it is how an
 * older phone's Wi-Fi advert is matched to its record.
 */
import { isPlistDict, parsePlist, PlistParseError } from '../plist/index.js';
import type { PlistDict } from '../plist/index.js';
import { UnusablePairRecordError } from './errors.js';

export interface SessionCredentials {
  readonly hostId: string;
  readonly hostCertificate: Buffer;
  readonly hostPrivateKey: Buffer;
  /** The certificate the phone presents in the TLS session (PEM), when the record has it. */
  readonly deviceCertificate: Buffer | undefined;
  /** `WiFiMACAddress`, when the record has one. */
  readonly wifiMacAddress: string | undefined;
}

function dataField(dict: PlistDict, key: string): Buffer | undefined {
  const v = dict[key];
  if (Buffer.isBuffer(v)) return v;
  // Some tools store PEMs as strings; accept them.
  if (typeof v === 'string' && v !== '') return Buffer.from(v, 'utf8');
  return undefined;
}

/** HostID, host certificate and key from a stored record; UnusablePairRecordError otherwise. */
export function sessionCredentials(stored: Buffer): SessionCredentials {
  let value;
  try {
    value = parsePlist(stored);
  } catch (err) {
    if (err instanceof PlistParseError) throw new UnusablePairRecordError('the stored pair record does not parse', { cause: err });
    throw err;
  }
  if (!isPlistDict(value)) throw new UnusablePairRecordError('the stored pair record is not a dictionary');
  const hostId = value['HostID'];
  if (typeof hostId !== 'string' || hostId === '') throw new UnusablePairRecordError('the stored pair record has no HostID');
  const hostCertificate = dataField(value, 'HostCertificate');
  const hostPrivateKey = dataField(value, 'HostPrivateKey');
  if (hostCertificate === undefined || hostPrivateKey === undefined) {
    throw new UnusablePairRecordError('the stored pair record has no HostCertificate or HostPrivateKey');
  }
  const mac = value['WiFiMACAddress'];
  return {
    hostId,
    hostCertificate,
    hostPrivateKey,
    deviceCertificate: dataField(value, 'DeviceCertificate'),
    wifiMacAddress: typeof mac === 'string' && mac !== '' ? mac : undefined,
  };
}
