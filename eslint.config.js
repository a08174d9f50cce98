// Lint: typescript-eslint strict-type-checked plus the import boundaries of docs/architecture.md §3.3.
import tseslint from 'typescript-eslint';

const nodeBuiltinsIo = ['node:net', 'net', 'node:fs', 'fs', 'node:fs/promises', 'fs/promises', 'node:dgram', 'dgram'];

export default tseslint.config(
  { ignores: ['dist/**', 'dist-*/**', 'node_modules/**', 'coverage/**', '.ci/**', '.venv-clients/**', 'scripts/clients/node_modules/**'] },
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: { allowDefaultProject: ['eslint.config.js', 'bench/*.js'] }, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'error',
      'no-restricted-imports': ['error', {
        patterns: [{ regex: '^(?!node:)(assert|buffer|child_process|crypto|dgram|events|fs|fs/promises|net|os|path|process|stream|timers|url|util|zlib|worker_threads|readline|tty|dns|http|https)$', message: 'Use the node: protocol for built-in modules.' }],
      }],
    },
  },
  {
    // the device directory: contracts and the DeviceID set, no I/O, nothing of the layers that
    // provide devices (mux, usb, emulator) or use them (server, preflight).
    files: ['src/devices/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: [...nodeBuiltinsIo.map((name) => ({ name, message: 'src/devices must not do I/O.' })), { name: 'usb', message: 'src/devices must not import usb.' }],
        patterns: [{ group: ['../mux/*', '../usb/*', '../server/*', '../preflight/*', '../pairrecords/*', '../emulator/*', '../plist/*', '../daemon/*', '../cli/*', '../main.js'], message: 'src/devices sits below every layer; it imports only errors and log.' }],
      }],
    },
  },
  {
    // mux knows the mux protocol and nothing of sockets, files, USB or the layers above it; it
    // implements the device directory's contracts (src/devices).
    files: ['src/mux/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: [...nodeBuiltinsIo.map((name) => ({ name, message: 'src/mux must not do I/O: inject it.' })), { name: 'usb', message: 'src/mux must not import usb.' }],
        patterns: [{ group: ['../server/*', '../usb/*', '../pairrecords/*', '../emulator/*', '../preflight/*', '../plist/*', '../daemon/*', '../main.js', '../cli/*'], message: 'src/mux sits below server, preflight, usb, pairrecords and emulator; above it only src/devices.' }],
      }],
    },
  },
  {
    // the server reaches devices through the directory, never through a transport.
    files: ['src/server/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: [{ name: 'usb', message: 'src/server must not import usb.' }],
        patterns: [{ group: ['../usb/*', '../emulator/*', '../mux/*', '../network/*', '../lockdown/*', '../preflight/*', '../devices/*', '!../devices/index.js'], message: 'src/server sees only devices/index.js of the device side: never mux, network, usb, the emulator, lockdown or preflight.' }],
      }],
    },
  },
  {
    // plist is a leaf codec (bytes ⇄ values): no I/O, nothing of the layers that use it.
    files: ['src/plist/**/*.ts'],
    ignores: ['src/plist/**/*.test.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: [...nodeBuiltinsIo.map((name) => ({ name, message: 'src/plist must not do I/O.' })), { name: 'usb', message: 'src/plist is a codec.' }],
        patterns: [{ group: ['../*', '!../errors.js'], message: 'src/plist is a leaf: it imports only errors.js of ours.' }],
      }],
    },
  },
  {
    files: ['src/pairrecords/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: [{ name: 'usb', message: 'pairrecords is plain files.' }],
        patterns: [{ group: ['../usb/*', '../mux/*', '../devices/*', '../server/*', '../emulator/*', '../preflight/*'], message: 'pairrecords imports plist, errors and log only.' }],
      }],
    },
  },
  {
    // usb implements the mux Transport and describes the devices it finds; nothing above.
    files: ['src/usb/**/*.ts'],
    ignores: ['src/usb/**/*.test.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [{ group: ['../mux/*', '!../mux/transport.js', '../devices/*', '!../devices/api.js', '../server/*', '../preflight/*', '../pairrecords/*', '../emulator/*', '../main.js'], message: 'src/usb may import only the Transport port (mux/transport.js) and the device contracts (devices/api.js).' }],
      }],
    },
  },
  {
    // the emulator plays the phone: it keeps its own codec (an independent check of mux/wire.ts)
    // and knows the host only through the Transport port and the device contracts.
    files: ['src/emulator/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: [{ name: 'usb', message: 'the emulator plays the phone, not the host.' }],
        patterns: [{ group: ['../mux/*', '!../mux/transport.js', '../devices/*', '!../devices/api.js', '../server/*', '../usb/*', '../pairrecords/*', '../preflight/*'], message: 'the emulator may import only the host contracts (mux/transport.js, devices/api.js).' }],
      }],
    },
  },
  {
    // network devices are a device provider like mux: they find phones (mDNS), prove them with
    // lockdown sessions and hold their heartbeats; nothing of the server, USB or the emulator.
    files: ['src/network/**/*.ts'],
    ignores: ['src/network/**/*.test.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: [{ name: 'usb', message: 'network devices do not touch USB.' }],
        patterns: [{ group: ['../usb/*', '../emulator/*', '../server/*', '../mux/*', '../preflight/*', '../devices/*', '!../devices/index.js', '../lockdown/*', '!../lockdown/index.js', '../pairrecords/*', '!../pairrecords/index.js', '../main.js', '../cli/*', '../daemon/*'], message: 'src/network sees devices/index.js, lockdown/index.js, pairrecords/index.js, plist, errors and log only.' }],
      }],
    },
  },
  {
    // lockdown speaks to a device's services over any byte stream (a mux connection, a TCP socket):
    // below preflight and the network provider, above the device contracts.
    files: ['src/lockdown/**/*.ts'],
    ignores: ['src/lockdown/**/*.test.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: [{ name: 'usb', message: 'lockdown must not import usb.' }],
        patterns: [{ group: ['../usb/*', '../emulator/*', '../server/*', '../mux/*', '../preflight/*', '../pairrecords/*', '../devices/*', '!../devices/index.js', '../main.js', '../cli/*', '../daemon/*'], message: 'lockdown sees devices/index.js, plist, errors and log only.' }],
      }],
    },
  },
  {
    // preflight is a sibling of the server: it talks to lockdownd through the device directory,
    // never through our own socket, and never touches a transport (its tests may use the emulator).
    files: ['src/preflight/**/*.ts'],
    ignores: ['src/preflight/**/*.test.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: [{ name: 'usb', message: 'preflight must not import usb.' }, { name: 'node:net', message: 'preflight reaches the device through the directory, not a socket.' }],
        patterns: [{ group: ['../usb/*', '../emulator/*', '../server/*', '../mux/*', '../devices/*', '!../devices/index.js', '../lockdown/*', '!../lockdown/index.js', '../main.js', '../cli/*', '../daemon/*'], message: 'preflight sees devices/index.js, lockdown/index.js, pairrecords, plist, errors and log only.' }],
      }],
    },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts', 'bench/**/*.js', '**/*.test.ts'],
    rules: {
      'no-console': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
  { files: ['eslint.config.js', 'bench/*.js'], ...tseslint.configs.disableTypeChecked },
);
