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

async function waitFor<T>(get: () => T | undefined, ms = 2000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = get();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 2));
  }
}
