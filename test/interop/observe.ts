/**
 * Turning a daemon's answer into a comparable observation: header fields, the Result number, and
 * the type skeleton of a plist body. Values that are random per daemon (BUIDs) are reduced to a
 * validity token by the cases themselves.
 */
import type { RawFrame, ReadOutcome } from '../support/raw-client.js';
import { MSG_PLIST, MSG_RESULT } from '../support/raw-client.js';
import { field, parseTypedPlist, shapeOf } from './plist-shape.js';
import type { Typed } from './plist-shape.js';

export type Observation =
  | { readonly outcome: 'silence' }
  | { readonly outcome: 'closed' }
  | {
      readonly outcome: 'frame';
      readonly version: number;
      readonly message: number;
      readonly tag: number;
      /** Binary RESULT's u32, or a plist Result's Number. */
      readonly result?: number;
      /** Type skeleton of a plist body. */
      readonly shape?: unknown;
      /** Body encoding of a plist frame. */
      readonly format?: 'xml' | 'binary-plist';
    };

export function observe(outcome: ReadOutcome): Observation {
  switch (outcome.kind) {
    case 'silence':
      return { outcome: 'silence' };
    case 'closed':
      return { outcome: 'closed' };
    case 'frame':
      return observeFrame(outcome.frame);
  }
}

export function observeFrame(frame: RawFrame): Observation {
  const head = { outcome: 'frame' as const, version: frame.version, message: frame.message, tag: frame.tag };
  if (frame.message === MSG_RESULT && frame.body.length === 4) return { ...head, result: frame.body.readUInt32LE(0) };
  if (frame.message !== MSG_PLIST) return head;
  if (frame.body.subarray(0, 8).toString('latin1') === 'bplist00') return { ...head, format: 'binary-plist' };
  const body = plistBody(frame);
  const number = field(body, 'Number');
  const isResult = field(body, 'MessageType')?.t === 'string' && (field(body, 'MessageType') as { v: string }).v === 'Result';
  const result = isResult && number?.t === 'integer' ? { result: Number(number.v) } : {};
  return { ...head, format: 'xml', shape: shapeOf(body), ...result };
}

/** The typed XML body of a plist frame (throws on binary or malformed bodies). */
export function plistBody(frame: RawFrame): Typed {
  return parseTypedPlist(frame.body.toString('utf8'));
}

/** What a daemon's plist `Result` looks like, for expectations. */
export function plistResult(number: number, tag: number): Observation {
  return {
    outcome: 'frame',
    version: 1,
    message: MSG_PLIST,
    tag,
    format: 'xml',
    result: number,
    shape: { MessageType: 'string', Number: 'integer' },
  };
}

/** A binary (version 0) RESULT. */
export function binaryResult(number: number, tag: number): Observation {
  return { outcome: 'frame', version: 0, message: MSG_RESULT, tag, result: number };
}
