/**
 * How the readers interpret PlistLimits, in one place.
 */
import type { PlistLimits } from './types.js';

/**
 * The deepest nesting either reader descends to, whatever `maxDepth` says: both recurse once per
 * level, and a few thousand levels exhaust V8's stack (a RangeError instead of a PlistParseError).
 */
export const MAX_DEPTH_CEILING = 256;

export function depthLimit(limits: PlistLimits): number {
  return Math.min(limits.maxDepth, MAX_DEPTH_CEILING);
}

/** The expanded-size budget of a binary plist: an explicit `maxExpandedBytes`, else `maxBytes`. */
export function expandedBudget(limits: PlistLimits): number {
  return limits.maxExpandedBytes ?? limits.maxBytes;
}
