import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from './errors.js';

describe('ERROR_CODES', () => {
  it('lists every code once, and docs/error-codes.md documents exactly these', () => {
    expect(new Set(ERROR_CODES).size).toBe(ERROR_CODES.length);
    const doc = readFileSync(new URL('../docs/error-codes.md', import.meta.url), 'utf8');
    // the first column of a table row: | `MUXD_ERR_…` |
    const documented = [...doc.matchAll(/^\| `(MUXD_ERR_[A-Z_]+)` \|/gm)].map((m) => m[1]);
    expect([...new Set(documented)].sort()).toEqual([...ERROR_CODES].sort());
  });

});
