/**
 * Reassembles mux packets from bulk-IN transfers by the header's length field, in the style of ws's
 * Receiver: a ByteQueue (a list of chunks and a byte count), a numeric state, a loop that returns as
 * soon as too few bytes are buffered, and `take(n)` that returns a view when one chunk holds the n
 * bytes and copies only when a packet spans transfers.
 *
 *            enough bytes for a header            length bytes buffered
 *   HEADER ───────────────────────────────▶ BODY ─────────────────────────▶ packet out ─┐
 *     ▲  │ malformed header: count, log, drop │                                         │
 *     │  └──── everything buffered and the ───┘                                         │
 *     │        rest of this transfer                                                     │
 *     └─────────────────────────────────────────────────────────────────────────────────┘
 *
 * More tolerant than usbmuxd (which wants exactly one packet per transfer, §2.5): a packet may span
 * several transfers (up to DEV_MRU) and a transfer may hold several packets; both are counted.
 * Malformed headers (length below the header size or above DEV_MRU, bad v2 magic) never throw: the
 * decoder resyncs at the next transfer boundary, which is where a well-behaved device starts packets.
 * A short transfer (length not a multiple of `shortTransferQuantum`) ends the device's transfer, so a
 * packet still incomplete there was truncated (or its length field lied): it is dropped and counted,
 * and cannot swallow the next transfer, which belongs to other packets and other connections.
 *
 * The header size is the session's to decide (8 until VERSION is done or for v1, 16 for v2) and is
 * read afresh at every packet start, so a VERSION reply and a v2 packet may share a transfer.
 */
import { ByteQueue } from '../byte-queue.js';
import type { Logger } from '../log.js';
import { DEV_MRU, MUX_HEADER_V1, MUX_HEADER_V2, MUX_MAGIC } from './constants.js';
import type { MuxHeaderSize } from './wire.js';

/** Where whole packets go; called synchronously from `push`. */
export interface PacketSink {
  /** One whole mux packet, header included; a view the sink may keep. */
  onPacket(packet: Buffer): void;
}

export interface PacketDecoderStats {
  /** Packets delivered. */
  packets: number;
  /** Packets that spanned two or more transfers (each cost one copy). */
  spanning: number;
  /** Bytes copied to join spanning packets. */
  copiedBytes: number;
  /** Transfers that held more than one packet (or the end of one and the start of another). */
  sharedTransfers: number;
  /** Malformed headers seen; each dropped the rest of its transfer. */
  malformed: number;
  /** Bytes thrown away by resyncs. */
  droppedBytes: number;
  /** Packets cut short by the end of a short transfer (dropped). */
  truncated: number;
}

const HEADER = 0;
const BODY = 1;

export class PacketDecoder {
  /** HEADER or BODY. */
  private state = HEADER;
  /** Buffered transfers, oldest first. */
  private readonly queue = new ByteQueue();
  /** In BODY: the whole packet's length in bytes (from the header). */
  private packetLength = 0;
  /** Header size in bytes, set by the session when the version is known. */
  private headerSize: MuxHeaderSize = MUX_HEADER_V1;

  readonly stats: PacketDecoderStats = {
    packets: 0,
    spanning: 0,
    copiedBytes: 0,
    sharedTransfers: 0,
    malformed: 0,
    droppedBytes: 0,
    truncated: 0,
  };

  /**
   * @param shortTransferQuantum a transfer whose length is not a multiple of this ends any packet
   *   in progress (SHORT_TRANSFER_QUANTUM on USB); 1, the default, lets packets span transfers at
   *   any byte (for tests that split transfers arbitrarily).
   */
  constructor(
    private readonly sink: PacketSink,
    private readonly log: Logger,
    private readonly shortTransferQuantum = 1,
  ) {}

  /** 8 until the version is known or for v1, 16 for v2 (docs/usbmux-protocol.md §2.1). */
  setHeaderSize(size: MuxHeaderSize): void {
    this.headerSize = size;
  }

  /** Bytes buffered towards a packet not yet complete. */
  get pendingBytes(): number {
    return this.queue.length;
  }

  /** Feed one IN transfer; the decoder keeps views of it. Zero-length transfers are ignored. */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    const queue = this.queue;
    queue.push(chunk);
    let delivered = 0;
    for (;;) {
      if (this.state === HEADER) {
        if (queue.length < this.headerSize) break;
        const length = queue.peekUInt32BE(4);
        const reason = this.checkHeader(length);
        if (reason !== undefined) {
          this.resync(reason, length);
          return;
        }
        this.packetLength = length;
        this.state = BODY;
      }
      if (queue.length < this.packetLength) break;
      if (!queue.contiguous(this.packetLength)) {
        // COPY: the packet spans transfers; take() joins it once into a buffer of the packet's size.
        this.stats.spanning++;
        this.stats.copiedBytes += this.packetLength;
      }
      const packet = queue.take(this.packetLength);
      this.state = HEADER;
      this.stats.packets++;
      delivered++;
      this.sink.onPacket(packet);
    }
    if (queue.length > 0 && chunk.length % this.shortTransferQuantum !== 0) {
      // A short transfer: the device ended its transfer here, so what is buffered can never be
      // completed by a later transfer (a later one starts new packets).
      this.stats.truncated++;
      this.resync('packet truncated by a short transfer', this.state === BODY ? this.packetLength : 0);
      return;
    }
    // An anomaly worth counting (usbmuxd would drop such a transfer): more than one packet, or the
    // end of one packet and the start of the next, in the same transfer.
    if (delivered > 1 || (delivered > 0 && queue.length > 0)) this.stats.sharedTransfers++;
  }

  /** Drop whatever is buffered (the session is going away). */
  reset(): void {
    this.queue.clear();
    this.state = HEADER;
  }

  private checkHeader(length: number): string | undefined {
    if (length < this.headerSize) return 'length below header size';
    if (length > DEV_MRU) return 'length above DEV_MRU';
    if (this.headerSize === MUX_HEADER_V2 && this.queue.peekUInt32BE(8) !== MUX_MAGIC) return 'bad v2 magic';
    return undefined;
  }

  private resync(reason: string, length: number): void {
    const count = ++this.stats.malformed;
    const dropped = this.queue.length;
    this.stats.droppedBytes += dropped;
    const fields = { reason, length, dropped, headerSize: this.headerSize, malformed: count };
    // warn on the 1st, 2nd, 4th, 8th ... occurrence so a babbling device cannot flood the log
    if ((count & (count - 1)) === 0) this.log.warn(fields, 'malformed mux packet; dropping the rest of the transfer');
    else this.log.debug(fields, 'malformed mux packet; dropping the rest of the transfer');
    this.reset();
  }
}
