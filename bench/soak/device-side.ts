/**
 * Device side, through the umockdev testbed: the real daemon (USB on, node-usb under the testbed's
 * preload) drives an emulated iPhone that lives in this process (bridge.ts), so its hostile
 * helpers and fault knobs can be called directly.
 *
 * - hostile packets: garbage, truncated, length mismatch, wrong magic, unknown protocol, unknown
 *   port, SYN|ACK for a connection never opened, RST storms, data beyond the window (on a victim
 *   tunnel), while a listener and an echo tunnel keep working;
 * - a device that stops ACKing: the client keeps writing, the tunnel stalls, daemon RSS stays flat;
 * - FIN instead of RST: the client sees the tunnel close before its full count;
 * - unplug/replug cycles while a tunnel carries data: the tunnel delivers everything or is closed
 *   early (never a silent truncation), the log says why; every 10th replug the phone never answers
 *   VERSION, and the daemon neither lists it nor stalls.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { startUsbTestbed } from '../../test/support/usb-testbed.js';
import type { UsbTestbed } from '../../test/support/usb-testbed.js';
import { InProcessBridge } from './bridge.js';
import { checkNoCrashInLog } from './client-fuzz.js';
import { check, checkLeaks, listDeviceIds, MemorySeries, newRow, repoRoot, SoakDaemon, sleep } from './harness.js';
import type { Row, SoakScale } from './harness.js';
import { EchoHeartbeat, EchoTunnel, ListenerProbe } from './monitors.js';

interface Rig {
  testbed: UsbTestbed;
  bridge: InProcessBridge;
  daemon: SoakDaemon;
  deviceId: number;
}

/**
 * test/support/usb-testbed.ts finds testbed.py relative to its own file; compiled into dist-bench
 * (npm run soak) that is dist-bench/test/usb-emulation, so point it at the source tree.
 */
function linkTestbedScript(): void {
  const compiled = join(repoRoot, 'dist-bench', 'test', 'usb-emulation');
  if (import.meta.url.includes('/dist-bench/') && !existsSync(compiled)) symlinkSync(join(repoRoot, 'test', 'usb-emulation'), compiled);
}

async function startRig(): Promise<Rig> {
  linkTestbedScript();
  const testbed = await startUsbTestbed();
  const bridge = await InProcessBridge.attach(testbed.devSock);
  const daemon = await SoakDaemon.start({ usb: true, virtualDevices: 0, waitDevices: 1, env: testbed.env });
  const [deviceId = 1] = await daemon.waitDevices(1, 15_000);
  return { testbed, bridge, daemon, deviceId };
}

async function stopRig(rig: Rig | undefined): Promise<void> {
  if (rig === undefined) return;
  await rig.daemon.stop();
  rig.bridge.close();
  await rig.testbed.stop();
}

export async function hostileDeviceScenario(scale: SoakScale): Promise<Row> {
  const row = newRow('device: hostile packets');
  const target = scale.pick(100_000, 10_000, 1_500);
  const budgetMs = scale.budget(180_000, 30_000, 12_000);
  let rig: Rig | undefined;
  try {
    rig = await startRig();
    const { daemon, bridge, deviceId } = rig;
    const phone = bridge.phone;
    const listener = await ListenerProbe.open(daemon.socketPath);
    const tunnel = await EchoTunnel.open(daemon.socketPath, deviceId);
    check(row, await tunnel.roundTrip(), 'echo before');
    await daemon.sampleBefore(row);
    const heartbeat = new EchoHeartbeat(tunnel, 200, 4096, 15_000);
    const deadline = Date.now() + budgetMs;
    let victimsReset = 0;
    let round = 0;
    while (phone.stats.hostileOut < target && Date.now() < deadline && daemon.alive) {
      const h = phone.hostile;
      switch (round++ % 10) {
        case 0: h.garbage(20); break;
        case 1: h.truncated(); break;
        case 2: h.wrongMagic(); break;
        case 3: h.unknownProtocol(); h.unknownProtocol(0xffffffff); break;
        case 4: h.unknownPort(4000 + (round % 100), 4242); break;
        case 5: h.synAckForUnopened(5000 + (round % 100), 62078); break;
        case 6: h.rstStorm(50, 62078, 1 + (round % 60000)); break;
        case 7: { // data beyond our window on a victim tunnel of its own
          if (round % 50 !== 7) break;
          const victim = await EchoTunnel.open(daemon.socketPath, deviceId).catch(() => undefined);
          const conn = phone.openConnections.at(-1);
          if (victim !== undefined && conn !== undefined) {
            // The victim never reads; the phone keeps sending past whatever window the host advertised.
            victim.socket.pause();
            for (let k = 0; k < 40; k++) h.dataBeyondWindow(4096, conn);
            await sleep(50);
            if (victim.closed) victimsReset++;
            victim.close();
          }
          break;
        }
        default: h.garbage(5);
      }
      // The testbed completes IN URBs at its own pace: keep the queue short so bystander replies are not stuck behind it.
      while (bridge.backlog > 64 * 1024) await sleep(2);
    }
    await sleep(500);
    await heartbeat.stop();
    row.inputs = phone.stats.hostileOut;
    check(row, daemon.alive, 'daemon alive');
    check(row, heartbeat.failures === 0 && heartbeat.rounds > 0, `echo heartbeat: ${heartbeat.failures} of ${heartbeat.rounds} failed`);
    check(row, await tunnel.roundTrip(65536), 'echo 64 KiB after');
    check(row, listener.open && listener.detachedCount() === 0, 'listener open, no Detached');
    check(row, (await listDeviceIds(daemon.socketPath)).length === 1, 'device still listed');
    row.bytesSent = tunnel.sent;
    row.bytesDelivered = tunnel.delivered;
    row.notes.push(`${row.inputs} hostile packets in ${round} rounds; ${victimsReset} victim tunnels reset after data beyond the window; ${heartbeat.rounds} echo heartbeats`);
    tunnel.close();
    await listener.close();
    await sleep(300);
    await daemon.sampleAfter(row);
    checkLeaks(row);
    checkNoCrashInLog(row, daemon.logs());
  } catch (err) {
    row.failures.push(`threw: ${err instanceof Error ? err.message.slice(0, 300) : String(err)}`);
  } finally {
    if (rig && !rig.daemon.alive) row.crashes = Math.max(row.crashes, 1);
    await stopRig(rig);
  }
  return row;
}

/**
 * A transfer whose mux length claims more bytes than it holds. Before the short-transfer rule in
 * src/mux/packet-decoder.ts the lie swallowed the start of the NEXT transfer, so a bystander
 * tunnel lost data silently and stalled (30 of 30 in the long run); now the lying packet is
 * dropped with its own short transfer and the bystander's echo arrives intact.
 */
export async function lengthLiesScenario(scale: SoakScale): Promise<Row> {
  const row = newRow('device: length field lies');
  const count = scale.pick(30, 10, 5);
  let rig: Rig | undefined;
  try {
    rig = await startRig();
    const { daemon, bridge, deviceId } = rig;
    await daemon.sampleBefore(row);
    let stalled = 0;
    for (let n = 0; n < count; n++) {
      const tunnel = await EchoTunnel.open(daemon.socketPath, deviceId);
      bridge.phone.hostile.lengthMismatch(100);
      row.inputs++;
      if (!(await tunnel.roundTrip(4096, 2000)) && !tunnel.closed) stalled++;
      row.bytesSent += tunnel.sent;
      row.bytesDelivered += tunnel.delivered;
      tunnel.close();
    }
    check(row, stalled === 0, `${stalled} of ${count} bystander tunnels stalled silently after a length lie (data swallowed, no reset)`);
    await sleep(300);
    await daemon.sampleAfter(row);
    checkLeaks(row);
    checkNoCrashInLog(row, daemon.logs());
  } catch (err) {
    row.failures.push(`threw: ${err instanceof Error ? err.message.slice(0, 300) : String(err)}`);
  } finally {
    if (rig && !rig.daemon.alive) row.crashes = Math.max(row.crashes, 1);
    await stopRig(rig);
  }
  return row;
}

export async function stalledDeviceScenario(scale: SoakScale): Promise<Row> {
  const row = newRow('device: stops ACKing, FIN not RST');
  const writeMs = scale.pick(30_000, 8_000, 4_000);
  let rig: Rig | undefined;
  try {
    rig = await startRig();
    const { daemon, bridge, deviceId } = rig;
    const tunnel = await EchoTunnel.open(daemon.socketPath, deviceId);
    check(row, await tunnel.roundTrip(), 'echo before');
    await daemon.sampleBefore(row);
    // Stop ACKing; the client writes as fast as its socket accepts for writeMs.
    bridge.phone.faults.withholdAcks = true;
    const chunk = randomBytes(65536);
    let written = 0;
    const until = Date.now() + writeMs;
    while (Date.now() < until) {
      if (tunnel.socket.writableLength < 4 * 1024 * 1024) {
        tunnel.socket.write(chunk);
        written += chunk.length;
      }
      await sleep(5);
    }
    const rssStalled = daemon.rssKiB();
    row.inputs = written;
    // Host side may hold at most a bounded amount: the device window plus the socket buffers.
    check(row, rssStalled - row.rssBeforeKiB < 48 * 1024, `RSS grew ${rssStalled - row.rssBeforeKiB} KiB while the device withheld ACKs`);
    check(row, tunnel.socket.writableLength > 0, 'the client\'s writes stalled (back-pressure reached the client)');
    row.notes.push(`device withheld ACKs for ${writeMs / 1000} s: client queued ${written} bytes, ${tunnel.socket.writableLength} still unsent in the client; daemon RSS ${row.rssBeforeKiB}→${rssStalled} KiB`);
    tunnel.close();
    bridge.phone.faults.withholdAcks = false;
    // FIN instead of RST: the phone ends the connection after 20000 bytes with FIN|ACK.
    bridge.phone.faults.finInsteadOfRst = true;
    bridge.phone.faults.rstAfterBytes = 20000;
    const fin = await EchoTunnel.open(daemon.socketPath, deviceId);
    const ok = await fin.roundTrip(65536, 5000);
    check(row, !ok && fin.closed, `FIN mid-stream: the client saw close before its 65536 bytes (ok=${ok}, closed=${fin.closed})`);
    row.bytesSent = tunnel.sent + fin.sent;
    row.bytesDelivered = tunnel.delivered + fin.delivered;
    row.notes.push(`FIN after 20000 bytes: client closed=${fin.closed}, round trip reported ${ok ? 'success' : 'failure'}`);
    fin.close();
    bridge.phone.faults.finInsteadOfRst = false;
    bridge.phone.faults.rstAfterBytes = 0;
    await sleep(1000);
    check(row, (await listDeviceIds(daemon.socketPath)).length === 1, 'device still listed');
    await daemon.sampleAfter(row);
    checkLeaks(row);
    checkNoCrashInLog(row, daemon.logs());
  } catch (err) {
    row.failures.push(`threw: ${err instanceof Error ? err.message.slice(0, 300) : String(err)}`);
  } finally {
    if (rig && !rig.daemon.alive) row.crashes = Math.max(row.crashes, 1);
    await stopRig(rig);
  }
  return row;
}

export async function replugScenario(scale: SoakScale): Promise<Row> {
  const row = newRow('unplug/replug with data');
  const cycles = scale.pick(1000, 30, 10);
  const budgetMs = scale.budget(240_000, 40_000, 20_000);
  let rig: Rig | undefined;
  let truncatedAsSuccess = 0;
  /** Tunnels the daemon closed only after the 3 s round-trip timeout (cycle, delay past it). */
  const lateCloses: string[] = [];
  let reset = 0;
  let complete = 0;
  let silentVersion = 0;
  try {
    rig = await startRig();
    const { daemon, testbed } = rig;
    let deviceId = rig.deviceId;
    let bridge = rig.bridge;
    // Warm up one cycle before sampling, so lazily created handles are not counted as leaks.
    const deadline = Date.now() + budgetMs;
    const series = new MemorySeries(daemon, Math.max(1, Math.round(cycles / 10)));
    for (let n = 0; n <= cycles && Date.now() < deadline && daemon.alive; n++) {
      if (n === 1) await daemon.sampleBefore(row);
      await series.at(n);
      const tunnel = await EchoTunnel.open(daemon.socketPath, deviceId);
      // Stream 1 MiB in 16 KiB round trips and unplug part-way.
      const total = 1024 * 1024;
      const stream = (async () => {
        let ok = true;
        while (ok && tunnel.delivered < total) ok = await tunnel.roundTrip(16384, 3000);
        return ok && tunnel.delivered === total;
      })();
      await sleep(5 + (n % 7) * 10);
      await testbed.unplug();
      const success = await stream;
      row.bytesSent += tunnel.sent;
      row.bytesDelivered += tunnel.delivered;
      if (success) complete++;
      else if (tunnel.closed) reset++;
      else {
        // The round trip timed out with the tunnel still open: a close that is only late (a loaded
        // machine) is a reset, no close at all is the silent truncation this row looks for.
        const waitFrom = Date.now();
        const closedNow = (): boolean => tunnel.closed;
        while (!closedNow() && Date.now() - waitFrom < 15_000) await sleep(20);
        if (closedNow()) {
          reset++;
          lateCloses.push(`cycle ${n}: +${Date.now() - waitFrom} ms`);
        } else truncatedAsSuccess++;
      }
      tunnel.close();
      bridge.close();
      row.inputs++;
      await testbed.add();
      if (n % 10 === 5) {
        // VERSION never answered: not listed, and the daemon stays responsive.
        const mute = await InProcessBridge.attach(testbed.devSock, { faults: { noVersionReply: true } });
        await sleep(800);
        const t = Date.now();
        const ids = await listDeviceIds(daemon.socketPath);
        check(row, ids.length === 0 && Date.now() - t < 1000, `a phone that never answers VERSION is not listed (${ids.length}) and ListDevices is fast`);
        silentVersion++;
        await testbed.unplug();
        mute.close();
        await testbed.add();
      }
      bridge = await InProcessBridge.attach(testbed.devSock);
      [deviceId = deviceId] = await daemon.waitDevices(1, 15_000);
    }
    rig.bridge = bridge;
    check(row, truncatedAsSuccess === 0, `${truncatedAsSuccess} tunnels ended neither complete nor closed`);
    check(row, /detach|unplug|removed|gone/i.test(daemon.logs()), 'the log says the device went away');
    row.notes.push(`${row.inputs} cycles: ${complete} tunnels complete, ${reset} closed early by the daemon, ${truncatedAsSuccess} silent truncations; ${silentVersion} replugs with VERSION never answered`);
    if (lateCloses.length > 0) row.notes.push(`closed only after the 3 s round-trip timeout (counted as closed): ${lateCloses.join(', ')}`);
    await sleep(500);
    await daemon.sampleAfter(row);
    await series.at(row.inputs, true);
    series.note(row);
    checkLeaks(row);
    checkNoCrashInLog(row, daemon.logs());
  } catch (err) {
    row.failures.push(`threw: ${err instanceof Error ? err.message.slice(0, 300) : String(err)}`);
  } finally {
    if (rig && !rig.daemon.alive) row.crashes = Math.max(row.crashes, 1);
    await stopRig(rig);
  }
  return row;
}
