/**
 * Typed decoding of client requests and encoding of daemon replies, for both dialects:
 * binary (header version 0: RESULT, CONNECT, LISTEN, DEVICE_ADD/REMOVE/PAIRED) and plist
 * (message 8; XML bodies both ways). A binary plist (`bplist00`) body is refused as malformed:
 * usbmuxd reads bodies with plist_from_xml, so no working client sends one (libusbmuxd,
 * pymobiledevice3, go-ios, appium-ios-device and tidevice all write XML), and the binary reader
 * stays off this path. A binary plist inside PairRecordData is another matter: that is how
 * libimobiledevice saves records (the pair-record store reads both).
 *
 * Pure functions, no I/O. Decoding yields a complete request, every field it needs present and
 * typed, or throws the error whose Result the client gets (`errorToResult()`): a missing DeviceID
 * is UnknownDeviceError (2), a missing PortNumber BadCommandError (1), a missing PairRecordID or
 * PairRecordData InvalidPairRecordId/DataError (22), as usbmuxd answers them.
 */
import type { DeviceInfo, UsbDeviceInfo } from '../devices/index.js';
import { networkAddressFor } from './network-address.js';
import type { AddressLayout } from './network-address.js';
import { isIP } from 'node:net';
import { InvalidPairRecordDataError, InvalidPairRecordIdError, isValidPairRecordId } from '../pairrecords/index.js';
import { buildXml, isPlistDict, isPlistInteger, parsePlist, PlistParseError } from '../plist/index.js';
import type { PlistDict, PlistValue } from '../plist/index.js';
import { BadCommandError, BadVersionError, MalformedPlistRequestError, UnknownDeviceError } from './errors.js';
import { encodeFrame, MAX_FRAME_BYTES, MessageType, ProtocolVersion } from './framing.js';
import type { Frame } from './framing.js';

/** Keys usbmuxd keeps from every plist request (last one wins), shown by ListListeners. */
export interface ClientIdentity {
  bundleId?: string;
  clientVersionString?: string;
  progName?: string;
  libusbmuxVersion?: number;
}

export type Request =
  | { readonly type: 'Listen' }
  /** `port` in host order. */
  | { readonly type: 'Connect'; readonly deviceId: number; readonly port: number }
  | { readonly type: 'ListDevices' }
  | { readonly type: 'ListListeners' }
  | { readonly type: 'ReadBUID' }
  | { readonly type: 'ReadPairRecord'; readonly pairRecordId: string }
  /** `deviceId`: the device to raise Paired for, when the client named one (optional in the protocol). */
  | { readonly type: 'SavePairRecord'; readonly pairRecordId: string; readonly data: Buffer; readonly deviceId: number | undefined }
  | { readonly type: 'DeletePairRecord'; readonly pairRecordId: string }
  /**
   * netmuxd's convention for a network device multicast does not reach: `IPAddress` (an IP literal,
   * `%zone` allowed for fe80::) and optionally the UDID, which netmuxd calls `DeviceID`.
   */
  | { readonly type: 'AddDevice'; readonly address: string; readonly udid: string | undefined }
  /** Forget a device added with AddDevice, by UDID (`DeviceID`) or by `IPAddress`. */
  | { readonly type: 'RemoveDevice'; readonly udid: string | undefined; readonly address: string | undefined };

export interface DecodedRequest {
  readonly request: Request;
  /** True for a plist message (type 8): the connection switches to plist replies for good. */
  readonly plist: boolean;
  /** The identity keys this request carried (plist only). */
  readonly identity: ClientIdentity;
}

/** What a device looks like to clients: its DeviceID and what the directory knows of it. */
export interface DeviceRecord {
  readonly deviceId: number;
  readonly info: DeviceInfo;
}

/** The fields of a binary device record, as a client decodes them. */
export interface BinaryDeviceRecord {
  readonly deviceId: number;
  readonly productId: number;
  readonly serial: string;
  readonly locationId: number;
}

/** Binary device record: device_id u32, product_id u16, serial[256], padding u16, location u32. */
export const BINARY_DEVICE_RECORD_SIZE = 268;
const SERIAL_FIELD = 256;

/** ntohs on a little-endian host: the two low bytes swapped (62078 arrives as 32498). */
export function swapPort(value: number): number {
  return ((value & 0xff) << 8) | ((value >> 8) & 0xff);
}

/**
 * Whether this frame switches its connection to plist replies for good: any message of type 8
 * with a valid header version, even one whose body then fails to decode (§3.11).
 */
export function switchesToPlist(frame: Frame): boolean {
  return frame.message === MessageType.PLIST && (frame.version === ProtocolVersion.BINARY || frame.version === ProtocolVersion.PLIST);
}

/**
 * Decode one client frame. Throws BadVersionError, BadCommandError, MalformedPlistRequestError,
 * UnknownDeviceError, InvalidPairRecordIdError or InvalidPairRecordDataError.
 */
export function decodeRequest(frame: Frame): DecodedRequest {
  if (frame.version !== ProtocolVersion.BINARY && frame.version !== ProtocolVersion.PLIST) {
    throw new BadVersionError(`unsupported header version ${frame.version}`);
  }
  switch (frame.message) {
    case MessageType.LISTEN:
      return { request: { type: 'Listen' }, plist: false, identity: {} };
    case MessageType.CONNECT:
      return { request: decodeBinaryConnect(frame.body), plist: false, identity: {} };
    case MessageType.PLIST:
      return decodePlistRequest(frame.body);
    default:
      throw new BadCommandError(`unknown message type ${frame.message}`);
  }
}

function decodeBinaryConnect(body: Buffer): Request {
  if (body.length !== 8) throw new BadCommandError(`binary CONNECT body of ${body.length} bytes (want 8)`);
  return { type: 'Connect', deviceId: body.readUInt32LE(0), port: body.readUInt16BE(4) };
}

function decodePlistRequest(body: Buffer): DecodedRequest {
  let dict: PlistValue;
  try {
    dict = parsePlist(body, { maxBytes: MAX_FRAME_BYTES, maxDepth: 8, maxObjects: 1024 }, { formats: ['xml'] });
  } catch (err) {
    if (err instanceof PlistParseError) throw new MalformedPlistRequestError(`request body: ${err.message}`, { cause: err });
    throw err;
  }
  if (!isPlistDict(dict)) throw new MalformedPlistRequestError('request body is not a dict');
  const messageType = dict['MessageType'];
  if (typeof messageType !== 'string') throw new MalformedPlistRequestError('request has no string MessageType');
  return { request: plistRequest(messageType, dict), plist: true, identity: identityOf(dict) };
}

function plistRequest(messageType: string, dict: PlistDict): Request {
  switch (messageType) {
    case 'Listen':
    case 'ListDevices':
    case 'ListListeners':
    case 'ReadBUID':
      return { type: messageType };
    case 'Connect': {
      const deviceId = u32(dict['DeviceID']);
      if (deviceId === undefined) throw new UnknownDeviceError('Connect without DeviceID');
      const port = u32(dict['PortNumber']);
      if (port === undefined) throw new BadCommandError('Connect without PortNumber');
      return { type: 'Connect', deviceId, port: swapPort(port) };
    }
    case 'ReadPairRecord':
    case 'DeletePairRecord':
      return { type: messageType, pairRecordId: pairRecordId(messageType, dict) };
    case 'SavePairRecord': {
      const id = pairRecordId(messageType, dict);
      const data = dict['PairRecordData'];
      if (!Buffer.isBuffer(data)) throw new InvalidPairRecordDataError('SavePairRecord without PairRecordData');
      return { type: 'SavePairRecord', pairRecordId: id, data, deviceId: u32(dict['DeviceID']) };
    }
    case 'AddDevice': {
      const address = str(dict['IPAddress']);
      if (address === undefined || !isIpLiteral(address)) throw new BadCommandError('AddDevice without an IP address in IPAddress');
      const connectionType = dict['ConnectionType'];
      if (connectionType !== undefined && connectionType !== 'Network') throw new BadCommandError('AddDevice is for network devices');
      return { type: 'AddDevice', address, udid: udidField(dict) };
    }
    case 'RemoveDevice': {
      const address = str(dict['IPAddress']);
      const udid = udidField(dict);
      if (udid === undefined && (address === undefined || !isIpLiteral(address))) throw new BadCommandError('RemoveDevice without a UDID in DeviceID or an IPAddress');
      return { type: 'RemoveDevice', udid, address };
    }
    default:
      throw new BadCommandError(`unknown MessageType ${JSON.stringify(messageType.slice(0, 64))}`);
  }
}

/** An IPv4 or IPv6 literal (IPv6 may carry a `%zone` of interface-name characters). */
function isIpLiteral(text: string): boolean {
  const [address = '', zone, ...more] = text.split('%');
  if (more.length > 0) return false;
  if (zone !== undefined && !/^[A-Za-z0-9_.:-]{1,15}$/.test(zone)) return false;
  const family = isIP(address);
  return family === 6 || (family === 4 && zone === undefined);
}

/** The UDID of AddDevice/RemoveDevice: netmuxd sends it as a string `DeviceID`. */
function udidField(dict: PlistDict): string | undefined {
  const v = dict['DeviceID'];
  if (typeof v !== 'string') return undefined;
  if (!isValidPairRecordId(v)) throw new InvalidPairRecordIdError('DeviceID is not a UDID');
  return v;
}

function pairRecordId(messageType: string, dict: PlistDict): string {
  const id = str(dict['PairRecordID']);
  if (id === undefined) throw new InvalidPairRecordIdError(`${messageType} without PairRecordID`);
  return id;
}

/** An integer field as usbmuxd reads it (low 32 bits); anything else counts as missing. */
function u32(value: PlistValue | undefined): number | undefined {
  if (!isPlistInteger(value)) return undefined;
  return Number(BigInt(value) & 0xffffffffn);
}

function str(value: PlistValue | undefined): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function identityOf(dict: PlistDict): ClientIdentity {
  const identity: ClientIdentity = {};
  const bundleId = str(dict['BundleID']);
  const clientVersionString = str(dict['ClientVersionString']);
  const progName = str(dict['ProgName']);
  const version = u32(dict['kLibUSBMuxVersion']);
  if (bundleId !== undefined) identity.bundleId = bundleId;
  if (clientVersionString !== undefined) identity.clientVersionString = clientVersionString;
  if (progName !== undefined) identity.progName = progName;
  if (version !== undefined) identity.libusbmuxVersion = version;
  return identity;
}

// ---- replies and notifications -------------------------------------------------------------

/** Reply dialect of a connection: binary until its first plist message (§3.11). */
export type Dialect = 'binary' | 'plist';

export function encodePlistMessage(tag: number, dict: PlistDict): Buffer {
  return encodeFrame(ProtocolVersion.PLIST, MessageType.PLIST, tag, buildXml(dict));
}

/**
 * XML bodies of plist Results by number, built once: every Connect is answered with one, and the
 * body never changes (only the frame's tag does). Result numbers are a handful of small codes.
 */
const resultBodies = new Map<number, Buffer>();

export function encodeResult(dialect: Dialect, tag: number, number: number): Buffer {
  if (dialect === 'plist') {
    let body = resultBodies.get(number);
    if (body === undefined) {
      body = buildXml({ MessageType: 'Result', Number: number });
      if (resultBodies.size < 64) resultBodies.set(number, body);
    }
    return encodeFrame(ProtocolVersion.PLIST, MessageType.PLIST, tag, body);
  }
  const body = Buffer.allocUnsafe(4);
  body.writeUInt32LE(number, 0);
  return encodeFrame(ProtocolVersion.BINARY, MessageType.RESULT, tag, body);
}

/** `layout`: how this client reads a network device's NetworkAddress (see address-layout.ts). */
export function attachedDict(device: DeviceRecord, layout: AddressLayout = 'bsd'): PlistDict {
  return { MessageType: 'Attached', DeviceID: device.deviceId, Properties: deviceProperties(device, layout) };
}

/** The `Properties` of an Attached message or a DeviceList entry. */
function deviceProperties({ deviceId, info }: DeviceRecord, layout: AddressLayout): PlistDict {
  switch (info.connectionType) {
    case 'USB':
      return {
        ConnectionSpeed: info.speed,
        ConnectionType: info.connectionType,
        DeviceID: deviceId,
        LocationID: info.locationId,
        ProductID: info.productId,
        SerialNumber: info.serial,
        USBSerialNumber: info.usbSerial,
      };
    case 'Network':
      return {
        ConnectionType: info.connectionType,
        DeviceID: deviceId,
        // A manually added device was never advertised; the name other shims use then.
        EscapedFullServiceName: info.escapedFullServiceName ?? `${info.serial}._apple-mobdev2._tcp.local.`,
        InterfaceIndex: info.interfaceIndex,
        NetworkAddress: networkAddressFor(info, layout),
        SerialNumber: info.serial,
      };
  }
}

/** Binary (v0) device records have no connection type: those clients only ever see USB devices. */
export function encodeBinaryDeviceRecord({ deviceId, info }: DeviceRecord & { info: UsbDeviceInfo }): Buffer {
  const out = Buffer.alloc(BINARY_DEVICE_RECORD_SIZE);
  out.writeUInt32LE(deviceId, 0);
  out.writeUInt16LE(info.productId & 0xffff, 4);
  // At most 255 bytes: byte 255 of the field stays NUL.
  out.write(info.serial, 6, SERIAL_FIELD - 1, 'latin1');
  out.writeUInt32LE(info.locationId >>> 0, 264);
  return out;
}

export function decodeBinaryDeviceRecord(buf: Buffer): BinaryDeviceRecord {
  if (buf.length !== BINARY_DEVICE_RECORD_SIZE) throw new BadCommandError(`device record of ${buf.length} bytes`);
  const field = buf.subarray(6, 6 + SERIAL_FIELD);
  const nul = field.indexOf(0);
  return {
    deviceId: buf.readUInt32LE(0),
    productId: buf.readUInt16LE(4),
    serial: field.subarray(0, nul === -1 ? SERIAL_FIELD : nul).toString('latin1'),
    locationId: buf.readUInt32LE(264),
  };
}

/** For a binary client, the device must be a USB one (see encodeBinaryDeviceRecord). */
export function encodeAttached(dialect: Dialect, device: DeviceRecord, layout: AddressLayout = 'bsd'): Buffer {
  if (dialect === 'plist') return encodePlistMessage(0, attachedDict(device, layout));
  const { info } = device;
  if (info.connectionType !== 'USB') throw new RangeError('binary clients get USB devices only');
  return encodeFrame(ProtocolVersion.BINARY, MessageType.DEVICE_ADD, 0, encodeBinaryDeviceRecord({ deviceId: device.deviceId, info }));
}

export function encodeDetached(dialect: Dialect, deviceId: number): Buffer {
  return encodeDeviceEvent(dialect, 'Detached', MessageType.DEVICE_REMOVE, deviceId);
}

export function encodePaired(dialect: Dialect, deviceId: number): Buffer {
  return encodeDeviceEvent(dialect, 'Paired', MessageType.DEVICE_PAIRED, deviceId);
}

function encodeDeviceEvent(dialect: Dialect, name: string, message: number, deviceId: number): Buffer {
  if (dialect === 'plist') return encodePlistMessage(0, { MessageType: name, DeviceID: deviceId });
  const body = Buffer.allocUnsafe(4);
  body.writeUInt32LE(deviceId, 0);
  return encodeFrame(ProtocolVersion.BINARY, message, 0, body);
}

// ---- the client side (test client, interop tools) ---------------------------------------------

export type Reply =
  | { readonly kind: 'result'; readonly number: number }
  | { readonly kind: 'attached'; readonly deviceId: number; readonly dict?: PlistDict; readonly record?: BinaryDeviceRecord }
  | { readonly kind: 'detached'; readonly deviceId: number }
  | { readonly kind: 'paired'; readonly deviceId: number }
  /** A plist reply without a MessageType the above cover (DeviceList, BUID, PairRecordData, ...). */
  | { readonly kind: 'plist'; readonly dict: PlistDict };

/** Decode a daemon → client frame (used by clients and tests). */
export function decodeReply(frame: Frame): Reply {
  switch (frame.message) {
    case MessageType.RESULT:
      return { kind: 'result', number: u32body(frame.body) };
    case MessageType.DEVICE_ADD: {
      const record = decodeBinaryDeviceRecord(frame.body);
      return { kind: 'attached', deviceId: record.deviceId, record };
    }
    case MessageType.DEVICE_REMOVE:
      return { kind: 'detached', deviceId: u32body(frame.body) };
    case MessageType.DEVICE_PAIRED:
      return { kind: 'paired', deviceId: u32body(frame.body) };
    case MessageType.PLIST:
      return plistReply(frame.body);
    default:
      throw new BadCommandError(`unknown reply message type ${frame.message}`);
  }
}

function u32body(body: Buffer): number {
  if (body.length !== 4) throw new BadCommandError(`reply body of ${body.length} bytes (want 4)`);
  return body.readUInt32LE(0);
}

function plistReply(body: Buffer): Reply {
  const dict = parsePlist(body);
  if (!isPlistDict(dict)) throw new MalformedPlistRequestError('reply is not a dict');
  const deviceId = u32(dict['DeviceID']) ?? 0;
  const messageType = dict['MessageType'];
  switch (typeof messageType === 'string' ? messageType : undefined) {
    case 'Result':
      return { kind: 'result', number: u32(dict['Number']) ?? -1 };
    case 'Attached':
      return { kind: 'attached', deviceId, dict };
    case 'Detached':
      return { kind: 'detached', deviceId };
    case 'Paired':
      return { kind: 'paired', deviceId };
    case undefined:
    default:
      return { kind: 'plist', dict };
  }
}

/** A plist request frame as libusbmuxd sends it (version 1, message 8, XML body). */
export function encodePlistRequest(tag: number, dict: PlistDict): Buffer {
  return encodePlistMessage(tag, dict);
}

/** A binary CONNECT (port in host order; it goes on the wire big-endian). */
export function encodeBinaryConnect(tag: number, deviceId: number, port: number): Buffer {
  const body = Buffer.alloc(8);
  body.writeUInt32LE(deviceId, 0);
  body.writeUInt16BE(port, 4);
  return encodeFrame(ProtocolVersion.BINARY, MessageType.CONNECT, tag, body);
}

export function encodeBinaryListen(tag: number): Buffer {
  return encodeFrame(ProtocolVersion.BINARY, MessageType.LISTEN, tag);
}

