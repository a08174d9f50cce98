import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Admission, defaultLimits } from './admission.js';
import type { ClientOwner } from './admission.js';

const owners: ClientOwner[] = [
  { key: 'uid:0', privileged: true },
  { key: 'uid:1000', privileged: false },
  { key: 'uid:1001', privileged: false },
  { key: 'addr:192.0.2.7', privileged: false },
  { key: undefined, privileged: false },
];

describe('Admission', () => {
  it('defaults: 3/4 per user, 1/32 kept for root (none when owners cannot be told apart)', () => {
    expect(defaultLimits(1024)).toEqual({ maxClients: 1024, maxPerOwner: 768, reserved: 32 });
    expect(defaultLimits(16)).toEqual({ maxClients: 16, maxPerOwner: 12, reserved: 1 });
    expect(defaultLimits(1)).toEqual({ maxClients: 1, maxPerOwner: 1, reserved: 0 });
    expect(defaultLimits(1024, 100, false)).toEqual({ maxClients: 1024, maxPerOwner: 100, reserved: 0 });
  });

  it('any sequence of arrivals and departures: no owner over its share, nobody but root in the reserve, root in while there is room', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: owners.length - 1 })), { maxLength: 300 }),
        (maxClients, steps) => {
          const admission = new Admission(defaultLimits(maxClients));
          const { maxPerOwner, reserved } = admission.limits;
          const held: ClientOwner[] = [];
          for (const [arrive, which] of steps) {
            const owner = owners[which] ?? { key: undefined, privileged: false };
            if (arrive) {
              const before = held.length;
              const refusal = admission.admit(owner);
              if (refusal === undefined) held.push(owner);
              else if (owner.privileged) expect(before).toBe(maxClients);
            } else {
              const at = held.findIndex((h) => h === owner);
              if (at >= 0) {
                held.splice(at, 1);
                admission.release(owner);
              }
            }
            expect(admission.count).toBe(held.length);
            expect(held.length).toBeLessThanOrEqual(maxClients);
            expect(held.filter((h) => !h.privileged).length).toBeLessThanOrEqual(maxClients - reserved);
            for (const o of owners) {
              if (o.key !== undefined && !o.privileged) {
                expect(held.filter((h) => h.key === o.key).length).toBeLessThanOrEqual(maxPerOwner);
                expect(admission.countOf(o.key)).toBe(held.filter((h) => h.key === o.key).length);
              }
            }
          }
        },
      ),
    );
  });

  it('a held slot counts against the total until its owner is settled or it is given back', () => {
    const admission = new Admission({ maxClients: 2, maxPerOwner: 1, reserved: 0 });
    expect(admission.hold()).toBeUndefined();
    expect(admission.hold()).toBeUndefined();
    expect(admission.hold()).toBe('total');
    expect(admission.settle({ key: 'uid:5', privileged: false })).toBeUndefined();
    expect(admission.settle({ key: 'uid:5', privileged: false })).toBe('owner');
    expect(admission.count).toBe(1);
    expect(admission.hold()).toBeUndefined();
    admission.unhold();
    expect(admission.count).toBe(1);
  });
});
