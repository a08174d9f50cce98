/**
 * The notification proxy (`com.apple.mobile.insecure_notification_proxy`, reached through lockdown
 * StartService): hosts observe notification names, the phone relays them.
 *
 * Framing like lockdown: 4-byte BIG-endian length + plist (XML or binary in, XML out).
 *
 *   [ OPEN ] --{Command:ObserveNotification, Name}--> [ OPEN ] (name observed)
 *      |  the phone relays an observed name: {Command:RelayNotification, Name}
 *      |  --{Command:Shutdown}--> {Command:ProxyDeath}, then close --> [ CLOSED ]
 *      |  unparseable / oversized frame, ObserveNotification without a string Name --> RST [ CLOSED ]
 *
 * PostNotification and unknown commands are ignored, like a phone that does not relay for hosts.
 */
import type { PlistObject } from 'plist';
import { frameLockdownMessage } from './lockdown.js';
import { LockdownFrameReader } from './lockdown-frames.js';
import type { Pairing } from './pairing.js';
import type { Service, ServiceConnection } from './service.js';

interface ProxyConnection {
  readonly reader: LockdownFrameReader;
  readonly observed: Set<string>;
  readonly unsubscribe: () => void;
}

function send(conn: ServiceConnection, message: PlistObject): void {
  if (conn.open) conn.write(frameLockdownMessage(message));
}

export function createNotificationProxyService(pairing: Pairing): Service {
  const connections = new WeakMap<ServiceConnection, ProxyConnection>();
  const end = (conn: ServiceConnection): void => {
    connections.get(conn)?.unsubscribe();
    connections.delete(conn);
  };
  const onMessage = (conn: ServiceConnection, state: ProxyConnection, message: Record<string, unknown>): void => {
    const command = message['Command'];
    const name = message['Name'];
    if (command === 'ObserveNotification') {
      if (typeof name !== 'string') {
        end(conn);
        conn.close();
        return;
      }
      state.observed.add(name);
    } else if (command === 'Shutdown') {
      send(conn, { Command: 'ProxyDeath' });
      end(conn);
      conn.close();
    }
  };
  return {
    name: 'notification_proxy',
    onOpen(conn) {
      const observed = new Set<string>();
      const unsubscribe = pairing.observe((name) => {
        if (!observed.has(name) || !conn.open) return false;
        send(conn, { Command: 'RelayNotification', Name: name });
        return true;
      });
      const state: ProxyConnection = {
        observed,
        unsubscribe,
        reader: new LockdownFrameReader({
          onMessage: (message) => {
            onMessage(conn, state, message);
          },
          onBad: () => {
            end(conn);
            conn.close();
          },
        }),
      };
      connections.set(conn, state);
    },
    onData(conn, data) {
      connections.get(conn)?.reader.push(data);
    },
    onClose(conn) {
      end(conn);
    },
  };
}
