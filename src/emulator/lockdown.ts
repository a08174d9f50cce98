/**
 * A session-less lockdownd stub on port 62078: enough for preflight's first steps and for
 * `ideviceinfo -s` (QueryType, then GetValue with no Key).
 *
 * Framing: each message is a 4-byte BIG-endian length, then a property list. Requests may be XML
 * or binary (`bplist00`); replies are XML. Per connection:
 *
 *   [ NEED_LENGTH ] --4 bytes--> [ NEED_BODY n ] --n bytes: parse, answer--> [ NEED_LENGTH ]
 *                                     |
 *                                     +-- n > 1 MiB, unparseable, or not a dictionary: close (RST)
 *
 * Answers (lockdownd-like; `Label` is ignored, `Request` is echoed, failures carry `Error`):
 *
 *   QueryType                 → Type "com.apple.mobile.lockdown"
 *   GetValue [Domain] [Key]   → Value (the whole domain when no Key); unknown Key or Domain:
 *                               Error "MissingValue"
 *   SetValue UntrustedHostBUID → accepted (remembered); any other SetValue: Error "SessionInactive"
 *   StartSession, ValidatePair → Error "InvalidHostID"   (the phone knows no pair record)
 *   Pair                      → Error "PasswordProtected" (a locked phone that never pairs)
 *   StartService              → Error "InvalidService"
 *   StopSession               → Error "SessionInactive"
 *   Goodbye                   → Result "Success"
 *   no Request key            → Error "MissingRequest"; any other Request: Error "InvalidRequest"
 */
import { parseBuffer } from 'bplist-parser';
import plist from 'plist';
import type { PlistObject, PlistValue } from 'plist';
import type { Service, ServiceConnection } from './service.js';

/** Largest lockdown message body accepted before the connection is reset. */
export const MAX_LOCKDOWN_MESSAGE = 1024 * 1024;
export const LOCKDOWN_TYPE = 'com.apple.mobile.lockdown';

export interface LockdownOptions {
  readonly udid: string;
  /** Replace or add values in the default (no) domain. */
  readonly values?: PlistObject;
}

/** Values of the default domain for a phone with this UDID. */
export function defaultLockdownValues(udid: string): PlistObject {
  return {
    UniqueDeviceID: udid,
    DeviceName: 'Virtual iPhone',
    DeviceClass: 'iPhone',
    ProductType: 'iPhone15,2',
    ProductName: 'iPhone OS',
    ProductVersion: '17.5',
    BuildVersion: '21F79',
    SerialNumber: 'F2LXV0ABCDEF',
    HardwareModel: 'D73AP',
    ModelNumber: 'MQ0G3',
    RegionInfo: 'ZD/A',
    CPUArchitecture: 'arm64e',
    ChipID: 0x8120,
    BoardId: 12,
    UniqueChipID: 0x1a2b3c4d5e802e,
    WiFiAddress: 'a4:c3:f0:12:34:56',
    BluetoothAddress: 'a4:c3:f0:12:34:57',
    EthernetAddress: 'a4:c3:f0:12:34:58',
    ActivationState: 'Activated',
    PasswordProtected: false,
    HostAttached: true,
    TelephonyCapability: true,
    TimeZone: 'Europe/Berlin',
    TimeZoneOffsetFromUTC: 3600,
    Uses24HourClock: true,
    DeviceColor: '1',
    FirmwareVersion: 'iBoot-10151.122.1',
    ProtocolVersion: '2',
  };
}

function isDict(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !Buffer.isBuffer(value) && !(value instanceof Date);
}

/** Parse one message body (XML or binary); undefined when it is not a plist dictionary. */
export function parseLockdownMessage(body: Buffer): Record<string, unknown> | undefined {
  const binary = body.subarray(0, 8).toString('latin1') === 'bplist00';
  // An XML plist without its closing tag is truncated; refuse it before xmldom prints to stderr.
  if (!binary && !body.includes('</plist>')) return undefined;
  try {
    const value: unknown = binary ? parseBuffer<unknown>(body)[0] : plist.parse(body.toString('utf8'));
    return isDict(value) ? value : undefined;
  } catch {
    return undefined; // unparseable: the caller resets the connection
  }
}

/** One framed XML message: 4-byte BE length, then the plist. */
export function frameLockdownMessage(message: PlistObject): Buffer {
  const body = Buffer.from(plist.build(message), 'utf8');
  const frame = Buffer.allocUnsafe(4 + body.length);
  frame.writeUInt32BE(body.length, 0);
  body.copy(frame, 4);
  return frame;
}

/** The phone's lockdownd: pure request → reply logic, separate from framing for testing. */
export class LockdownResponder {
  private readonly domains: Map<string, PlistObject>;
  /** Last UntrustedHostBUID the host set (preflight does this), for tests to check. */
  untrustedHostBuid: string | undefined;

  constructor(options: LockdownOptions) {
    this.domains = new Map<string, PlistObject>([
      ['', { ...defaultLockdownValues(options.udid), ...options.values }],
      ['com.apple.mobile.battery', { BatteryCurrentCapacity: 100, BatteryIsCharging: false, ExternalConnected: true, FullyCharged: true }],
      ['com.apple.disk_usage', { TotalDiskCapacity: 128_000_000_000, TotalDataCapacity: 110_000_000_000, TotalDataAvailable: 64_000_000_000 }],
      ['com.apple.PurpleBuddy', { SetupDone: true }],
    ]);
  }

  answer(request: Record<string, unknown>): PlistObject {
    const name = request['Request'];
    if (typeof name !== 'string') return { Error: 'MissingRequest' };
    switch (name) {
      case 'QueryType':
        return { Request: name, Type: LOCKDOWN_TYPE };
      case 'GetValue':
        return this.getValue(request);
      case 'SetValue':
        return this.setValue(request);
      case 'StartSession':
      case 'ValidatePair':
        return { Request: name, Error: 'InvalidHostID' };
      case 'Pair':
        return { Request: name, Error: 'PasswordProtected' };
      case 'StartService':
        return { Request: name, Error: 'InvalidService' };
      case 'StopSession':
        return { Request: name, Error: 'SessionInactive' };
      case 'Goodbye':
        return { Request: name, Result: 'Success' };
      default:
        return { Request: name, Error: 'InvalidRequest' };
    }
  }

  private getValue(request: Record<string, unknown>): PlistObject {
    const domainName = request['Domain'];
    const key = request['Key'];
    const echo: Record<string, PlistValue> = { Request: 'GetValue' };
    if (typeof domainName === 'string') echo['Domain'] = domainName;
    if (typeof key === 'string') echo['Key'] = key;
    const domain = this.domains.get(typeof domainName === 'string' ? domainName : '');
    if (domain === undefined) return { ...echo, Error: 'MissingValue' };
    if (typeof key !== 'string') return { ...echo, Value: domain };
    const value = domain[key];
    return value === undefined ? { ...echo, Error: 'MissingValue' } : { ...echo, Value: value };
  }

  private setValue(request: Record<string, unknown>): PlistObject {
    const key = request['Key'];
    const value = request['Value'];
    if (key === 'UntrustedHostBUID' && request['Domain'] === undefined && typeof value === 'string') {
      this.untrustedHostBuid = value;
      return { Request: 'SetValue', Key: key };
    }
    return { Request: 'SetValue', Error: 'SessionInactive' };
  }
}

interface FrameState {
  chunks: Buffer[];
  buffered: number;
}

/** lockdownd as a Service: frames, parses, answers; resets the connection on bad input. */
export function createLockdownService(options: LockdownOptions, responder = new LockdownResponder(options)): Service {
  const frames = new WeakMap<ServiceConnection, FrameState>();
  return {
    name: 'lockdownd',
    onOpen(conn) {
      frames.set(conn, { chunks: [], buffered: 0 });
    },
    onData(conn, data) {
      const state = frames.get(conn);
      if (state === undefined) return;
      state.chunks.push(data);
      state.buffered += data.length;
      if (state.buffered < 4) return;
      let buf = state.chunks.length === 1 ? data : Buffer.concat(state.chunks, state.buffered);
      while (buf.length >= 4 && conn.open) {
        const length = buf.readUInt32BE(0);
        if (length > MAX_LOCKDOWN_MESSAGE) {
          conn.close();
          return;
        }
        if (buf.length < 4 + length) break;
        const request = parseLockdownMessage(buf.subarray(4, 4 + length));
        if (request === undefined) {
          conn.close();
          return;
        }
        conn.write(frameLockdownMessage(responder.answer(request)));
        buf = buf.subarray(4 + length);
      }
      state.chunks = buf.length > 0 ? [buf] : [];
      state.buffered = buf.length;
    },
    onClose(conn) {
      frames.delete(conn);
    },
  };
}
