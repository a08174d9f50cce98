/**
 * The root of every error this daemon raises on purpose.
 *
 * Each layer keeps its own `errors.ts` with one class per condition. A class carries a stable
 * `code` (documented in docs/error-codes.md) and, where it has one, its consequence on the wire
 * (RST a connection, drop a device, a usbmuxd Result number). Never match on `message`.
 */
export abstract class MuxdError extends Error {
  abstract readonly code: `MUXD_ERR_${string}`;

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A configuration value is out of range; raised at startup, never mid-stream. */
export class InvalidConfigError extends MuxdError {
  readonly code = 'MUXD_ERR_INVALID_CONFIG';
}

/** `true` when `err` is one of ours (never a type guard over `any`). */
export function isMuxdError(err: unknown): err is MuxdError {
  return err instanceof MuxdError;
}

/** Node's system errors carry a string `code` such as 'ENOENT'. */
export function systemErrorCode(err: unknown): string | undefined {
  if (err instanceof Error && 'code' in err && typeof err.code === 'string') return err.code;
  return undefined;
}
