/**
 * Who may take a client slot: the daemon's table of clients shared between local users.
 *
 * Every client has an owner key: `uid:N` for a local client whose uid is known (SO_PEERCRED, or
 * /proc/net/tcp for loopback TCP), `addr:IP` for a remote TCP client, none when unknown. Rules at
 * accept, in order:
 *
 *   privileged (uid 0 or the daemon's own uid)   admitted while total < maxClients
 *   anyone else                                  admitted while total < maxClients - reserved
 *   an owner key                                 admitted while its own count < maxPerOwner
 *
 * So no single user can hold more than maxPerOwner slots (the rest stay for other users), and
 * `reserved` slots are only ever taken by root (or the daemon's user): an operator can always
 * list devices and stop a flood. The counts are released when the client closes.
 */
export interface AdmissionLimits {
  /** All clients at once. */
  readonly maxClients: number;
  /** Clients of one owner (uid, or remote address) at once; privileged uids are not counted. */
  readonly maxPerOwner: number;
  /** Slots kept for privileged clients. */
  readonly reserved: number;
}

/** Who a client is, for admission: its owner key (undefined: unknown) and whether it is privileged. */
export interface ClientOwner {
  readonly key: string | undefined;
  readonly privileged: boolean;
}

export type AdmissionRefusal = 'total' | 'reserved' | 'owner';

/**
 * Defaults for a table of `maxClients`: 1/32 reserved (at least 1) when owners can be told apart
 * (`owners`: else nobody could be told to be root), 3/4 per owner (at least 1).
 */
export function defaultLimits(maxClients: number, maxPerOwner?: number, owners = true): AdmissionLimits {
  const reserved = owners && maxClients > 1 ? Math.max(1, Math.floor(maxClients / 32)) : 0;
  return { maxClients, reserved, maxPerOwner: maxPerOwner ?? Math.max(1, Math.floor((maxClients * 3) / 4)) };
}

export class Admission {
  readonly limits: AdmissionLimits;
  private total = 0;
  private readonly perOwner = new Map<string, number>();

  constructor(limits: AdmissionLimits) {
    this.limits = limits;
  }

  /** Clients holding a slot (admitted and not yet released), plus slots held for pending lookups. */
  get count(): number {
    return this.total;
  }

  countOf(key: string): number {
    return this.perOwner.get(key) ?? 0;
  }

  /** Take a slot before the owner is known (a lookup in flight); `settle` or `release` it later. */
  hold(): AdmissionRefusal | undefined {
    if (this.total >= this.limits.maxClients) return 'total';
    this.total++;
    return undefined;
  }

  /** Give back a held slot (the client left before its owner was known). */
  unhold(): void {
    this.total--;
  }

  /** A held slot's owner is known: keep it (undefined) or give it back and say why. */
  settle(owner: ClientOwner): AdmissionRefusal | undefined {
    this.total--;
    return this.admit(owner);
  }

  /** Take a slot for `owner`, or say why not. */
  admit(owner: ClientOwner): AdmissionRefusal | undefined {
    const { maxClients, reserved, maxPerOwner } = this.limits;
    if (this.total >= maxClients) return 'total';
    if (!owner.privileged) {
      if (this.total >= maxClients - reserved) return 'reserved';
      if (owner.key !== undefined) {
        const count = this.perOwner.get(owner.key) ?? 0;
        if (count >= maxPerOwner) return 'owner';
        this.perOwner.set(owner.key, count + 1);
      }
    }
    this.total++;
    return undefined;
  }

  /** A client admitted with `owner` closed. */
  release(owner: ClientOwner): void {
    this.total--;
    if (owner.privileged || owner.key === undefined) return;
    const count = (this.perOwner.get(owner.key) ?? 0) - 1;
    if (count <= 0) this.perOwner.delete(owner.key);
    else this.perOwner.set(owner.key, count);
  }
}
