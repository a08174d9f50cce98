/**
 * One fuzzed plist, checked against every promise of the plist codec (src/plist): parsePlist
 * returns a value or throws a PlistParseError, never anything else; its work (the readers'
 * WorkMeter) stays within the bound for its limits (binary) or its length (XML); a value it
 * returns is no bigger than its limits allow. Shared by src/plist/plist-fuzz.test.ts (npm test,
 * a few hundred inputs) and the plist-fuzz soak scenario (bench/soak/plist-fuzz.ts, at length).
 */
import { DEFAULT_PLIST_LIMITS, isBinaryPlist, parsePlist, PlistParseError } from '../../src/plist/index.js';
import type { PlistErrorCode, PlistFormat, PlistLimits, PlistValue } from '../../src/plist/index.js';
import { MAX_FRAME_BYTES } from '../../src/server/framing.js';
import { binaryWorkBound, xmlWorkBound } from './plist-arbitraries.js';

/**
 * The limits the daemon parses with (client request bodies, defaults for records and the
 * emulated lockdownd, preflight's lockdown messages), and tight ones that fuzzed documents hit.
 */
export const FUZZ_LIMITS: readonly PlistLimits[] = [
  { maxBytes: MAX_FRAME_BYTES, maxDepth: 8, maxObjects: 1024 },
  DEFAULT_PLIST_LIMITS,
  { maxBytes: 1024 * 1024, maxDepth: 16, maxObjects: 4096 },
  { maxBytes: 4096, maxDepth: 4, maxObjects: 64, maxExpandedBytes: 2048 },
];

export interface FuzzVerdict {
  /** 'value', a PlistParseError code, or 'crash' (anything else was thrown). */
  readonly outcome: 'value' | 'crash' | PlistErrorCode;
  readonly work: number;
  readonly workBound: number;
  /** Values in the result (dict keys not counted) and their payload bytes (UTF-16 strings: 2 per unit). */
  readonly nodes: number;
  readonly payloadBytes: number;
  /** Every promise broken, in words; empty when all hold. */
  readonly violations: string[];
}

function measure(value: PlistValue, acc: { nodes: number; bytes: number }): void {
  acc.nodes += 1;
  if (typeof value === 'string') acc.bytes += 2 * value.length;
  else if (Buffer.isBuffer(value)) acc.bytes += value.length;
  else if (Array.isArray(value)) for (const item of value) measure(item, acc);
  else if (typeof value === 'object' && !(value instanceof Date)) {
    for (const [key, item] of Object.entries(value)) {
      acc.bytes += 2 * key.length;
      measure(item, acc);
    }
  } else acc.bytes += 8;
}

/** `parse` is parsePlist; tests of the checker itself give it a broken one. */
export function checkPlist(buf: Buffer, limits: PlistLimits, formats?: readonly PlistFormat[], parse: typeof parsePlist = parsePlist): FuzzVerdict {
  const meter = { work: 0 };
  const violations: string[] = [];
  let outcome: FuzzVerdict['outcome'] = 'value';
  let value: PlistValue | undefined;
  try {
    value = parse(buf, limits, { meter, ...(formats === undefined ? {} : { formats }) });
  } catch (err) {
    if (err instanceof PlistParseError) outcome = err.code;
    else {
      outcome = 'crash';
      violations.push(`threw ${err instanceof Error ? `${err.constructor.name}: ${err.message}` : String(err)}`);
    }
  }
  const binary = isBinaryPlist(buf);
  const workBound = binary ? binaryWorkBound(limits) : xmlWorkBound(buf.length);
  if (meter.work > workBound) violations.push(`work ${meter.work} above the bound ${workBound}`);
  const acc = { nodes: 0, bytes: 0 };
  if (value !== undefined) measure(value, acc);
  if (acc.nodes > limits.maxObjects) violations.push(`${acc.nodes} values above maxObjects ${limits.maxObjects}`);
  const payloadBound = 2 * (binary ? (limits.maxExpandedBytes ?? limits.maxBytes) : buf.length) + 8 * acc.nodes;
  if (acc.bytes > payloadBound) violations.push(`${acc.bytes} payload bytes above ${payloadBound}`);
  if (violations.length > 0) violations.push(`input (${buf.length} bytes): ${buf.subarray(0, 256).toString(binary ? 'hex' : 'utf8')}`);
  return { outcome, work: meter.work, workBound, nodes: acc.nodes, payloadBytes: acc.bytes, violations };
}

/** Counts what reaches stderr (and console) until `stop()`: nothing may print around the logger. */
export function captureStderr(): { readonly bytes: () => number; readonly first: () => string; stop(): void } {
  let bytes = 0;
  let first = '';
  const record = (text: string): void => {
    bytes += text.length;
    if (first === '') first = text.slice(0, 200);
  };
  const write = process.stderr.write.bind(process.stderr);
  const consoleMethods = { error: console.error, warn: console.warn, log: console.log };
  process.stderr.write = ((chunk: unknown): boolean => {
    record(typeof chunk === 'string' ? chunk : Buffer.isBuffer(chunk) ? chunk.toString() : String(chunk));
    return true;
  });
  for (const name of ['error', 'warn', 'log'] as const) {
    console[name] = (...args: unknown[]): void => { record(args.map(String).join(' ')); };
  }
  return {
    bytes: () => bytes,
    first: () => first,
    stop(): void {
      process.stderr.write = write;
      Object.assign(console, consoleMethods);
    },
  };
}
