/**
 * Bystanders that must keep working while a scenario attacks the daemon: a listener (its socket
 * stays open and hears no spurious Detached) and an echo tunnel through the virtual iPhone's
 * port 7 (every byte comes back, in order).
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { ECHO_PORT } from '../../src/emulator/index.js';
import type { Reply } from '../../src/server/messages.js';
import { MuxdClient } from '../../test/support/muxd-client.js';
import type { PlistDict } from '../../src/plist/index.js';
import { sleep } from './harness.js';

export class EchoTunnel {
  sent = 0;
  delivered = 0;
  private received: Buffer[] = [];
  private receivedBytes = 0;
  private wake: (() => void) | undefined;
  closed = false;

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.received.push(chunk);
      this.receivedBytes += chunk.length;
      this.poke();
    });
    socket.on('close', () => {
      this.closed = true;
      this.poke();
    });
    socket.on('error', () => undefined);
    socket.resume();
  }

  static async open(target: string, deviceId: number, port = ECHO_PORT): Promise<EchoTunnel> {
    const client = await MuxdClient.connect(target);
    return new EchoTunnel(await client.connectDevice(deviceId, port));
  }

  /** Send `size` random bytes and wait for the same bytes back; false on mismatch, close or timeout. */
  async roundTrip(size = 4096, timeoutMs = 5000): Promise<boolean> {
    const data = randomBytes(size);
    this.received = [];
    this.receivedBytes = 0;
    this.socket.write(data);
    this.sent += size;
    const deadline = Date.now() + timeoutMs;
    while (this.receivedBytes < size && !this.closed && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    const got = Buffer.concat(this.received);
    const ok = got.length === size && got.equals(data);
    if (ok) this.delivered += size;
    return ok;
  }

  close(): void {
    this.socket.destroy();
  }

  private poke(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}

export class ListenerProbe {
  readonly events: Reply[] = [];
  private constructor(private readonly client: MuxdClient, readonly done: Promise<void>) {}

  /** `identity`: keys for its Listen request, shown to every ListListeners while it listens. */
  static async open(target: string, identity?: PlistDict): Promise<ListenerProbe> {
    const client = await MuxdClient.connect(target);
    const events: Reply[] = [];
    const stream = client.listen({ timeoutMs: 24 * 3600_000, ...(identity === undefined ? {} : { identity }) });
    // The first next() sends Listen and waits for its Result.
    const first = await stream.next();
    if (first.done !== true) events.push(first.value);
    const done = (async () => {
      for await (const event of stream) events.push(event);
    })().catch(() => undefined);
    const probe = new ListenerProbe(client, done);
    probe.events.push(...events);
    return probe;
  }

  get open(): boolean {
    return !this.client.socket.destroyed && this.client.socket.readyState === 'open';
  }

  detachedCount(): number {
    return this.events.filter((e) => e.kind === 'detached').length;
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}

/** Runs echo round trips every `everyMs` until stopped; counts failures. */
export class EchoHeartbeat {
  failures = 0;
  rounds = 0;
  private running = true;
  private readonly loop: Promise<void>;

  constructor(readonly tunnel: EchoTunnel, everyMs = 250, size = 4096, timeoutMs = 5000) {
    this.loop = (async () => {
      while (this.running) {
        const ok = await this.tunnel.roundTrip(size, timeoutMs);
        this.rounds++;
        if (!ok) this.failures++;
        if (this.tunnel.closed) return;
        await sleep(everyMs);
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }
}
