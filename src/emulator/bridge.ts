/**
 * The emulated phone as a standalone device behind the umockdev USB harness.
 *
 * It connects to the harness's Unix socket. Frames both ways are `[u32 LE length][bytes]`, and
 * one frame is one bulk transfer: host→device frames (one per OUT URB, ZLPs as length 0) go to
 * `emulator.receive`; every device→host transfer is written as one frame (the harness splits a
 * frame longer than the IN URB).
 *
 *   [ CONNECTING ] --connect--> [ RUNNING ] --socket end/close--> [ CLOSED ]  (resolves `closed`)
 *         |                          |
 *         +-------- error -----------+----> [ CLOSED ]  (rejects `closed` with BridgeSocketError)
 *
 * `stop()` closes the socket from our side (same path: `closed` resolves).
 *
 * With `statePath` the phone's identity (key, trusted hosts, Wi-Fi switch) is read from that file
 * at start and written back whenever it changes and when the bridge closes, so a replug (a new
 * bridge process) is the same phone, and so is a Wi-Fi face of it in another process
 * (wifi-phone-cli --state, which follows the file).
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import type { Socket } from 'node:net';
import { parseArgs } from 'node:util';
import type { Logger } from '../log.js';
import { EmulatedIPhone } from './device.js';
import { installExtraServices } from './extra/index.js';
import type { ExtraServicesOptions } from './extra/index.js';
import { BridgeSocketError, BridgeStateError } from './errors.js';
import type { EmulatorOptions } from './options.js';
import { TRUST_MODES, isTrustMode } from './pairing.js';
import type { Pairing, PhoneIdentity } from './pairing.js';
import { decodeIdentity, encodeIdentity } from './pairing-state.js';

/** Bytes of the little-endian length in front of every frame. */
export const FRAME_HEADER = 4;

export interface BridgeOptions {
  readonly socketPath: string;
  readonly emulator?: EmulatorOptions;
  readonly log: Logger;
  /** Where the phone's identity is kept between bridge processes (written on close). */
  readonly statePath?: string;
  /** The optional services (extra/index.ts); false for a minimal phone. Default: installed. */
  readonly extras?: ExtraServicesOptions | false;
}

/** The identity kept at `path`: {} (a new phone) when there is no file yet; a string on a bad file. */
export function loadIdentity(path: string): PhoneIdentity | string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if (err instanceof Error && 'code' in err && err.code === 'ENOENT') return {};
    return `${path}: ${err instanceof Error ? err.message : String(err)}`;
  }
  const identity = decodeIdentity(text);
  return typeof identity === 'string' ? `${path}: ${identity}` : identity;
}

/** Write the phone's identity to `path` (temp file + rename, mode 0600: it holds the private key). */
export function saveIdentity(path: string, pairing: Pairing): void {
  const temp = `${path}.tmp-${process.pid}`;
  writeFileSync(temp, encodeIdentity(pairing.identity()), { mode: 0o600 });
  renameSync(temp, path);
}

export interface RunningBridge {
  readonly emulator: EmulatedIPhone;
  /** Resolves when the socket closed cleanly; rejects with BridgeSocketError on a socket error. */
  readonly closed: Promise<void>;
  stop(): void;
}

/** Cuts the socket byte stream into frames; copies only when a frame spans reads. */
export class FrameReader {
  private pending: Buffer | undefined;

  constructor(private readonly onFrame: (frame: Buffer) => void) {}

  push(data: Buffer): void {
    let buf = this.pending === undefined ? data : Buffer.concat([this.pending, data]);
    this.pending = undefined;
    while (buf.length >= FRAME_HEADER) {
      const length = buf.readUInt32LE(0);
      if (buf.length < FRAME_HEADER + length) break;
      this.onFrame(buf.subarray(FRAME_HEADER, FRAME_HEADER + length));
      buf = buf.subarray(FRAME_HEADER + length);
    }
    if (buf.length > 0) this.pending = buf;
  }
}

/** One frame: 4-byte LE length, then the transfer. */
export function encodeFrame(transfer: Buffer): Buffer {
  const frame = Buffer.allocUnsafe(FRAME_HEADER + transfer.length);
  frame.writeUInt32LE(transfer.length, 0);
  transfer.copy(frame, FRAME_HEADER);
  return frame;
}

export function runBridge(options: BridgeOptions): RunningBridge {
  const { log } = options;
  const emulator = new EmulatedIPhone(options.emulator);
  if (options.extras !== false && options.emulator?.services === undefined) installExtraServices(emulator, options.extras);
  emulator.pairing.onEvent = (event) => {
    log.info({ pairingEvent: event }, 'pairing');
  };
  const { statePath } = options;
  if (statePath !== undefined) {
    emulator.pairing.onIdentityChange(() => {
      try {
        saveIdentity(statePath, emulator.pairing);
      } catch (err) {
        // kept again at close; a failure then ends the bridge with BridgeStateError
        log.warn({ err, state: statePath }, 'could not keep the phone identity now');
      }
    });
  }
  const socket: Socket = createConnection(options.socketPath);
  const reader = new FrameReader((frame) => {
    emulator.receive(frame);
  });
  const closed = new Promise<void>((resolve, reject) => {
    let failure: Error | undefined;
    socket.on('connect', () => {
      log.info({ socket: options.socketPath, udid: emulator.udid }, 'emulator bridge connected');
      emulator.connect({
        sendToHost: (transfer) => {
          socket.write(encodeFrame(transfer));
        },
      });
    });
    socket.on('data', (data: Buffer) => {
      reader.push(data);
    });
    socket.on('error', (err) => {
      failure = new BridgeSocketError(`bridge socket ${options.socketPath}: ${err.message}`, { cause: err });
    });
    socket.on('close', () => {
      emulator.disconnect();
      if (options.statePath !== undefined) {
        try {
          saveIdentity(options.statePath, emulator.pairing);
        } catch (err) {
          failure ??= new BridgeStateError(`could not keep the phone identity in ${options.statePath}`, { cause: err });
        }
      }
      log.info({ stats: emulator.stats, pairing: emulator.pairing.stats, pairedHosts: emulator.pairing.pairedHostIds() }, 'emulator bridge closed');
      if (failure === undefined) resolve();
      else reject(failure);
    });
  });
  return {
    emulator,
    closed,
    stop() {
      socket.destroy();
    },
  };
}

export const BRIDGE_USAGE = `usage: bridge-cli --socket <path> [--udid U] [--protocol-version 1|2] [--window BYTES] [--trust ${TRUST_MODES.join('|')}] [--auto-tap-ms MS] [--state FILE]`;

export interface BridgeArgs {
  readonly socketPath: string;
  readonly emulator: EmulatorOptions;
  /** `--state` or MUXD_EMU_STATE: the phone identity file. */
  readonly statePath?: string;
}

/** Parse argv (without node and script); returns an error message instead of throwing. */
export function parseBridgeArgs(argv: readonly string[], env: NodeJS.ProcessEnv): BridgeArgs | string {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        socket: { type: 'string' },
        udid: { type: 'string' },
        'protocol-version': { type: 'string' },
        window: { type: 'string' },
        trust: { type: 'string' },
        'auto-tap-ms': { type: 'string' },
        state: { type: 'string' },
      },
      strict: true,
    }));
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
  const socketPath = values.socket ?? env['MUXD_EMU_SOCKET'];
  if (socketPath === undefined || socketPath === '') return 'missing --socket (or MUXD_EMU_SOCKET)';
  const version = values['protocol-version'];
  if (version !== undefined && version !== '1' && version !== '2') return `--protocol-version must be 1 or 2, not ${version}`;
  const window = values.window === undefined ? undefined : Number(values.window);
  if (window !== undefined && !(Number.isInteger(window) && window >= 0 && window <= 0xffff * 256)) return `--window must be 0..${0xffff * 256} bytes`;
  const trust = values.trust ?? env['MUXD_EMU_TRUST'];
  if (trust !== undefined && !isTrustMode(trust)) return `--trust must be one of ${TRUST_MODES.join(', ')}, not ${trust}`;
  const tap = values['auto-tap-ms'] === undefined ? undefined : Number(values['auto-tap-ms']);
  if (tap !== undefined && !(Number.isInteger(tap) && tap >= 0 && tap <= 3_600_000)) return '--auto-tap-ms must be 0..3600000';
  const statePath = values.state ?? env['MUXD_EMU_STATE'];
  return {
    socketPath,
    ...(statePath === undefined || statePath === '' ? {} : { statePath }),
    emulator: {
      trust: { mode: trust ?? 'auto', ...(tap === undefined ? {} : { autoTapMs: tap }) },
      ...(values.udid === undefined ? {} : { udid: values.udid }),
      ...(version === undefined ? {} : { protocolVersion: version === '1' ? 1 : 2 }),
      ...(window === undefined ? {} : { faults: { window } }),
    },
  };
}
