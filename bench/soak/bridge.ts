/**
 * The emulated iPhone in THIS process, attached to the umockdev testbed's device socket, so a
 * scenario can call its hostile helpers and fault knobs while the real daemon drives it over
 * node-usb. Frames on the socket are [u32 LE length][bytes]: host→device one per bulk-OUT URB,
 * device→host one per bulk-IN URB (test/usb-emulation/testbed.py). The socket closing means the
 * phone was unplugged.
 */
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { EmulatedIPhone } from '../../src/emulator/index.js';
import type { EmulatorOptions } from '../../src/emulator/index.js';

export class InProcessBridge {
  readonly phone: EmulatedIPhone;
  private pending: Buffer = Buffer.alloc(0);
  closed = false;

  private constructor(private readonly socket: Socket, options: EmulatorOptions) {
    this.phone = new EmulatedIPhone(options);
    this.phone.connect({
      sendToHost: (transfer: Buffer) => {
        if (this.closed) return;
        const header = Buffer.allocUnsafe(4);
        header.writeUInt32LE(transfer.length, 0);
        socket.write(header);
        socket.write(transfer);
      },
    });
    socket.on('data', (chunk: Buffer) => {
      this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
      while (this.pending.length >= 4) {
        const length = this.pending.readUInt32LE(0);
        if (this.pending.length < 4 + length) break;
        const transfer = this.pending.subarray(4, 4 + length);
        this.pending = this.pending.subarray(4 + length);
        if (length > 0) this.phone.receive(transfer);
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
      this.phone.disconnect();
    });
  }

  /**
   * Connect to the testbed's device socket. testbed.py binds it in a thread started just before
   * its READY line, so ENOENT/ECONNREFUSED right after READY are retried for a few seconds.
   */
  static async attach(devSock: string, options: EmulatorOptions = {}): Promise<InProcessBridge> {
    const deadline = Date.now() + 5000;
    for (;;) {
      try {
        return await InProcessBridge.attachOnce(devSock, options);
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  }

  private static attachOnce(devSock: string, options: EmulatorOptions): Promise<InProcessBridge> {
    return new Promise((resolve, reject) => {
      const socket = connect(devSock);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new InProcessBridge(socket, options));
      });
      socket.once('error', reject);
    });
  }

  /** Device→host bytes queued in this process (the testbed reads at URB pace). */
  get backlog(): number {
    return this.socket.writableLength;
  }

  close(): void {
    this.socket.destroy();
  }
}
