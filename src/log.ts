/**
 * The Logger type every module takes (pino's), and the conventions for child bindings:
 * `{ dev }` per device, `{ dev, sport, dport }` per connection, `{ client }` per socket client.
 * Per-packet traces are guarded by `log.isLevelEnabled('trace')` so they cost nothing when off.
 */
import { pino } from 'pino';
import type { Logger } from 'pino';

export type { Logger } from 'pino';

/** A logger that drops everything; for tests and library use. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
