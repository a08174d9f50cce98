// Lint: typescript-eslint strict-type-checked plus the import boundaries of docs/architecture.md §3.3.
import tseslint from 'typescript-eslint';

const nodeBuiltinsIo = ['node:net', 'net', 'node:fs', 'fs', 'node:fs/promises', 'fs/promises', 'node:dgram', 'dgram'];

export default tseslint.config(
  { ignores: ['dist/**', 'dist-*/**', 'node_modules/**', 'coverage/**', '.ci/**'] },
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
        patterns: [{ group: ['../usb/*', '../emulator/*', '../mux/*', '../preflight/*', '../devices/*', '!../devices/index.js'], message: 'src/server sees only devices/index.js of the device side: never mux, usb, the emulator or preflight.' }],
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
    // preflight is a sibling of the server: it talks to lockdownd through the device directory,
    // never through our own socket, and never touches a transport (its tests may use the emulator).
    files: ['src/preflight/**/*.ts'],
    ignores: ['src/preflight/**/*.test.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: [{ name: 'usb', message: 'preflight must not import usb.' }, { name: 'node:net', message: 'preflight reaches the device through the directory, not a socket.' }],
        patterns: [{ group: ['../usb/*', '../emulator/*', '../server/*', '../mux/*', '../devices/*', '!../devices/index.js', '../main.js', '../cli/*', '../daemon/*'], message: 'preflight sees devices/index.js, pairrecords, plist, errors and log only.' }],
      }],
    },
  },
  {
    // network devices (Wi-Fi iPhones): mDNS discovery, identity, NetworkAddress. A provider of
    // devices beside usb: it may use sockets (node:dgram, multicast-dns), os, crypto, the device
    // contracts, plist, errors and log; never a layer above it or another transport.
    files: ['src/network/**/*.ts'],
    ignores: ['src/network/**/*.test.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: [{ name: 'usb', message: 'src/network does not touch USB.' }],
        patterns: [{ group: ['../server/*', '../usb/*', '../mux/*', '../preflight/*', '../emulator/*', '../daemon/*', '../cli/*', '../main.js'], message: 'src/network may import devices, pairrecords, plist, errors and log only.' }],
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
