/**
 * The stock services' ports and the source stream's bytes, in a module that imports nothing: the
 * benchmarks' lean phone and clients use them without loading the emulator (and node-forge with it)
 * into a process whose memory they measure.
 */
export const ECHO_PORT = 7;
export const DISCARD_PORT = 9;
export const SOURCE_PORT = 19;
export const LOCKDOWN_PORT = 62078;

/**
 * The byte the source service sends at stream offset `i` (a pure function, so tests can verify
 * any slice): `(i * 7 + floor(i / 256)) mod 256`. It does not repeat within 64 KiB.
 */
export function sourceByte(i: number): number {
  return (i * 7 + Math.floor(i / 256)) & 0xff;
}
