/**
 * The phone behaviours the USB bench runs against (bench/usb-bridge.ts `--phone`), as emulator
 * fault knobs:
 *   default    the emulator as it ships: 16 KiB packets, a 128 KiB window, host data ACKed at once,
 *              by the reply itself when the service answers in the same turn (echo does);
 *   ack-every  a bare ACK for every host data packet before its service sees it, as a phone whose
 *              services are other processes answers (the reply comes after the ACK), with 16 KiB
 *              packets and a 128 KiB window pinned: one more IN transfer per echoed packet.
 */
import type { FaultKnobs } from '../../src/emulator/index.js';

export type PhoneName = 'default' | 'ack-every';

export const PHONES: Readonly<Record<PhoneName, Partial<FaultKnobs>>> = {
  default: {},
  'ack-every': { ackEveryPacket: true, maxPacket: 16384, window: 131072 },
};

export function isPhoneName(name: string): name is PhoneName {
  return name === 'default' || name === 'ack-every';
}
