/**
 * The optional services of the emulated iPhone, beyond what the daemon's own work needs (mux
 * echo/discard/source, lockdownd, the notification proxy): what client tools use most.
 *
 *   com.apple.syslog_relay               syslog-relay.ts        idevicesyslog, pymobiledevice3 syslog live, go-ios syslog
 *   com.apple.mobile.heartbeat           ../heartbeat.ts        pymobiledevice3 lockdown heartbeat, Wi-Fi daemons
 *   com.apple.mobile.installation_proxy  installation-proxy.ts  ideviceinstaller -l, go-ios apps, pymobiledevice3 apps list
 *   com.apple.afc                        afc-service.ts         go-ios diskspace/fsync, pymobiledevice3 afc, tidevice fsync
 *   com.apple.crashreportmover           crash-reports.ts       idevicecrashreport (waits for its "ping")
 *   com.apple.crashreportcopymobile      AFC on the crash logs  idevicecrashreport
 *
 * installExtraServices() puts them on a phone: each listens on its own port and is registered in
 * the phone's ServiceCatalog, so lockdown's StartService hands it out. The phone itself never
 * imports this: a phone made without it is the minimal one. Each may be served behind TLS
 * (EnableServiceSSL); by default only the heartbeat is, as phones serve it to Wi-Fi hosts.
 */
import { createHeartbeatService, HEARTBEAT_SERVICE } from '../heartbeat.js';
import type { HeartbeatKnobs, HeartbeatService } from '../heartbeat.js';
import type { Pairing } from '../pairing.js';
import type { ServiceCatalog } from '../service-catalog.js';
import { serveOverTls } from '../service-tls.js';
import type { Service } from '../service.js';
import { AFC_SERVICE, createAfcService } from './afc-service.js';
import type { AfcService } from './afc-service.js';
import { AfcFileSystem } from './afc-fs.js';
import type { AfcFileSystemOptions } from './afc-fs.js';
import { createInstallationProxy, INSTALLATION_PROXY_SERVICE } from './installation-proxy.js';
import type { InstallationProxy, InstallationProxyOptions } from './installation-proxy.js';
import { createSyslogRelay, SYSLOG_RELAY_SERVICE } from './syslog-relay.js';
import { CRASH_REPORT_COPY_SERVICE, CRASH_REPORT_MOVER_SERVICE, createCrashReportMover, crashReportTree } from './crash-reports.js';
import type { SyslogRelay, SyslogRelayOptions } from './syslog-relay.js';

export { createSyslogRelay, formatSyslogLine, syslogTimestamp, visEncode, SYSLOG_RELAY_SERVICE } from './syslog-relay.js';
export type { SyslogRelay, SyslogRelayOptions, SyslogRelayStats, SyslogLevel } from './syslog-relay.js';
export { createInstallationProxy, defaultApps, INSTALLATION_PROXY_SERVICE } from './installation-proxy.js';
export type { AppInfo, InstallationProxy, InstallationProxyOptions } from './installation-proxy.js';
export { createAfcService, AFC_SERVICE, MAX_AFC_HANDLES, MAX_AFC_READ } from './afc-service.js';
export type { AfcService, AfcServiceOptions, AfcStats } from './afc-service.js';
export { AfcFileSystem, DEFAULT_AFC_CAPACITY } from './afc-fs.js';
export type { AfcFileSystemOptions, AfcNode, AfcFile, AfcDir } from './afc-fs.js';
export { createCrashReportMover, crashReportTree, CRASH_REPORT_MOVER_SERVICE, CRASH_REPORT_COPY_SERVICE, CRASH_REPORT_PING } from './crash-reports.js';
export { AfcOp, AfcStatus, AfcPacketReader, AFC_MAGIC, AFC_HEADER, encodeAfcPacket, decodeAfcHeader } from './afc-codec.js';
export type { AfcHeader, AfcPacket } from './afc-codec.js';

/** Fixed ports of the extra services (after the notification proxy's 49152). */
export const SYSLOG_RELAY_PORT = 49_153;
export const HEARTBEAT_PORT = 49_154;
export const INSTALLATION_PROXY_PORT = 49_155;
export const AFC_PORT = 49_156;
export const CRASH_REPORT_MOVER_PORT = 49_157;
export const CRASH_REPORT_COPY_PORT = 49_158;

export type ExtraServiceName = 'syslog' | 'heartbeat' | 'installationProxy' | 'afc' | 'crashReportMover' | 'crashReportCopy';

/** What installExtraServices needs of a phone (EmulatedIPhone has all of it). */
export interface ServiceHost {
  listen(port: number, service: Service): void;
  readonly catalog: ServiceCatalog;
  readonly pairing: Pairing;
}

export interface ExtraServicesOptions {
  readonly syslog?: SyslogRelayOptions;
  readonly heartbeat?: Partial<HeartbeatKnobs>;
  readonly installationProxy?: InstallationProxyOptions;
  readonly afc?: AfcFileSystemOptions & { readonly maxQueuedBytes?: number };
  /** Which services are TLS (EnableServiceSSL). Default: heartbeat only. */
  readonly ssl?: Partial<Record<ExtraServiceName, boolean>>;
  /** Leave some out. */
  readonly exclude?: readonly ExtraServiceName[];
}

/** Handles on the installed services, for tests and users to drive (log a line, look at the tree). */
export interface ExtraServices {
  readonly syslog: SyslogRelay;
  readonly heartbeat: HeartbeatService;
  readonly installationProxy: InstallationProxy;
  readonly afc: AfcService;
  /** AFC on the crash logs (com.apple.crashreportcopymobile). */
  readonly crashReports: AfcService;
}

const DEFAULT_SSL: Readonly<Record<ExtraServiceName, boolean>> = {
  syslog: false,
  heartbeat: true,
  installationProxy: false,
  afc: false,
  crashReportMover: false,
  crashReportCopy: false,
};

export function installExtraServices(phone: ServiceHost, options: ExtraServicesOptions = {}): ExtraServices {
  const services: ExtraServices = {
    syslog: createSyslogRelay(options.syslog),
    heartbeat: createHeartbeatService(options.heartbeat),
    installationProxy: createInstallationProxy(options.installationProxy),
    afc: createAfcService(new AfcFileSystem(options.afc), options.afc),
    crashReports: createAfcService(crashReportTree()),
  };
  const table: readonly (readonly [ExtraServiceName, string, number, Service])[] = [
    ['syslog', SYSLOG_RELAY_SERVICE, SYSLOG_RELAY_PORT, services.syslog],
    ['heartbeat', HEARTBEAT_SERVICE, HEARTBEAT_PORT, services.heartbeat],
    ['installationProxy', INSTALLATION_PROXY_SERVICE, INSTALLATION_PROXY_PORT, services.installationProxy],
    ['afc', AFC_SERVICE, AFC_PORT, services.afc],
    ['crashReportMover', CRASH_REPORT_MOVER_SERVICE, CRASH_REPORT_MOVER_PORT, createCrashReportMover()],
    ['crashReportCopy', CRASH_REPORT_COPY_SERVICE, CRASH_REPORT_COPY_PORT, services.crashReports],
  ];
  for (const [key, name, port, service] of table) {
    if (options.exclude?.includes(key) === true) continue;
    const ssl = options.ssl?.[key] ?? DEFAULT_SSL[key];
    phone.listen(port, ssl ? serveOverTls(service, { pairing: phone.pairing, hostFor: (conn) => phone.catalog.takeHost(conn.port) }) : service);
    phone.catalog.register({ name, port, ssl });
  }
  return services;
}
