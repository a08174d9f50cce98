/**
 * The in-memory file tree AFC serves (a phone's /var/mobile/Media), with a byte quota.
 *
 * Paths are read relative to the root whether or not they start with "/"; "." is skipped and
 * ".." stops at the root. Operations answer an AFC status code on failure (a number), never
 * throw. Directory creation makes missing parents, as AFC's MakeDir does.
 *
 * Memory: `used` counts the bytes of every file (including removed files still open somewhere,
 * until their last close) plus `reserved` bytes of uploads still arriving (afc-codec.ts admits a
 * large write only after reserve()). Nothing grows past `capacity`: a write that would is refused
 * with NoSpaceLeft. A file's buffer grows with bounded slack (at most a quarter of its size or
 * 1 MiB), so the memory held stays within a small factor of `capacity`.
 */
import { AfcStatus } from './afc-codec.js';

export interface AfcFile {
  readonly kind: 'file';
  data: Buffer;
  size: number;
  mtimeNs: bigint;
  readonly birthNs: bigint;
  /** Open handles (any connection). */
  openCount: number;
  /** Removed from the tree; its bytes leave `used` at the last close. */
  detached: boolean;
}

export interface AfcDir {
  readonly kind: 'dir';
  readonly children: Map<string, AfcNode>;
  mtimeNs: bigint;
  readonly birthNs: bigint;
}

export type AfcNode = AfcFile | AfcDir;

export interface AfcFileSystemOptions {
  /** Bytes the tree may hold (files + uploads in flight). Default 64 MiB. */
  readonly capacity?: number;
  /** Model in GetDeviceInfo. Default "iPhone15,2". */
  readonly model?: string;
  readonly blockSize?: number;
  /** ms since 1970. Default Date.now. */
  readonly now?: () => number;
  /** Seed the tree with a few directories and files (default true). */
  readonly seed?: boolean;
}

export const DEFAULT_AFC_CAPACITY = 64 * 1024 * 1024;
const GROW_SLACK = 1024 * 1024;

/** The parent's path components and the last name, or undefined for the root. */
export function splitPath(path: string): string[] {
  const parts: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') parts.pop();
    else parts.push(part);
  }
  return parts;
}

export class AfcFileSystem {
  readonly capacity: number;
  readonly model: string;
  readonly blockSize: number;
  readonly root: AfcDir;
  private usedBytes = 0;
  private reservedBytes = 0;
  private readonly now: () => number;

  constructor(options: AfcFileSystemOptions = {}) {
    this.capacity = options.capacity ?? DEFAULT_AFC_CAPACITY;
    this.model = options.model ?? 'iPhone15,2';
    this.blockSize = options.blockSize ?? 4096;
    this.now = options.now ?? Date.now;
    this.root = this.newDir();
    if (options.seed ?? true) this.seedTree();
  }

  get used(): number {
    return this.usedBytes;
  }

  get reserved(): number {
    return this.reservedBytes;
  }

  get free(): number {
    return Math.max(0, this.capacity - this.usedBytes - this.reservedBytes);
  }

  /** Hold `n` bytes for an upload in flight; false when the tree has no room for them. */
  reserve(n: number): boolean {
    if (n > this.free) return false;
    this.reservedBytes += n;
    return true;
  }

  release(n: number): void {
    this.reservedBytes = Math.max(0, this.reservedBytes - n);
  }

  lookup(path: string): AfcNode | undefined {
    let node: AfcNode = this.root;
    for (const name of splitPath(path)) {
      if (node.kind !== 'dir') return undefined;
      const child = node.children.get(name);
      if (child === undefined) return undefined;
      node = child;
    }
    return node;
  }

  /** Names in a directory, "." and ".." first as a phone lists them. */
  list(path: string): string[] | number {
    const node = this.lookup(path);
    if (node === undefined) return AfcStatus.ObjectNotFound;
    if (node.kind !== 'dir') return AfcStatus.InvalidArg;
    return ['.', '..', ...[...node.children.keys()].sort()];
  }

  /** GetFileInfo's keys (sizes in bytes, times in ns since 1970). */
  stat(path: string): Record<string, string> | number {
    const node = this.lookup(path);
    if (node === undefined) return AfcStatus.ObjectNotFound;
    const size = node.kind === 'file' ? node.size : 64 + 32 * node.children.size;
    return {
      st_size: String(size),
      st_blocks: String(Math.ceil(size / 512)),
      st_nlink: String(node.kind === 'file' ? 1 : 2 + [...node.children.values()].filter((c) => c.kind === 'dir').length),
      st_ifmt: node.kind === 'file' ? 'S_IFREG' : 'S_IFDIR',
      st_mtime: String(node.mtimeNs),
      st_birthtime: String(node.birthNs),
    };
  }

  deviceInfo(): Record<string, string> {
    return { Model: this.model, FSTotalBytes: String(this.capacity), FSFreeBytes: String(this.free), FSBlockSize: String(this.blockSize) };
  }

  /** MakeDir: creates missing parents; an existing directory is success, a file in the way is not. */
  mkdir(path: string): number {
    let dir = this.root;
    for (const name of splitPath(path)) {
      const child = dir.children.get(name);
      if (child === undefined) {
        const made = this.newDir();
        dir.children.set(name, made);
        dir.mtimeNs = this.nowNs();
        dir = made;
      } else if (child.kind === 'dir') {
        dir = child;
      } else {
        return AfcStatus.ObjectExists;
      }
    }
    return AfcStatus.Success;
  }

  /** RemovePath (an empty directory or a file), or with `recursive` RemovePathAndContents. */
  remove(path: string, recursive: boolean): number {
    const parts = splitPath(path);
    const name = parts.pop();
    if (name === undefined) return AfcStatus.PermDenied; // never the root
    const parent = this.lookup(parts.join('/'));
    const node = parent?.kind === 'dir' ? parent.children.get(name) : undefined;
    if (parent?.kind !== 'dir' || node === undefined) return AfcStatus.ObjectNotFound;
    if (node.kind === 'dir' && node.children.size > 0 && !recursive) return AfcStatus.DirNotEmpty;
    parent.children.delete(name);
    parent.mtimeNs = this.nowNs();
    this.detach(node);
    return AfcStatus.Success;
  }

  /** RenamePath: replaces a file at the target, never a directory; no moving a directory into itself. */
  rename(from: string, to: string): number {
    const src = splitPath(from);
    const dst = splitPath(to);
    const srcName = src.pop();
    const dstName = dst.pop();
    if (srcName === undefined || dstName === undefined) return AfcStatus.InvalidArg;
    const srcParent = this.lookup(src.join('/'));
    const dstParent = this.lookup(dst.join('/'));
    const node = srcParent?.kind === 'dir' ? srcParent.children.get(srcName) : undefined;
    if (srcParent?.kind !== 'dir' || node === undefined) return AfcStatus.ObjectNotFound;
    if (dstParent?.kind !== 'dir') return AfcStatus.ObjectNotFound;
    const fullSrc = [...src, srcName];
    const fullDst = [...dst, dstName];
    if (node.kind === 'dir' && fullDst.length > fullSrc.length && fullSrc.every((p, i) => fullDst[i] === p)) return AfcStatus.InvalidArg;
    const existing = dstParent.children.get(dstName);
    if (existing === node) return AfcStatus.Success;
    if (existing?.kind === 'dir') return existing.children.size > 0 || node.kind !== 'dir' ? AfcStatus.ObjectExists : this.replace(srcParent, srcName, dstParent, dstName, node, existing);
    return this.replace(srcParent, srcName, dstParent, dstName, node, existing);
  }

  /**
   * The file for FileOpen's mode (1 r, 2 r+, 3 w, 4 w+, 5 a, 6 a+): every mode but r creates a
   * missing file (its directory must exist); w and w+ truncate.
   */
  open(path: string, mode: number): AfcFile | number {
    if (mode < 1 || mode > 6) return AfcStatus.InvalidArg;
    const parts = splitPath(path);
    const name = parts.pop();
    if (name === undefined) return AfcStatus.ObjectIsDir;
    const parent = this.lookup(parts.join('/'));
    if (parent?.kind !== 'dir') return AfcStatus.ObjectNotFound;
    let node = parent.children.get(name);
    if (node?.kind === 'dir') return AfcStatus.ObjectIsDir;
    if (node === undefined) {
      if (mode === 1) return AfcStatus.ObjectNotFound;
      const t = this.nowNs();
      node = { kind: 'file', data: Buffer.alloc(0), size: 0, mtimeNs: t, birthNs: t, openCount: 0, detached: false };
      parent.children.set(name, node);
      parent.mtimeNs = t;
    } else if (mode === 3 || mode === 4) {
      this.resize(node, 0);
    }
    node.openCount++;
    return node;
  }

  close(file: AfcFile): void {
    file.openCount = Math.max(0, file.openCount - 1);
    if (file.openCount === 0 && file.detached) {
      this.usedBytes -= file.size;
      file.size = 0;
      file.data = Buffer.alloc(0);
    }
  }

  readAt(file: AfcFile, position: number, length: number): Buffer {
    if (position >= file.size) return Buffer.alloc(0);
    return Buffer.from(file.data.subarray(position, Math.min(file.size, position + length)));
  }

  /** Write at `position` (the file grows, zero-filled, if it is beyond the end). */
  writeAt(file: AfcFile, position: number, data: Buffer): number {
    const end = position + data.length;
    if (end > file.size) {
      const status = this.resize(file, end);
      if (status !== AfcStatus.Success) return status;
    }
    data.copy(file.data, position);
    file.mtimeNs = this.nowNs();
    return AfcStatus.Success;
  }

  /** Truncate or extend (zero-filled) to `size`. */
  resize(file: AfcFile, size: number): number {
    if (!Number.isSafeInteger(size) || size < 0) return AfcStatus.InvalidArg;
    const grow = size - file.size;
    if (grow > this.free) return AfcStatus.NoSpaceLeft;
    if (size > file.data.length) {
      const slack = Math.min(Math.max(size >> 2, 4096), GROW_SLACK);
      const data = Buffer.alloc(size + slack);
      file.data.copy(data, 0, 0, file.size);
      file.data = data;
    } else if (size < file.size) {
      file.data.fill(0, size, file.size); // a later extension reads zeros
    }
    this.usedBytes += grow;
    file.size = size;
    file.mtimeNs = this.nowNs();
    return AfcStatus.Success;
  }

  /** A whole file (tests, seeding); creates missing directories. */
  writeFile(path: string, data: Buffer): number {
    const parts = splitPath(path);
    parts.pop();
    const made = this.mkdir(parts.join('/'));
    if (made !== AfcStatus.Success) return made;
    const file = this.open(path, 3);
    if (typeof file === 'number') return file;
    const status = this.writeAt(file, 0, data);
    this.close(file);
    return status;
  }

  readFile(path: string): Buffer | undefined {
    const node = this.lookup(path);
    return node?.kind === 'file' ? Buffer.from(node.data.subarray(0, node.size)) : undefined;
  }

  private replace(srcParent: AfcDir, srcName: string, dstParent: AfcDir, dstName: string, node: AfcNode, existing: AfcNode | undefined): number {
    if (existing !== undefined) this.detach(existing);
    srcParent.children.delete(srcName);
    dstParent.children.set(dstName, node);
    const t = this.nowNs();
    srcParent.mtimeNs = t;
    dstParent.mtimeNs = t;
    return AfcStatus.Success;
  }

  /** A node left the tree: its files' bytes leave `used` now, or at their last close. */
  private detach(node: AfcNode): void {
    if (node.kind === 'dir') {
      for (const child of node.children.values()) this.detach(child);
      return;
    }
    node.detached = true;
    if (node.openCount === 0) {
      this.usedBytes -= node.size;
      node.size = 0;
      node.data = Buffer.alloc(0);
    }
  }

  private newDir(): AfcDir {
    const t = this.nowNs();
    return { kind: 'dir', children: new Map(), mtimeNs: t, birthNs: t };
  }

  private nowNs(): bigint {
    return BigInt(Math.round(this.now())) * 1_000_000n;
  }

  /** What a fresh phone's media partition shows. */
  private seedTree(): void {
    for (const dir of ['DCIM/100APPLE', 'Downloads', 'Books', 'PhotoData', 'Purchases', 'Recordings', 'iTunes_Control/iTunes', 'PublicStaging']) this.mkdir(dir);
    this.writeFile('DCIM/100APPLE/IMG_0001.JPG', Buffer.concat([Buffer.from('ffd8ffe000104a46494600', 'hex'), Buffer.alloc(2037, 0x20), Buffer.from('ffd9', 'hex')]));
    this.writeFile('Downloads/readme.txt', Buffer.from('This is the virtual iPhone of usbmuxd-ts. Files written here live in memory.\n'));
  }
}
