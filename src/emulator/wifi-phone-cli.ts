#!/usr/bin/env node
/**
 * A standalone emulated iPhone on the network (Wi-Fi), for tests and demos in network namespaces;
 * see src/emulator/network/wifi-phone-main.ts for the options, the control commands and the
 * output. `wifi-phone-cli ctl SOCKET COMMAND` talks to a running one.
 */
import { pino } from 'pino';
import type { Logger } from '../log.js';
import { WIFI_PHONE_USAGE, parseWifiPhoneArgs, runCtl, runWifiPhone } from './network/wifi-phone-main.js';

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  if (argv[0] === 'ctl') return runCtl(argv.slice(1));
  if (argv.includes('-h') || argv.includes('--help')) {
    process.stdout.write(`${WIFI_PHONE_USAGE}\n`);
    return 0;
  }
  const args = parseWifiPhoneArgs(argv);
  if (typeof args === 'string') {
    process.stderr.write(`${args}\n${WIFI_PHONE_USAGE}\n`);
    return 2;
  }
  const log: Logger = pino({ name: 'wifi-phone' }, pino.destination(2));
  return runWifiPhone(args, log);
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`wifi-phone-cli: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 70;
  },
);
