/** The typed plist value model shared by the readers and writers. */
export type PlistValue = string | number | bigint | boolean | Buffer | Date | PlistValue[] | PlistDict;

export interface PlistDict {
  [key: string]: PlistValue;
}

export interface PlistLimits {
  /** Largest input accepted, in bytes. */
  readonly maxBytes: number;
  /** Deepest container nesting (the root container is depth 1). */
  readonly maxDepth: number;
  /** Most values (containers and leaves; dict keys not counted) in one document. */
  readonly maxObjects: number;
}
