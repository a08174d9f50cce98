/**
 * A Listen client for the usb tier: collects Attached/Detached/Paired notifications with their arrival
 * time so tests can assert on order, DeviceIDs and latency.
 */
import plist from 'plist';
import type { PlistObject } from 'plist';
import { RawMuxClient, encodePlistRequest } from '../support/raw-client.js';

export interface DeviceEvent {
  readonly type: 'Attached' | 'Detached' | 'Paired';
  readonly deviceId: number;
  readonly serial: string | undefined;
  /** Date.now() when it arrived. */
  readonly at: number;
}

function isPlistObject(value: unknown): value is PlistObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !Buffer.isBuffer(value) && !(value instanceof Date);
}

export class DeviceListener {
  readonly events: DeviceEvent[] = [];
  private stopped = false;
  private readonly loop: Promise<void>;

  private constructor(private readonly client: RawMuxClient) {
    this.loop = this.run();
  }

  static async open(socketPath: string): Promise<DeviceListener> {
    const client = await RawMuxClient.open(socketPath);
    client.send(encodePlistRequest({ MessageType: 'Listen', ProgName: 'usb-tier', ClientVersionString: 'usb-tier' }, 1));
    const result = await client.readFrame(5000);
    const body: unknown = plist.parse(result.body.toString('utf8'));
    if (!isPlistObject(body) || body['MessageType'] !== 'Result' || body['Number'] !== 0) {
      client.close();
      throw new Error(`Listen refused: ${result.body.toString('utf8')}`);
    }
    return new DeviceListener(client);
  }

  /** Wait until an event matching `match` has arrived (at index ≥ `from`) and return it. */
  async waitFor(match: (e: DeviceEvent) => boolean, timeoutMs: number, from = 0): Promise<DeviceEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.events.slice(from).find(match);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no matching device event within ${timeoutMs} ms; got ${JSON.stringify(this.events)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  async close(): Promise<void> {
    this.stopped = true;
    this.client.close();
    await this.loop;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const r = await this.client.read(200);
      if (r.kind === 'closed') return;
      if (r.kind !== 'frame') continue;
      const body: unknown = plist.parse(r.frame.body.toString('utf8'));
      if (!isPlistObject(body)) continue;
      const type = body['MessageType'];
      const id = body['DeviceID'];
      if ((type !== 'Attached' && type !== 'Detached' && type !== 'Paired') || typeof id !== 'number') continue;
      const props = body['Properties'];
      const serial = isPlistObject(props) && typeof props['SerialNumber'] === 'string' ? props['SerialNumber'] : undefined;
      this.events.push({ type, deviceId: id, serial, at: Date.now() });
    }
  }
}
