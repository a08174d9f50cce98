/**
 * The phone's installation proxy (`com.apple.mobile.installation_proxy`): which apps are
 * installed. Framing as in lockdown (4-byte big-endian length + plist; XML or binary in, XML out).
 *
 * Commands (each in `{Command, ClientOptions}`), answered in turn on one connection:
 *
 *   Browse   → pages {Status: BrowsingApplications, CurrentIndex, CurrentAmount, CurrentList,
 *              Total}, `pageSize` apps each, then {Status: Complete} (ideviceinstaller -l,
 *              go-ios apps, tidevice applist read pages until Complete)
 *   Lookup   → {LookupResult: {bundle id: attributes}, Status: Complete} (pymobiledevice3 apps list)
 *   Uninstall ApplicationIdentifier → {Status: RemovingApplication, PercentComplete: 50}, then
 *              {Status: Complete}; an unknown app: {Error: APIInternalError}
 *   anything else → {Error: UnknownCommand}
 *
 * ClientOptions honoured: ApplicationType (User, System, Any; Filesharing = apps with
 * UIFileSharingEnabled; Hidden and Internal match nothing), BundleIDs, ReturnAttributes.
 * A frame that is not a plist dictionary closes the connection. No state machine: every request
 * is answered at once.
 */
import type { PlistObject, PlistValue } from 'plist';
import { frameLockdownMessage } from '../lockdown.js';
import { LockdownFrameReader } from '../lockdown-frames.js';
import type { Service, ServiceConnection } from '../service.js';

export const INSTALLATION_PROXY_SERVICE = 'com.apple.mobile.installation_proxy';

export type AppInfo = Readonly<Record<string, PlistValue>> & {
  readonly CFBundleIdentifier: string;
  readonly ApplicationType: 'User' | 'System';
};

function app(type: 'User' | 'System', id: string, name: string, executable: string, version: string, uuid: string, extra: Record<string, PlistValue> = {}): AppInfo {
  const bundle = type === 'System' ? `/Applications/${executable}.app` : `/private/var/containers/Bundle/Application/${uuid}/${executable}.app`;
  return {
    ApplicationType: type,
    CFBundleIdentifier: id,
    CFBundleDisplayName: name,
    CFBundleName: name,
    CFBundleExecutable: executable,
    CFBundleShortVersionString: version,
    CFBundleVersion: version,
    CFBundlePackageType: 'APPL',
    CFBundleSupportedPlatforms: ['iPhoneOS'],
    MinimumOSVersion: '15.0',
    UIDeviceFamily: [1],
    Path: bundle,
    Container: `/private/var/mobile/Containers/Data/Application/${uuid}`,
    UIFileSharingEnabled: false,
    IsAppClip: false,
    Entitlements: { 'application-identifier': `ABCDE12345.${id}` },
    EnvironmentVariables: { HOME: `/private/var/mobile/Containers/Data/Application/${uuid}`, TMPDIR: `/private/var/mobile/Containers/Data/Application/${uuid}/tmp` },
    StaticDiskUsage: 4_096_000,
    DynamicDiskUsage: 128_000,
    ...extra,
  };
}

/** The apps of the virtual phone: three of Apple's, three of the "user". */
export function defaultApps(): AppInfo[] {
  return [
    app('System', 'com.apple.mobilesafari', 'Safari', 'MobileSafari', '17.5', 'A0000000-0000-4000-8000-000000000001'),
    app('System', 'com.apple.Preferences', 'Settings', 'Preferences', '1.0', 'A0000000-0000-4000-8000-000000000002'),
    app('System', 'com.apple.mobileslideshow', 'Photos', 'MobileSlideShow', '1.0', 'A0000000-0000-4000-8000-000000000003'),
    app('User', 'com.example.virtual.hello', 'Hello', 'Hello', '1.2.3', 'B0000000-0000-4000-8000-000000000001'),
    app('User', 'com.example.virtual.files', 'Files Demo', 'FilesDemo', '2.0', 'B0000000-0000-4000-8000-000000000002', { UIFileSharingEnabled: true }),
    app('User', 'com.facebook.WebDriverAgentRunner.xctrunner', 'WebDriverAgentRunner-Runner', 'WebDriverAgentRunner-Runner', '1.0', 'B0000000-0000-4000-8000-000000000003', {
      CFBundleName: 'WebDriverAgentRunner-Runner',
    }),
  ];
}

export interface InstallationProxyOptions {
  /** The installed apps (the list is owned by the service: Uninstall removes from it). */
  readonly apps?: AppInfo[];
  /** Apps per Browse page. Default 2, so any Browse of the default apps takes several pages. */
  readonly pageSize?: number;
}

export interface InstallationProxy extends Service {
  readonly apps: AppInfo[];
  readonly stats: { requests: number; badFrames: number };
}

function stringList(value: unknown): string[] | undefined {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : undefined;
}

function matchesType(info: AppInfo, type: unknown): boolean {
  switch (type) {
    case undefined:
    case 'Any':
    case '':
      return true;
    case 'User':
    case 'System':
      return info.ApplicationType === type;
    case 'Filesharing':
      return info['UIFileSharingEnabled'] === true;
    default:
      return false; // Hidden, Internal and unknown types: this phone has none
  }
}

export function createInstallationProxy(options: InstallationProxyOptions = {}): InstallationProxy {
  const apps = options.apps ?? defaultApps();
  const pageSize = Math.max(1, options.pageSize ?? 2);
  const stats = { requests: 0, badFrames: 0 };
  const readers = new WeakMap<ServiceConnection, LockdownFrameReader>();

  const matching = (clientOptions: Record<string, unknown>): AppInfo[] => {
    const ids = stringList(clientOptions['BundleIDs']);
    return apps.filter((info) => matchesType(info, clientOptions['ApplicationType']) && (ids === undefined || ids.includes(info.CFBundleIdentifier)));
  };

  /** The attributes a client asked for (all of them when it named none). */
  const project = (info: AppInfo, clientOptions: Record<string, unknown>): PlistObject => {
    const attributes = stringList(clientOptions['ReturnAttributes']);
    if (attributes === undefined) return { ...info };
    const picked: Record<string, PlistValue> = {};
    for (const key of attributes) {
      const value = info[key];
      if (value !== undefined) picked[key] = value;
    }
    return picked;
  };

  const answer = (conn: ServiceConnection, request: Record<string, unknown>): void => {
    stats.requests++;
    const send = (message: PlistObject): void => {
      if (conn.open) conn.write(frameLockdownMessage(message));
    };
    const raw = request['ClientOptions'];
    const clientOptions = raw !== null && typeof raw === 'object' && !Array.isArray(raw) && !Buffer.isBuffer(raw) && !(raw instanceof Date) ? (raw as Record<string, unknown>) : {};
    switch (request['Command']) {
      case 'Browse': {
        const list = matching(clientOptions).map((info) => project(info, clientOptions));
        for (let index = 0; index < list.length; index += pageSize) {
          const page = list.slice(index, index + pageSize);
          send({ Status: 'BrowsingApplications', CurrentIndex: index, CurrentAmount: page.length, CurrentList: page, Total: list.length });
        }
        send({ Status: 'Complete' });
        return;
      }
      case 'Lookup': {
        const result: Record<string, PlistValue> = {};
        for (const info of matching(clientOptions)) result[info.CFBundleIdentifier] = project(info, clientOptions);
        send({ LookupResult: result, Status: 'Complete' });
        return;
      }
      case 'Uninstall': {
        const id = request['ApplicationIdentifier'];
        const at = apps.findIndex((info) => info.CFBundleIdentifier === id);
        if (at < 0) {
          send({ Error: 'APIInternalError', ErrorDescription: `no app ${typeof id === 'string' ? id : '(none)'} is installed` });
          return;
        }
        apps.splice(at, 1);
        send({ Status: 'RemovingApplication', PercentComplete: 50 });
        send({ Status: 'Complete' });
        return;
      }
      default:
        send({ Error: 'UnknownCommand', ErrorDescription: 'the virtual phone answers Browse, Lookup and Uninstall' });
    }
  };

  return {
    name: 'installation_proxy',
    apps,
    stats,
    onOpen(conn) {
      readers.set(
        conn,
        new LockdownFrameReader({
          onMessage: (message) => {
            answer(conn, message);
          },
          onBad: () => {
            stats.badFrames++;
            conn.close();
          },
        }),
      );
    },
    onData(conn, data) {
      readers.get(conn)?.push(data);
    },
    onClose(conn) {
      readers.get(conn)?.detach();
      readers.delete(conn);
    },
  };
}
