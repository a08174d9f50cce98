/**
 * lockdownd as a phone answers it over Wi-Fi (TCP 62078), where it differs from USB
 * (docs: wifi-devices.md §5):
 *
 *   Pair                          → Error "PairingProhibitedOverThisConnection": the first pairing
 *                                   happens over USB; a Wi-Fi host only uses an existing record
 *   GetValue DevicePublicKey      → Error "GetProhibited" outside a session (what pymobiledevice3
 *                                   met when it tried to pair a Network device)
 *   GetValue before StartSession  → only the basic identity keys below (the whole-domain answer
 *                                   is cut to them; any other key or domain: "GetProhibited").
 *                                   The real list is not documented anywhere: this one holds what
 *                                   clients read before a session (pymobiledevice3's mobdev2 probe,
 *                                   libimobiledevice's ProductVersion check).
 *   StartService                  → a fresh TCP port from the ServiceLauncher, EnableServiceSSL as
 *                                   the service asks (true for the heartbeat)
 *
 * Everything else (QueryType, sessions, TLS, SetValue, ValidatePair, Unpair, Goodbye) is the USB
 * phone's LockdownResponder, on the same Pairing.
 */
import type { PlistObject, PlistValue } from 'plist';
import { LockdownResponder } from '../lockdown.js';
import type { LockdownOptions, LockdownSession } from '../lockdown.js';
import type { ServiceLauncher } from './service-launcher.js';

/** Keys a Wi-Fi phone answers before a session. */
export const PRE_SESSION_KEYS: readonly string[] = [
  'UniqueDeviceID',
  'DeviceName',
  'DeviceClass',
  'ProductType',
  'ProductName',
  'ProductVersion',
  'BuildVersion',
  'HardwareModel',
  'CPUArchitecture',
  'ProtocolVersion',
];

export const PAIRING_PROHIBITED = 'PairingProhibitedOverThisConnection';
export const GET_PROHIBITED = 'GetProhibited';

export class NetworkLockdownResponder extends LockdownResponder {
  constructor(
    options: LockdownOptions,
    private readonly launcher: ServiceLauncher,
  ) {
    super(options);
  }

  override answer(request: Record<string, unknown>, session?: LockdownSession): PlistObject {
    switch (request['Request']) {
      case 'Pair':
        this.startedSession = undefined;
        return { Request: 'Pair', Error: PAIRING_PROHIBITED };
      case 'GetValue':
        return session === undefined ? this.preSessionValue(request) : super.answer(request, session);
      case 'StartService':
        return this.launchService(request, session);
      default:
        return super.answer(request, session);
    }
  }

  private preSessionValue(request: Record<string, unknown>): PlistObject {
    const reply = super.answer(request, undefined);
    const key = request['Key'];
    const domain = request['Domain'];
    const prohibited = (): PlistObject => {
      const { Value: _dropped, Error: _error, ...echo } = reply;
      return { ...echo, Error: GET_PROHIBITED };
    };
    if (domain !== undefined) return prohibited();
    if (key === undefined) {
      const all = reply['Value'];
      if (typeof all !== 'object' || Array.isArray(all) || Buffer.isBuffer(all) || all instanceof Date) return reply;
      const basic: Record<string, PlistValue> = {};
      for (const name of PRE_SESSION_KEYS) {
        const value = (all as Record<string, PlistValue | undefined>)[name];
        if (value !== undefined) basic[name] = value;
      }
      return { ...reply, Value: basic };
    }
    return typeof key === 'string' && PRE_SESSION_KEYS.includes(key) ? reply : prohibited();
  }

  private launchService(request: Record<string, unknown>, session: LockdownSession | undefined): PlistObject {
    this.startedSession = undefined;
    const service = request['Service'];
    const echo: Record<string, PlistValue> = { Request: 'StartService' };
    if (typeof service !== 'string') return { ...echo, Error: 'InvalidService' };
    echo['Service'] = service;
    return { ...echo, ...this.launcher.launch(service, session) };
  }
}
