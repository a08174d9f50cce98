/**
 * The hostile plists of issue 13, built byte by byte: each is small enough to fit one client
 * frame (64 KiB) or the PairRecordData of one SavePairRecord, and each broke the daemon's plist
 * path before the bounded binary reader and the linear XML reader. Shared by the plist tests,
 * the fuzzers (test/support/plist-arbitraries.ts) and bench/plist-attacks.ts.
 */
import { arrayOf, ascii, assemble, data, date, dictOf, raw, wideIntHeader } from './bplist-builder.js';
import type { BpNode } from './bplist-builder.js';

/**
 * A dict whose only KEY is an array referencing the next array twice, `levels` deep, down to a
 * one-character string. A reader that turns a non-string key into a string (bplist-parser writes
 * `dict[key] = value`, so the key becomes `String(array)`) builds a string of 2^(levels+1)
 * characters; counting only values, the expansion guard saw one dict and one string.
 */
export function keyBomb(levels: number): Buffer {
  const objects: BpNode[] = [dictOf([1], [2 + levels])];
  for (let i = 0; i < levels; i++) objects.push(arrayOf([2 + i, 2 + i]));
  objects.push(raw(ascii('x')), raw(ascii('v')));
  return assemble(objects, 0);
}

/**
 * A dict {"k": array} whose array references `copies` times one `leaf` object: the root is a dict,
 * so a SavePairRecord carrying it gets as far as the record store.
 */
function sharedLeaf(copies: number, leaf: Buffer): Buffer {
  return assemble([dictOf([3], [1]), arrayOf(Array<number>(copies).fill(2)), raw(leaf), raw(ascii('k'))], 0);
}

/**
 * {"k": [int × copies]}: one int object whose marker declares 2^`nibble` bytes (0x1F: 32768) and
 * which carries `present` of them. bplist-parser read the declared width byte by byte into a
 * BigInt (quadratic in the width) for every reference.
 */
export function wideIntBomb(copies: number, nibble = 15, present = 1 << nibble): Buffer {
  return sharedLeaf(copies, wideIntHeader(nibble, present));
}

/**
 * {"k": [string × copies]}: a reader that builds a fresh string per reference holds
 * length × copies characters, and a writer that re-encodes the value writes them all.
 */
export function sharedStringBomb(copies: number, length: number): Buffer {
  return sharedLeaf(copies, ascii('s'.repeat(length)));
}

/** {"k": [data × copies]} (bplist-parser hands out views of one buffer; an XML writer writes base64 copies). */
export function sharedDataBomb(copies: number, length: number): Buffer {
  return sharedLeaf(copies, data(Buffer.alloc(length, 0x41)));
}

/** `levels` arrays where array i references array i+1 `fan` times: fan^levels values once expanded. */
export function referenceBomb(levels: number, fan: number): Buffer {
  const objects: BpNode[] = [];
  for (let i = 0; i < levels; i++) objects.push(arrayOf(Array<number>(fan).fill(i + 1)));
  objects.push(raw(ascii('x')));
  return assemble(objects, 0);
}

/** As referenceBomb under a dict {"k": ...}, so it reaches the record store. */
export function referenceBombInDict(levels: number, fan: number): Buffer {
  const objects: BpNode[] = [dictOf([levels + 2], [1])];
  for (let i = 0; i < levels; i++) objects.push(arrayOf(Array<number>(fan).fill(i + 2)));
  objects.push(raw(ascii('x')), raw(ascii('k')));
  return assemble(objects, 0);
}

/** A dict {"d": date} whose date marker is not 0x33 (bplist-parser printed "Unknown date type" to stderr). */
export function oddDate(dateMarker = 0x30): Buffer {
  return assemble([dictOf([1], [2]), raw(ascii('d')), raw(date(0, dateMarker))], 0);
}

/** `<plist><real>` + `digits` digits + `tail` + `</real></plist>`: a backtracking number regex is quadratic here. */
export function xmlLongReal(digits: number, tail = 'x'): Buffer {
  return Buffer.from(`<plist><real>${'1'.repeat(digits)}${tail}</real></plist>`);
}

/** `<plist><integer>` of `digits` digits: BigInt of a long decimal string is superlinear. */
export function xmlLongInteger(digits: number): Buffer {
  return Buffer.from(`<plist><integer>${'1'.repeat(digits)}</integer></plist>`);
}

/** `<plist><data>` of `length` base64 characters, then a character outside the alphabet. */
export function xmlLongBadData(length: number): Buffer {
  return Buffer.from(`<plist><data>${'A'.repeat(length)}!</data></plist>`);
}

/** `<plist><date>` of `length` digits (not a date). */
export function xmlLongDate(length: number): Buffer {
  return Buffer.from(`<plist><date>${'1'.repeat(length)}</date></plist>`);
}
