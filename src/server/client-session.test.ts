/**
 * Property tests of the client state machine: any sequence of command-state requests, pipelined
 * and split at arbitrary points, is answered in order, each reply carrying its request's tag and
 * the Result usbmuxd would give; a final Connect then turns the same socket into a tunnel that
 * delivers the bytes written after it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MuxdServer } from './server.js';
import { encodeFrame } from './framing.js';
import { encodePlistRequest, swapPort } from './messages.js';
import { InvalidPairRecordIdError, PairRecordNotFoundError } from '../pairrecords/index.js';
import type { PairRecordStore } from '../pairrecords/index.js';
import { silentLogger } from '../log.js';
import { FakeDirectory } from '../../test/support/fake-directory.js';
import type { FakeDevice } from '../../test/support/fake-directory.js';
import { MuxdClient } from '../../test/support/muxd-client.js';

/** Records nothing; answers like an empty store. */
class EmptyStore implements PairRecordStore {
  systemBuid(): Promise<string> {
    return Promise.resolve('00000000-0000-0000-0000-000000000000');
  }
  read(id: string): Promise<Buffer> {
    return Promise.reject(id.length === 40 ? new PairRecordNotFoundError(id) : new InvalidPairRecordIdError(id));
  }
  save(): Promise<void> {
    return Promise.resolve();
  }
  delete(id: string): Promise<void> {
    return this.read(id).then(() => undefined);
  }
}

interface Step {
  readonly frame: (tag: number) => Buffer;
  /** Expected Result number, or 'plist' for a dict reply without MessageType. */
  readonly expect: number | 'plist';
}

let dir: string;
let path: string;
let directory: FakeDirectory;
let refusing: FakeDevice;
let accepting: FakeDevice;
let server: MuxdServer;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'muxd-session-'));
  path = join(dir, 'sock');
  directory = new FakeDirectory();
  refusing = directory.add();
  refusing.behaviour = 'refuse';
  accepting = directory.add();
  server = new MuxdServer({ directory, store: new EmptyStore(), log: silentLogger() });
  await server.listen({ kind: 'unix', path });
});

afterAll(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

const steps: fc.Arbitrary<Step> = fc.constantFrom<Step>(
  { frame: (t) => encodePlistRequest(t, { MessageType: 'ListDevices' }), expect: 'plist' },
  { frame: (t) => encodePlistRequest(t, { MessageType: 'ReadBUID' }), expect: 'plist' },
  { frame: (t) => encodePlistRequest(t, { MessageType: 'ListListeners' }), expect: 'plist' },
  { frame: (t) => encodePlistRequest(t, { MessageType: 'ReadPairRecord', PairRecordID: 'f'.repeat(40) }), expect: 2 },
  { frame: (t) => encodePlistRequest(t, { MessageType: 'ReadPairRecord', PairRecordID: '../x' }), expect: 22 },
  { frame: (t) => encodePlistRequest(t, { MessageType: 'DeletePairRecord' }), expect: 22 },
  { frame: (t) => encodePlistRequest(t, { MessageType: 'SavePairRecord', PairRecordID: 'f'.repeat(40) }), expect: 22 },
  { frame: (t) => encodePlistRequest(t, { MessageType: 'Connect', DeviceID: 1, PortNumber: swapPort(7) }), expect: 3 },
  { frame: (t) => encodePlistRequest(t, { MessageType: 'Connect', DeviceID: 99, PortNumber: swapPort(7) }), expect: 2 },
  { frame: (t) => encodePlistRequest(t, { MessageType: 'Connect', DeviceID: 2 }), expect: 1 },
  { frame: (t) => encodePlistRequest(t, { MessageType: 'Frobnicate' }), expect: 1 },
  // This server has no network devices (--no-network): AddDevice is a bad command.
  { frame: (t) => encodePlistRequest(t, { MessageType: 'AddDevice', ConnectionType: 'Network', IPAddress: '10.0.0.2' }), expect: 1 },
  { frame: (t) => encodeFrame(1, 8, t, Buffer.from('<plist><dict>')), expect: 1 },
  { frame: (t) => encodeFrame(3, 8, t), expect: 6 },
  { frame: (t) => encodeFrame(1, 42, t), expect: 1 },
);

describe('ClientSession (property)', () => {
  it('pipelined command sequences, any chunking: in-order replies with their tags, then a working tunnel', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(steps, { maxLength: 12 }),
        fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 8 }),
        fc.uint8Array({ minLength: 1, maxLength: 64 }),
        async (sequence, cuts, payload) => {
          const c = await MuxdClient.connect({ path });
          try {
            const before = accepting.connections.length;
            const tags = sequence.map((_, i) => 1000 + i);
            const connectTag = 5;
            const wire = Buffer.concat([
              ...sequence.map((s, i) => s.frame(tags[i]!)),
              encodePlistRequest(connectTag, { MessageType: 'Connect', DeviceID: accepting.id, PortNumber: swapPort(62078) }),
              Buffer.from(payload),
            ]);
            for (let at = 0, i = 0; at < wire.length; i++) {
              const n = cuts[i % cuts.length]!;
              c.send(wire.subarray(at, at + n));
              at += n;
              if (i % 3 === 0) await new Promise((r) => setImmediate(r));
            }
            for (let i = 0; i < sequence.length; i++) {
              const { frame, reply } = await c.readReply();
              expect(frame.tag).toBe(tags[i]);
              const want = sequence[i]!.expect;
              if (want === 'plist') expect(reply.kind).toBe('plist');
              else expect(reply).toEqual({ kind: 'result', number: want });
            }
            const { frame, reply } = await c.readReply();
            expect([frame.tag, reply]).toEqual([connectTag, { kind: 'result', number: 0 }]);
            const conn = await waitFor(() => accepting.connections[before]);
            await waitFor(() => (conn.writtenBytes.length === payload.length ? true : undefined));
            expect(new Uint8Array(conn.writtenBytes)).toEqual(payload);
          } finally {
            await c.close();
          }
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('AddDevice / RemoveDevice (netmuxd\'s manual network devices)', () => {
  it('pass the address and UDID on, answer 0 or the failure\'s Result, and refuse what is not an address', async () => {
    const added: [string, string | undefined][] = [];
    const removed: { udid: string | undefined; address: string | undefined }[] = [];
    const sockPath = join(dir, 'manual.sock');
    const manualServer = new MuxdServer({
      directory: new FakeDirectory(),
      store: new EmptyStore(),
      log: silentLogger(),
      manualDevices: {
        add: (address, udid) => {
          added.push([address, udid]);
          return address === '10.0.0.9' ? Promise.reject(new InvalidPairRecordIdError('no pair record')) : Promise.resolve(udid ?? 'U');
        },
        remove: (what) => { removed.push(what); return what.address === '10.0.0.2'; },
      },
    });
    await manualServer.listen({ kind: 'unix', path: sockPath });
    const c = await MuxdClient.connect({ path: sockPath });
    try {
      const udid = '00008030-001A2B3C4D5E6F70';
      const ask = async (dict: Record<string, unknown>): Promise<unknown> => {
        c.send(encodePlistRequest(1, dict as never));
        return (await c.readReply()).reply;
      };
      expect(await ask({ MessageType: 'AddDevice', ConnectionType: 'Network', ServiceName: '_apple-mobdev2._tcp.local', IPAddress: '10.0.0.2', DeviceID: udid })).toEqual({ kind: 'result', number: 0 });
      expect(await ask({ MessageType: 'AddDevice', IPAddress: 'fe80::1%eth0' })).toEqual({ kind: 'result', number: 0 });
      expect(await ask({ MessageType: 'AddDevice', IPAddress: '10.0.0.9' })).toEqual({ kind: 'result', number: 22 });
      for (const bad of [{ IPAddress: 'phone.local' }, { IPAddress: '10.0.0.2%eth0' }, {}, { IPAddress: '10.0.0.2', ConnectionType: 'USB' }]) {
        expect(await ask({ MessageType: 'AddDevice', ...bad })).toEqual({ kind: 'result', number: 1 });
      }
      expect(await ask({ MessageType: 'AddDevice', IPAddress: '10.0.0.2', DeviceID: '../etc' })).toEqual({ kind: 'result', number: 22 });
      expect(added).toEqual([['10.0.0.2', udid], ['fe80::1%eth0', undefined], ['10.0.0.9', undefined]]);
      expect(await ask({ MessageType: 'RemoveDevice', IPAddress: '10.0.0.2' })).toEqual({ kind: 'result', number: 0 });
      expect(await ask({ MessageType: 'RemoveDevice', DeviceID: udid })).toEqual({ kind: 'result', number: 2 });
      expect(await ask({ MessageType: 'RemoveDevice' })).toEqual({ kind: 'result', number: 1 });
      expect(removed).toEqual([{ udid: undefined, address: '10.0.0.2' }, { udid, address: undefined }]);
    } finally {
      await c.close();
      await manualServer.close();
    }
  });
});

async function waitFor<T>(get: () => T | undefined, ms = 2000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = get();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 2));
  }
}
