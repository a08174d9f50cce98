/**
 * Short versions of the device-side soak scenarios: the real daemon drives the emulated iPhone
 * over node-usb under the umockdev testbed; the phone lives in the test process (bench/soak/bridge.ts)
 * so its hostile helpers and fault knobs can be called.
 */
import { describe, expect, it } from 'vitest';
import { hostileDeviceScenario, lengthLiesScenario, replugScenario, stalledDeviceScenario } from '../../bench/soak/device-side.js';
import { formatTable, scaleFor, verdict } from '../../bench/soak/harness.js';
import type { Row } from '../../bench/soak/harness.js';

const scale = scaleFor('test');

function expectPass(row: Row): void {
  expect(verdict(row), formatTable([row])).toBe('PASS');
  expect(row.inputs).toBeGreaterThan(0);
}

describe('soak (short): device side through the umockdev testbed', () => {
  it('hostile packets (garbage, truncated, bad magic, unknown protocol/port, stray SYN|ACK, RST storms, data past the window): bystanders keep working', async () => {
    const row = await hostileDeviceScenario(scale);
    expectPass(row);
    expect(row.inputs).toBeGreaterThanOrEqual(1000);
  }, 90_000);

  it('a packet whose length field lies is dropped with its transfer; the next tunnel echoes intact (regression: it stalled silently)', async () => {
    expectPass(await lengthLiesScenario(scale));
  });

  it('a device that stops ACKing stalls the tunnel with flat daemon RSS; FIN mid-stream closes the client early', async () => {
    expectPass(await stalledDeviceScenario(scale));
  }, 90_000);

  it('unplug/replug while a tunnel carries data: complete or closed, never a silent truncation; VERSION never answered is not listed', async () => {
    expectPass(await replugScenario(scale));
  }, 90_000);
});
