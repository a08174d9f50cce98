/**
 * When a finishing connection may send its RST. The client has ended its side (connection.ts
 * `end()`), and this protocol has no FIN: the RST is the only end the device hears, so it must
 * wait until the device has acknowledged every byte the client wrote, and, if the device was still
 * sending to the client, until it has gone quiet — else the RST cuts off data in flight either way.
 *
 *                 begin()
 *   (none) ─────────────────▶ waiting-ack ── no ack progress for endTimeoutMs ──▶ closed ('ack-timeout')
 *                               │  ack progress: timer restarted
 *                               │ all acked
 *                               ├── device quiet (or nobody reads it) ─────────────▶ closed ('done')
 *                               ▼ device active
 *                            waiting-quiet ── a quiet check finds nothing received
 *                               │              with our window wide open ──────────▶ closed ('done')
 *                               │  the reader is gone ───────────────────────────▶ closed ('done')
 *                               └─ END_QUIET_MAX_MS since all was acked ──────────▶ closed ('still-sending')
 *
 * "Active": the device sent within END_QUIET_MS before end(), left bytes unconsumed or unacked
 * then, or sent anything since. A quiet check is armed for END_QUIET_MS; it finds the device
 * quiet when nothing arrived meanwhile and our window was wide open when it was armed (so the
 * device could have sent and did not). The gate is made at end(), so a connection that is reset
 * instead never pays for it.
 */
import { END_QUIET_MAX_MS, END_QUIET_MS } from './constants.js';

export type EndReason = 'done' | 'ack-timeout' | 'still-sending';

/** What the gate reads of its connection, and how it tells it to send the RST. */
export interface EndGateHost {
  /** Every byte the client wrote has been sent and acknowledged. */
  allAcked(): boolean;
  /** The sequence number the device's next payload will carry: unchanged means it sent nothing. */
  deviceSeq(): number;
  /** Everything the device sent is consumed and our ack for it has gone out. */
  windowOpen(): boolean;
  /** Send the RST now. Called at most once. */
  close(reason: EndReason): void;
}

export class EndGate {
  private deviceActive: boolean;
  private nobodyReads: boolean;
  private closed = false;
  /** Date.now() when everything was first acknowledged, while the device was active. */
  private ackedAllAt: number | undefined;
  private ackTimer: NodeJS.Timeout | undefined;
  private quietTimer: NodeJS.Timeout | undefined;
  /** deviceSeq() and windowOpen() when the quiet check was armed. */
  private quietSeq = 0;
  private quietWindowOpen = false;

  /**
   * `readerGone`: nobody takes the device's bytes any more (do not wait for it to go quiet).
   * `deviceBusy`: the device sent lately or left bytes unconsumed or unacked.
   */
  constructor(
    private readonly host: EndGateHost,
    private readonly ackTimeoutMs: number,
    readerGone: boolean,
    deviceBusy: boolean,
  ) {
    this.nobodyReads = readerGone;
    this.deviceActive = !readerGone && deviceBusy;
  }

  /**
   * After end() has sent what it could: close now if nothing is left to wait for, else start the
   * ack timer. Returns whether the gate now waits for the device's acknowledgement.
   */
  start(): boolean {
    if (this.check() || this.ackedAllAt !== undefined) return false;
    this.ackTimer = setTimeout(this.onAckTimeout, this.ackTimeoutMs);
    this.ackTimer.unref();
    return true;
  }

  /** The device sent payload. */
  noteData(): void {
    if (!this.nobodyReads) this.deviceActive = true;
  }

  /** The device acknowledged more of our bytes: it is alive, the ack timer starts over. */
  noteAckProgress(): void {
    this.ackTimer?.refresh();
  }

  /** Nobody reads the device's bytes any more: stop waiting for it to go quiet. */
  readerGone(): void {
    this.nobodyReads = true;
    this.deviceActive = false;
    this.check();
  }

  /** Close if the device has acknowledged everything and is quiet (else arm the quiet check). Returns whether it closed. */
  check(): boolean {
    if (this.closed || !this.host.allAcked()) return false;
    if (this.deviceActive) {
      const now = Date.now();
      if (this.ackedAllAt === undefined) {
        this.ackedAllAt = now;
        clearTimeout(this.ackTimer);
        this.ackTimer = undefined;
      }
      if (now - this.ackedAllAt < END_QUIET_MAX_MS) {
        if (this.quietTimer === undefined) this.armQuietCheck();
        return false;
      }
      this.close('still-sending');
      return true;
    }
    this.close('done');
    return true;
  }

  /** The connection ended some other way: no more timers, no close. */
  stop(): void {
    this.closed = true;
    clearTimeout(this.ackTimer);
    clearTimeout(this.quietTimer);
    this.ackTimer = undefined;
    this.quietTimer = undefined;
  }

  private close(reason: EndReason): void {
    this.stop();
    this.host.close(reason);
  }

  private armQuietCheck(): void {
    this.quietSeq = this.host.deviceSeq();
    this.quietWindowOpen = this.host.windowOpen();
    this.quietTimer = setTimeout(this.onQuietCheck, END_QUIET_MS);
    this.quietTimer.unref();
  }

  private readonly onQuietCheck = (): void => {
    this.quietTimer = undefined;
    if (this.closed) return;
    if (this.quietWindowOpen && this.host.deviceSeq() === this.quietSeq) this.deviceActive = false;
    this.check(); // re-arms the check while the device is still active
  };

  private readonly onAckTimeout = (): void => {
    this.ackTimer = undefined;
    if (!this.closed) this.close('ack-timeout');
  };
}
