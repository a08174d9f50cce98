/** The typed plist value model shared by the readers and writers. */
export type PlistValue = string | number | bigint | boolean | Buffer | Date | PlistValue[] | PlistDict;

export interface PlistDict {
  [key: string]: PlistValue;
}

export interface PlistLimits {
  /** Largest input accepted, in bytes. */
  readonly maxBytes: number;
  /** Deepest container nesting (the root container is depth 1); at most MAX_DEPTH_CEILING (256) is used. */
  readonly maxDepth: number;
  /** Most values (containers and leaves; dict keys not counted) in one document. */
  readonly maxObjects: number;
  /**
   * Binary plists only: most bytes of objects read, summed over every time an object is expanded
   * (a shared reference counts each time it is followed; dict keys count). Default `maxBytes`.
   * XML has no shared references: its values never exceed its text.
   */
  readonly maxExpandedBytes?: number;
}

/**
 * Counts a reader's work (buffer bytes or characters examined), so tests and fuzzers can hold the
 * readers to a bound by counting instead of timing. Readers add to `work`, also when they throw.
 */
export interface WorkMeter {
  work: number;
}
