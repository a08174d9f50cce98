/**
 * Turns host OUT transfers back into mux packets, using only the header's `length` field.
 *
 * Behind real libusb a 49 KiB packet arrives as several 16 KiB transfers, and a tolerant link may
 * put several packets in one transfer, so the phone cannot assume one packet per transfer.
 *
 *            +--------- chunk completes a packet: emit it, go on with the rest ---------+
 *            v                                                                          |
 *   [ EMPTY ] --chunk shorter than a whole packet--> [ PARTIAL: chunks[], need N ] -----+
 *       ^                                                  |
 *       +------ length field < 8 or > max: drop all -------+  (counted via onGarbage)
 *
 * Fast path: a packet lying wholly inside one chunk is emitted as a view (no copy). Only a packet
 * spanning chunks is copied, once, when its last byte arrives.
 */
import { HEADER_V1, MAX_MUX_PACKET } from './codec.js';

export interface ReassemblerEvents {
  /** One whole mux packet (the header's `length` bytes). */
  onPacket(packet: Buffer): void;
  /** Input that cannot be framed; `bytes` of it were thrown away. */
  onGarbage(reason: string, bytes: number): void;
}

export class Reassembler {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(
    private readonly events: ReassemblerEvents,
    private readonly maxPacket: number = MAX_MUX_PACKET,
  ) {}

  /** Bytes held while waiting for the rest of a packet. */
  get pendingBytes(): number {
    return this.buffered;
  }

  push(transfer: Buffer): void {
    if (transfer.length === 0) return; // zero-length packet terminator
    if (this.buffered === 0) {
      this.split(transfer);
      return;
    }
    this.chunks.push(transfer);
    this.buffered += transfer.length;
    const need = this.neededLength();
    if (need === undefined) return; // not even a whole length field yet
    const inRange = need >= HEADER_V1 && need <= this.maxPacket;
    if (inRange && this.buffered < need) return; // still waiting for the rest
    const data = Buffer.concat(this.chunks, this.buffered);
    this.reset();
    this.split(data);
  }

  /** Forget any partial packet (the link went away). */
  reset(): void {
    this.chunks = [];
    this.buffered = 0;
  }

  /** Emit every whole packet in `data`; keep the tail. */
  private split(data: Buffer): void {
    let offset = 0;
    while (data.length - offset >= HEADER_V1) {
      const length = data.readUInt32BE(offset + 4);
      if (length < HEADER_V1 || length > this.maxPacket) {
        this.events.onGarbage(`length field ${length} out of range`, data.length - offset);
        return;
      }
      if (data.length - offset < length) break;
      this.events.onPacket(data.subarray(offset, offset + length));
      offset += length;
    }
    if (offset < data.length) {
      this.chunks.push(offset === 0 ? data : data.subarray(offset));
      this.buffered = data.length - offset;
    }
  }

  /** Length of the packet being reassembled, once its first 8 bytes are here. */
  private neededLength(): number | undefined {
    const first = this.chunks[0];
    if (first === undefined) return undefined;
    if (first.length >= HEADER_V1) return first.readUInt32BE(4);
    if (this.buffered < HEADER_V1) return undefined;
    const head = Buffer.concat(this.chunks, this.buffered).subarray(0, HEADER_V1);
    return head.readUInt32BE(4);
  }
}
