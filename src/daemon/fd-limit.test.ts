import { describe, expect, it } from 'vitest';
import { clientLimitFor, FD_RESERVE, parseSoftNofile, readSoftNofile } from './fd-limit.js';

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            256                  524288               files
Max locked memory         8388608              8388608              bytes
`;

describe('client limit under RLIMIT_NOFILE', () => {
  it('reads the soft Max open files from /proc/<pid>/limits', () => {
    expect(parseSoftNofile(LIMITS)).toBe(256);
    expect(parseSoftNofile(LIMITS.replace('256   ', 'unlimited'))).toBeUndefined();
    expect(parseSoftNofile('garbage')).toBeUndefined();
  });

  it('lowers the configured limit to leave the reserve, never below 1, never above the configuration', () => {
    expect(clientLimitFor(1024, 256)).toBe(256 - FD_RESERVE);
    expect(clientLimitFor(1024, 65536)).toBe(1024);
    expect(clientLimitFor(1024, 10)).toBe(1);
    expect(clientLimitFor(1024, undefined)).toBe(1024);
  });

  it('reads this process (a number on Linux) and survives an unreadable file', () => {
    expect(readSoftNofile()).toBeGreaterThan(0);
    expect(readSoftNofile(() => {
      throw new Error('ENOENT');
    })).toBeUndefined();
  });
});
