import { describe, expect, it } from 'vitest';
import { ReadReclaimer, minorCollector } from './read-reclaim.js';

describe('ReadReclaimer', () => {
  it('collects once per threshold of bytes noted, and makes its collector only when first needed', () => {
    let made = 0;
    let collections = 0;
    const r = new ReadReclaimer(100, () => {
      made++;
      return () => { collections++; };
    });
    r.note(60);
    expect([made, collections]).toEqual([0, 0]);
    r.note(40);
    expect([made, collections]).toEqual([1, 1]);
    for (let i = 0; i < 10; i++) r.note(99);
    // the count starts again from 0 at each collection: every second 99 reaches 100
    expect(collections).toBe(6);
    expect(made).toBe(1);
  });

  it('the real collector runs a minor collection without exposing gc in this context', () => {
    const collect = minorCollector();
    expect(() => { collect(); }).not.toThrow();
    expect('gc' in globalThis).toBe(false);
  });
});
