/**
 * A ServiceConnection without the mux underneath, for tests of one service (lockdown sessions,
 * the notification proxy): what the service writes is handed to `onWrite`, `close()` is recorded.
 * Not used by the phone itself.
 */
import type { ServiceConnection } from './service.js';

export class FakeServiceConnection implements ServiceConnection {
  readonly port: number;
  readonly hostPort: number;
  readonly sendRoom = 1 << 20;
  readonly maxPayload = 16_000;
  readonly queuedBytes = 0;
  /** Everything written, in order. */
  readonly written: Buffer[] = [];
  closed = false;

  constructor(
    port: number,
    private readonly onWrite: (data: Buffer) => void = () => undefined,
    private readonly onClose: () => void = () => undefined,
    hostPort = 1,
  ) {
    this.port = port;
    this.hostPort = hostPort;
  }

  get open(): boolean {
    return !this.closed;
  }

  write(data: Buffer): void {
    if (this.closed) return;
    this.written.push(Buffer.from(data));
    this.onWrite(data);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.onClose();
  }
}
