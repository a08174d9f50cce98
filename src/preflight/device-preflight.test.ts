/**
 * The preflight state machine against a scripted phone (in-memory Device/DeviceConnection, no
 * TLS, no RSA): a fast-check property over stored record × StartSession answer × Pair answers ×
 * trust notifications, checked against a small model of §5.3 with the "always announced" rule,
 * plus: no connection left open after cancel, no unhandled rejection.
 */
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../log.js';
import type { CloseReason, ConnectionSink, DeviceConnection, Device } from '../devices/index.js';
import { ConnectionRefusedError } from '../devices/index.js';
import type { PairRecordStore } from '../pairrecords/index.js';
import { PairRecordNotFoundError } from '../pairrecords/index.js';
import { buildXml } from '../plist/index.js';
import type { PlistDict } from '../plist/index.js';
import { DevicePreflight, isModernDevice } from './device-preflight.js';
import type { PreflightState } from './device-preflight.js';
import type { NewPairRecord } from './pair-record.js';
import { encodePlistFrame, parsePlistMessage, PlistFrameDecoder } from '../lockdown/index.js';

type PairAnswer = 'ok' | 'pending' | 'denied' | 'locked' | 'drop';
type SessionAnswer = 'ok' | 'invalid' | 'other';
type PhoneEvent = 'request_pair' | 'request_host_buid' | 'proxy_death' | 'paired_elsewhere';

interface Scenario {
  readonly hasRecord: boolean;
  readonly session: SessionAnswer;
  readonly pairs: readonly PairAnswer[];
  readonly events: readonly PhoneEvent[];
}

const PROXY_PORT = 1000;
const UDID = '00008030-001A2B3C4D5E802E';

/** One side of a scripted connection; replies go out on a later turn, like a real device. */
class ScriptedConnection implements DeviceConnection {
  readonly localPort = 1;
  sink: ConnectionSink | undefined;
  closed = false;
  private readonly decoder = new PlistFrameDecoder();
  constructor(readonly remotePort: number, private readonly onMessage: (conn: ScriptedConnection, msg: PlistDict) => void) {}
  write(chunk: Buffer): boolean {
    if (this.closed) return false;
    for (const body of this.decoder.push(chunk)) this.onMessage(this, parsePlistMessage(body));
    return true;
  }
  reset(): void {
    this.close('local-reset');
  }
  attach(sink: ConnectionSink): void {
    this.sink = sink;
  }
  send(msg: PlistDict): void {
    setImmediate(() => { if (!this.closed) this.sink?.onData(encodePlistFrame(msg), () => undefined); });
  }
  end(): void {
    this.close('local-end');
  }
  close(reason: CloseReason): void {
    if (this.closed) return;
    this.closed = true;
    this.sink?.onClose(reason);
  }
}

class ScriptedPhone {
  readonly conns: ScriptedConnection[] = [];
  readonly requests: string[] = [];
  proxy: ScriptedConnection | undefined;
  private readonly pairs: PairAnswer[];
  readonly device: Device;
  constructor(private readonly scenario: Scenario, lockdownUp = true) {
    this.pairs = [...scenario.pairs];
    this.device = {
      id: 7,
      info: { connectionType: 'USB', serial: UDID, usbSerial: UDID.replace('-', ''), productId: 0x12a8, locationId: 1, speed: 480_000_000 },
      visible: true,
      connect: (port: number) => {
        if (!lockdownUp) return Promise.reject(new ConnectionRefusedError(port));
        const conn = new ScriptedConnection(port, (c, m) => { this.handle(c, m); });
        this.conns.push(conn);
        if (port === PROXY_PORT) this.proxy = conn;
        return Promise.resolve(conn);
      },
    };
  }
  relay(name: string): void {
    this.proxy?.send({ Command: 'RelayNotification', Name: name });
  }
  proxyDeath(): void {
    this.proxy?.send({ Command: 'ProxyDeath' });
  }
  private handle(conn: ScriptedConnection, msg: PlistDict): void {
    if (conn.remotePort === PROXY_PORT) return;
    const request = typeof msg['Request'] === 'string' ? msg['Request'] : '';
    this.requests.push(request);
    const reply = (fields: PlistDict): void => { conn.send({ Request: request, ...fields }); };
    switch (request) {
      case 'QueryType': reply({ Type: 'com.apple.mobile.lockdown' }); break;
      case 'GetValue': {
        const values: PlistDict = { ProductVersion: '17.5', DeviceClass: 'iPhone', DevicePublicKey: Buffer.from('key'), WiFiAddress: 'a4:c3:f0:12:34:56' };
        const key = typeof msg['Key'] === 'string' ? msg['Key'] : '';
        const v = values[key];
        reply(v === undefined ? { Error: 'MissingValue' } : { Key: key, Value: v });
        break;
      }
      case 'SetValue': reply({}); break;
      case 'StartSession':
        if (this.scenario.session === 'ok') reply({ SessionID: 'S', EnableSessionSSL: false });
        else reply({ Error: this.scenario.session === 'invalid' ? 'InvalidHostID' : 'PasswordProtected' });
        break;
      case 'StopSession': reply({}); break;
      case 'StartService': reply({ Service: 'x', Port: PROXY_PORT }); break;
      case 'Pair': {
        const answer = this.pairs.shift() ?? 'pending';
        if (answer === 'ok') reply({ EscrowBag: Buffer.from('bag') });
        else if (answer === 'drop') setImmediate(() => { conn.close('device-reset'); });
        else reply({ Error: answer === 'pending' ? 'PairingDialogResponsePending' : answer === 'denied' ? 'UserDeniedPairing' : 'PasswordProtected' });
        break;
      }
      default: reply({ Error: 'InvalidRequest' });
    }
  }
}

class MemoryStore implements PairRecordStore {
  readonly records = new Map<string, Buffer>();
  saves = 0;
  deletes = 0;
  systemBuid(): Promise<string> { return Promise.resolve('0A1B2C3D-4E5F-6071-8293-A4B5C6D7E8F9'); }
  read(id: string): Promise<Buffer> {
    const r = this.records.get(id);
    return r === undefined ? Promise.reject(new PairRecordNotFoundError(id)) : Promise.resolve(r);
  }
  save(id: string, data: Buffer): Promise<void> { this.saves++; this.records.set(id, data); return Promise.resolve(); }
  delete(id: string): Promise<void> { this.deletes++; this.records.delete(id); return Promise.resolve(); }
}

const storedRecord = buildXml({ HostID: 'OLD-HOST', HostCertificate: Buffer.from('c'), HostPrivateKey: Buffer.from('k') });

function fakeRecord(): Promise<NewPairRecord> {
  const record: PlistDict = { HostID: 'NEW-HOST', HostCertificate: Buffer.from('c'), HostPrivateKey: Buffer.from('k') };
  return Promise.resolve({ hostId: 'NEW-HOST', record, pairRequestRecord: { HostID: 'NEW-HOST' } });
}

interface Expected { state: PreflightState; saves: number; marks: number; setValues: number; pairs: number }

/** The model: §5.3 for a modern phone, plus the always-announced / retry-on-notification rules. */
function model(s: Scenario): Expected {
  if (s.hasRecord && s.session !== 'invalid') return { state: 'paired', saves: 0, marks: 0, setValues: 0, pairs: 0 };
  const answers = [...s.pairs];
  const take = (): PairAnswer => answers.shift() ?? 'pending';
  let setValues = 1;
  let pairs = 1;
  const first = take();
  if (first === 'ok') return { state: 'paired', saves: 1, marks: 1, setValues, pairs };
  if (first === 'drop') return { state: 'failed', saves: 0, marks: 0, setValues, pairs };
  for (const ev of s.events) {
    switch (ev) {
      case 'request_pair': {
        pairs++;
        if (take() === 'ok') return { state: 'paired', saves: 1, marks: 1, setValues, pairs };
        break;
      }
      case 'request_host_buid': setValues++; break;
      case 'proxy_death': return { state: 'failed', saves: 0, marks: 0, setValues, pairs };
      case 'paired_elsewhere': return { state: 'paired', saves: 0, marks: 0, setValues, pairs };
    }
  }
  return { state: 'waiting-for-trust', saves: 0, marks: 0, setValues, pairs };
}

const FINAL_OR_WAITING: ReadonlySet<PreflightState> = new Set(['paired', 'failed', 'waiting-for-trust', 'not-paired', 'not-lockdown']);

async function quiet(p: DevicePreflight): Promise<void> {
  for (let i = 0; i < 200; i++) {
    await p.settled();
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    if (FINAL_OR_WAITING.has(p.state)) {
      await p.settled();
      return;
    }
  }
  throw new Error(`preflight stuck in ${p.state}`);
}

let unhandled: unknown[] = [];
const onUnhandled = (err: unknown): void => { unhandled.push(err); };
beforeEach(() => { unhandled = []; process.on('unhandledRejection', onUnhandled); });
afterEach(() => { process.off('unhandledRejection', onUnhandled); });

async function runScenario(s: Scenario): Promise<{ expected: Expected; actual: Expected; phone: ScriptedPhone; p: DevicePreflight }> {
  const phone = new ScriptedPhone(s);
  const store = new MemoryStore();
  if (s.hasRecord) store.records.set(UDID, storedRecord);
  let marks = 0;
  const p = new DevicePreflight(phone.device, { store, markPaired: () => { marks++; }, log: silentLogger(), timeoutMs: 1000, generateRecord: fakeRecord });
  p.start();
  await quiet(p);
  for (const ev of s.events) {
    if (p.state !== 'waiting-for-trust') break;
    if (ev === 'request_pair') phone.relay('com.apple.mobile.lockdown.request_pair');
    else if (ev === 'request_host_buid') phone.relay('com.apple.mobile.lockdown.request_host_buid');
    else if (ev === 'proxy_death') phone.proxyDeath();
    else p.pairedElsewhere();
    await new Promise((r) => setImmediate(r));
    await quiet(p);
  }
  const actual: Expected = {
    state: p.state,
    saves: store.saves,
    marks,
    setValues: phone.requests.filter((r) => r === 'SetValue').length,
    pairs: phone.requests.filter((r) => r === 'Pair').length,
  };
  p.cancel('test over');
  await p.settled();
  return { expected: model(s), actual, phone, p };
}

describe('DevicePreflight (scripted phone)', () => {
  it('matches the model for every record × session × Pair answers × notifications (property)', async () => {
    const scenario = fc.record({
      hasRecord: fc.boolean(),
      session: fc.constantFrom<SessionAnswer>('ok', 'invalid', 'other'),
      pairs: fc.array(fc.constantFrom<PairAnswer>('ok', 'pending', 'denied', 'locked', 'drop'), { maxLength: 4 }),
      events: fc.array(fc.constantFrom<PhoneEvent>('request_pair', 'request_host_buid', 'proxy_death', 'paired_elsewhere'), { maxLength: 5 }),
    });
    await fc.assert(
      fc.asyncProperty(scenario, async (s) => {
        const { expected, actual, phone, p } = await runScenario(s);
        expect(actual).toEqual(expected);
        // After cancel nothing is left open, and nothing failed unobserved.
        expect(phone.conns.filter((c) => !c.closed)).toEqual([]);
        expect(p.state === 'cancelled' || ['paired', 'failed'].includes(p.state)).toBe(true);
        expect(unhandled).toEqual([]);
      }),
      { numRuns: 150 },
    );
  });

  it('a drop during a Pair after the tap is logged and waiting goes on', async () => {
    const { actual } = await runScenario({ hasRecord: false, session: 'invalid', pairs: ['pending', 'drop', 'ok'], events: ['request_pair', 'request_pair'] });
    expect(actual).toEqual({ state: 'paired', saves: 1, marks: 1, setValues: 1, pairs: 3 });
  });

  it('lockdown refused: failed, no request ever answered', async () => {
    const phone = new ScriptedPhone({ hasRecord: false, session: 'invalid', pairs: [], events: [] }, false);
    const p = new DevicePreflight(phone.device, { store: new MemoryStore(), markPaired: () => undefined, log: silentLogger(), timeoutMs: 1000 });
    p.start();
    await quiet(p);
    expect(p.state).toBe('failed');
  });
});

describe('isModernDevice', () => {
  it('follows usbmuxd’s class/version gate', () => {
    expect(isModernDevice('iPhone', '7.0')).toBe(true);
    expect(isModernDevice('iPhone', '6.1.3')).toBe(false);
    expect(isModernDevice('iPad', '17.5')).toBe(true);
    expect(isModernDevice('Watch', '2.0')).toBe(true);
    expect(isModernDevice('Watch', '1.0')).toBe(false);
    expect(isModernDevice('AppleTV', '9.0')).toBe(true);
    expect(isModernDevice('AppleTV', '8.4')).toBe(false);
    expect(isModernDevice('iPod', '15.0')).toBe(false);
    expect(isModernDevice('iPhone', 'garbage')).toBe(false);
  });
});
