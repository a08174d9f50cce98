/**
 * Hostile clients against a real MuxdServer: a fast-check property over a Unix socket, with a
 * FakeDirectory (a visible device that accepts Connects, a visible one that refuses, a hidden one
 * that accepts) and a real FilePairRecordStore in a temp dir.
 *
 * Each run opens 2–4 clients at once; each sends a byte stream from test/support/hostile-requests.ts:
 * plist requests (XML, or binary plist) whose fields are absent or ANY plist value (control
 * characters, lone surrogates, Object.prototype member names as keys, `__proto__` as a raw XML
 * key, 2^64 − 1, reals, dates, data holding hostile plists, nesting), XML bodies truncated /
 * spliced / with raw fragments injected, binary (version 0) frames, frames with a bogus length or
 * version, and raw bytes — cut into random chunks. What must hold:
 *
 * - Replies come in order, one per complete frame, each with that frame's tag, in the client's
 *   dialect (binary until its first type-8 message), of the shape its request calls for; no
 *   complete request goes unanswered for HANG_MS, except after Listen (notifications only) and
 *   after a Connect answered 0 (the socket is a tunnel).
 * - The server closes a client only for a reason: a length header out of range, or input after
 *   Listen.
 * - After each client's stream, while the others still run (listeners with hostile identities
 *   included), a fresh client gets a proper ListDevices and ListListeners answer.
 * - Nothing reaches 'uncaughtException' / 'unhandledRejection', and the daemon logs nothing at
 *   error level (what a client can cause on purpose is info or warn): a request that fails by a
 *   bug is caught by ClientSession and only logged, so the log is where such a bug shows.
 *
 * Reproduce a failure with what fast-check prints: FC_SEED=<seed> [FC_PATH=<path>] npx vitest run <this file>
 * (the interleaving of clients is up to the scheduler, the inputs are not). HOSTILE_RUNS=<n> runs
 * more inputs locally.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { ConnectionRefusedError } from '../../src/devices/index.js';
import { FilePairRecordStore, InvalidPairRecordDataError, InvalidPairRecordIdError } from '../../src/pairrecords/index.js';
import { isPlistDict, parsePlist } from '../../src/plist/index.js';
import type { PlistDict } from '../../src/plist/index.js';
import { MuxdServer } from '../../src/server/index.js';
import { UnknownDeviceError } from '../../src/server/errors.js';
import { FrameDecoder } from '../../src/server/framing.js';
import type { Frame } from '../../src/server/framing.js';
import { decodeRequest, encodePlistRequest } from '../../src/server/messages.js';
import type { Request } from '../../src/server/messages.js';
import { FakeDirectory } from '../support/fake-directory.js';
import type { FakeDevice } from '../support/fake-directory.js';
import { hostileScript } from '../support/hostile-requests.js';
import { MuxdClient } from '../support/muxd-client.js';

/** Longest wait for a reply the daemon owes (generous: CI machines are slow and shared). */
const HANG_MS = 3000;
const MAX_FRAME = 65536;
const numRuns = envInt('HOSTILE_RUNS') ?? 50;
const seed = envInt('FC_SEED');
const replayPath = process.env['FC_PATH'];

function envInt(name: string): number | undefined {
  const raw = process.env[name];
  return raw === undefined || raw === '' ? undefined : Number.parseInt(raw, 10);
}

// ---- the daemon under test ---------------------------------------------------------------------

let dir: string;
let path: string;
let directory: FakeDirectory;
let accepting: FakeDevice;
let hidden: FakeDevice;
let server: MuxdServer;
/** Error-level log lines no client should be able to cause. */
const bugLines: string[] = [];
const escaped: unknown[] = [];
const onEscaped = (err: unknown): void => {
  escaped.push(err);
};

beforeAll(async () => {
  process.on('uncaughtException', onEscaped);
  process.on('unhandledRejection', onEscaped);
  dir = await mkdtemp(join(tmpdir(), 'muxd-hostile-'));
  path = join(dir, 'sock');
  directory = new FakeDirectory();
  accepting = directory.add();
  const refusing = directory.add();
  refusing.connect = (port: number) => Promise.reject(new ConnectionRefusedError(port));
  hidden = directory.add(undefined, false);
  // Every log call is serialized (as the daemon's own logger would); error-level lines are kept.
  const log = pino({ level: 'debug' }, {
    write: (line: string) => {
      if (/"level":(?:5|6)0/.test(line)) bugLines.push(line);
    },
  });
  server = new MuxdServer({ directory, store: new FilePairRecordStore({ dir: join(dir, 'lockdown') }), log });
  await server.listen({ kind: 'unix', path });
});

afterAll(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
  process.off('uncaughtException', onEscaped);
  process.off('unhandledRejection', onEscaped);
});

function expectDaemonHealthy(): void {
  expect(escaped, 'uncaught exception or unhandled rejection').toEqual([]);
  expect(bugLines, 'error-level log lines (a request failed by a bug)').toEqual([]);
}

// ---- the client side -----------------------------------------------------------------------------

type Next = { readonly kind: 'frame'; readonly frame: Frame } | { readonly kind: 'closed' } | { readonly kind: 'silence' };

/** A raw client: writes anything, and reports each frame the daemon sends, its close, or silence. */
class HostileClient {
  readonly socket: Socket;
  private readonly decoder = new FrameDecoder(1 << 20);
  private readonly frames: Frame[] = [];
  private ended = false;
  private waiter: (() => void) | undefined;
  /** The daemon sent bytes that are not a frame. */
  malformed: unknown;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.decoder.push(chunk);
      try {
        for (let f = this.decoder.read(); f !== undefined; f = this.decoder.read()) this.frames.push(f);
      } catch (err) {
        this.malformed = err;
        socket.destroy();
      }
      this.waiter?.();
    });
    // EPIPE / ECONNRESET once the daemon closed us are expected; the close is what we check.
    socket.on('error', () => undefined);
    socket.once('close', () => {
      this.ended = true;
      this.waiter?.();
    });
  }

  static open(): Promise<HostileClient> {
    return new Promise((resolve, reject) => {
      const socket = connect({ path });
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new HostileClient(socket));
      });
      socket.once('error', reject);
    });
  }

  async send(wire: Buffer, cuts: readonly number[]): Promise<void> {
    for (let at = 0, i = 0; at < wire.length && !this.socket.destroyed; i++) {
      const n = cuts[i % cuts.length]!;
      this.socket.write(wire.subarray(at, at + n));
      at += n;
      if (i % 2 === 1) await new Promise((r) => setImmediate(r));
    }
  }

  /** Frames already received and not taken. */
  takeReceived(): Frame[] {
    return this.frames.splice(0);
  }

  next(ms: number): Promise<Next> {
    return new Promise((resolve) => {
      const settle = (): boolean => {
        const frame = this.frames.shift();
        if (frame !== undefined) resolve({ kind: 'frame', frame });
        else if (this.ended) resolve({ kind: 'closed' });
        else return false;
        return true;
      };
      if (settle()) return;
      const timer = setTimeout(() => {
        this.waiter = undefined;
        resolve({ kind: 'silence' });
      }, ms);
      this.waiter = () => {
        if (!settle()) return;
        clearTimeout(timer);
        this.waiter = undefined;
      };
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

interface Split {
  /** The complete frames the daemon will parse from this stream, in order, with their end offsets. */
  readonly frames: { readonly frame: Frame; readonly end: number }[];
  /** The stream then holds a length header out of range: the daemon must close. */
  readonly fatal: boolean;
}

/** The daemon's view of a byte stream (written here, independently of FrameDecoder). */
function splitFrames(wire: Buffer): Split {
  const frames: Split['frames'] = [];
  let at = 0;
  while (wire.length - at >= 16) {
    const length = wire.readUInt32LE(at);
    if (length < 16 || length > MAX_FRAME) return { frames, fatal: true };
    if (wire.length - at < length) break;
    const frame = {
      length,
      version: wire.readUInt32LE(at + 4),
      message: wire.readUInt32LE(at + 8),
      tag: wire.readUInt32LE(at + 12),
      body: wire.subarray(at + 16, at + length),
    };
    at += length;
    frames.push({ frame, end: at });
  }
  return { frames, fatal: false };
}

/** What a frame asks for; `invalid` when it cannot be decoded, `refused-N` when a field it needs is missing (Result N). */
type Kind = Request['type'] | 'invalid' | 'refused-2' | 'refused-22';

function classify(frame: Frame): Kind {
  try {
    return decodeRequest(frame).request.type;
  } catch (err) {
    if (err instanceof UnknownDeviceError) return 'refused-2';
    if (err instanceof InvalidPairRecordIdError || err instanceof InvalidPairRecordDataError) return 'refused-22';
    return 'invalid';
  }
}

type Dialect = 'binary' | 'plist';

function plistBody(frame: Frame): PlistDict {
  expect([frame.version, frame.message], 'plist reply header').toEqual([1, 8]);
  const value = parsePlist(frame.body);
  if (!isPlistDict(value)) throw new Error('plist reply is not a dict');
  return value;
}

/** Checks a reply against the request it answers; returns its Result number, if it is a Result. */
function checkReply(reply: Frame, sent: Frame, kind: Kind, dialect: Dialect): number | undefined {
  expect(reply.tag, 'reply tag').toBe(sent.tag);
  let result: number | undefined;
  let dict: PlistDict = {};
  if (dialect === 'binary') {
    expect([reply.version, reply.message, reply.body.length], 'binary Result').toEqual([0, 1, 4]);
    result = reply.body.readUInt32LE(0);
  } else {
    dict = plistBody(reply);
    if (dict['MessageType'] === 'Result') {
      const n = dict['Number'];
      if (typeof n !== 'number') throw new Error(`Result without a Number: ${JSON.stringify(n)}`);
      result = n;
    }
  }
  const context = `reply to ${kind}`;
  switch (kind) {
    case 'invalid':
      expect(result, context).toBeOneOf([1, 6]);
      break;
    case 'refused-2':
      expect(result, context).toBe(2);
      break;
    case 'refused-22':
      expect(result, context).toBe(22);
      break;
    case 'Listen':
      expect(result, context).toBe(0);
      break;
    case 'Connect':
      expect(result, context).toBeOneOf([0, 1, 2, 3]);
      break;
    case 'ListDevices':
      expect(deviceIds(dict), context).toEqual([1, 2]);
      break;
    case 'ListListeners':
      expect(Array.isArray(dict['ListenerList']), context).toBe(true);
      break;
    case 'ReadBUID':
      expect(dict['BUID'], context).toMatch(/^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$/);
      break;
    case 'ReadPairRecord': {
      const data = dict['PairRecordData'];
      if (Buffer.isBuffer(data)) expect(isPlistDict(parsePlist(data)), 'a stored record reads back as a dict').toBe(true);
      else expect(result, context).toBeOneOf([2, 22]);
      break;
    }
    case 'SavePairRecord':
      expect(result, context).toBeOneOf([0, 2, 22]);
      break;
    case 'DeletePairRecord':
      expect(result, context).toBeOneOf([0, 2, 22]);
      break;
    case 'AddDevice':
    case 'RemoveDevice':
      // This server has no network devices: a bad command; with them 0, 2 or 22.
      expect(result, context).toBeOneOf([0, 1, 2, 22]);
      break;
  }
  return result;
}

function deviceIds(dict: PlistDict): unknown {
  const list = dict['DeviceList'];
  return Array.isArray(list) ? list.map((d) => (isPlistDict(d) ? d['DeviceID'] : d)) : list;
}

/** A listener receives only notifications (tag 0) in its dialect. */
function checkNotification(frame: Frame, dialect: Dialect): void {
  expect(frame.tag, 'notification tag').toBe(0);
  if (dialect === 'binary') {
    expect(frame.version).toBe(0);
    expect(frame.body.length).toBe(frame.message === 4 ? 268 : 4);
    expect(frame.message).toBeOneOf([4, 5, 6]);
  } else {
    expect(plistBody(frame)['MessageType']).toBeOneOf(['Attached', 'Detached', 'Paired']);
  }
}

type Outcome = { readonly state: 'command' | 'tunnel' | 'closed' } | { readonly state: 'listening'; readonly dialect: Dialect };

/** Reads and checks the daemon's side of one client's conversation. */
async function converse(c: HostileClient, wire: Buffer): Promise<Outcome> {
  const { frames, fatal } = splitFrames(wire);
  let dialect: Dialect = 'binary';
  for (let i = 0; i < frames.length; i++) {
    const { frame: sent, end } = frames[i]!;
    if (sent.message === 8 && sent.version <= 1) dialect = 'plist';
    const kind = classify(sent);
    const next = await c.next(HANG_MS);
    const described = `frame #${i} (${kind}, version ${sent.version}, message ${sent.message}, tag ${sent.tag})`;
    if (next.kind === 'silence') throw new Error(`no reply within ${HANG_MS} ms to ${described}`);
    if (next.kind === 'closed') {
      const cause = fatal || frames.slice(i).some((f) => classify(f.frame) === 'Listen');
      if (!cause) throw new Error(`the daemon closed the client instead of answering ${described}`);
      return { state: 'closed' };
    }
    const result = checkReply(next.frame, sent, kind, dialect);
    if (result === 0 && kind === 'Connect') return { state: 'tunnel' };
    if (result === 0 && kind === 'Listen') {
      if (end === wire.length) return { state: 'listening', dialect };
      // Input after Listen: the Attached notifications, then the daemon closes the client.
      for (;;) {
        const n = await c.next(HANG_MS);
        if (n.kind === 'closed') return { state: 'closed' };
        if (n.kind === 'silence') throw new Error(`a listener that sent more input was not closed within ${HANG_MS} ms`);
        checkNotification(n.frame, dialect);
      }
    }
  }
  if (fatal) {
    const n = await c.next(HANG_MS);
    expect(n.kind, 'a length header out of range closes the client').toBe('closed');
    return { state: 'closed' };
  }
  return { state: 'command' };
}

/** A fresh client gets proper answers to ListDevices and ListListeners. */
async function probe(): Promise<void> {
  const c = await MuxdClient.connect({ path });
  try {
    c.send(encodePlistRequest(7, { MessageType: 'ListDevices', ProgName: 'probe' }));
    const devices = await c.readFrame(HANG_MS);
    expect(devices.tag).toBe(7);
    expect(deviceIds(plistBody(devices))).toEqual([1, 2]);
    c.send(encodePlistRequest(8, { MessageType: 'ListListeners', ProgName: 'probe' }));
    const listeners = await c.readFrame(HANG_MS);
    expect(listeners.tag).toBe(8);
    const list = plistBody(listeners)['ListenerList'];
    if (!Array.isArray(list)) throw new Error('ListListeners without a ListenerList');
    for (const entry of list) {
      if (!isPlistDict(entry)) throw new Error('a ListenerList entry is not a dict');
      expect(typeof entry['ProgName']).toBe('string');
      expect(typeof entry['ID String']).toBe('string');
    }
  } finally {
    await c.close();
  }
  expectDaemonHealthy();
}

async function until(check: () => boolean, what: string): Promise<void> {
  const end = Date.now() + HANG_MS;
  while (!check()) {
    if (Date.now() > end) throw new Error(`${what} within ${HANG_MS} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

// ---- the property ---------------------------------------------------------------------------------

describe('hostile clients against a real MuxdServer', () => {
  it('every client is answered in order or closed for a reason; the daemon keeps serving everyone', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(hostileScript, { minLength: 2, maxLength: 4 }), async (scripts) => {
        const clients = await Promise.all(scripts.map(() => HostileClient.open()));
        try {
          const outcomes = await Promise.all(
            scripts.map(async (s, i) => {
              const c = clients[i]!;
              const wire = Buffer.concat(s.ops);
              await c.send(wire, s.cuts);
              const outcome = await converse(c, wire);
              expect(c.malformed, 'the daemon sent a malformed frame').toBeUndefined();
              await probe();
              return outcome;
            }),
          );
          // Whatever arrived since: notifications for listeners, nothing for anyone else.
          outcomes.forEach((outcome, i) => {
            const rest = clients[i]!.takeReceived();
            if (outcome.state === 'listening') for (const f of rest) checkNotification(f, outcome.dialect);
            else expect(rest, `frames nobody asked for (client ${i}, ${outcome.state})`).toEqual([]);
          });
        } finally {
          for (const c of clients) c.close();
        }
        await until(() => server.clientCount === 0, 'sessions still open');
        await until(() => [...accepting.connections, ...hidden.connections].every((conn) => conn.closedWith !== undefined), 'device connections still open');
        expectDaemonHealthy();
      }),
      {
        numRuns,
        ...(seed === undefined ? {} : { seed }),
        ...(replayPath === undefined ? {} : { path: replayPath }),
        // A slow machine runs fewer inputs rather than hitting the test timeout (and losing the seed).
        plugins: [fc.interruptAfterTimeLimit(60_000)],
      },
    );
    expectDaemonHealthy();
  }, 120_000);
});
