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
    // mux knows nothing of sockets, files, USB or the layers above it.
    files: ['src/mux/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: [...nodeBuiltinsIo.map((name) => ({ name, message: 'src/mux must not do I/O: inject it.' })), { name: 'usb', message: 'src/mux must not import usb.' }],
        patterns: [{ group: ['../server/*', '../usb/*', '../pairrecords/*', '../emulator/*', '../main.js', '../cli/*'], message: 'src/mux sits below server, usb, pairrecords and emulator.' }],
      }],
    },
  },
  {
    // the server never knows USB exists.
    files: ['src/server/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: [{ name: 'usb', message: 'src/server must not import usb.' }],
        patterns: [{ group: ['../usb/*', '../emulator/*', '../mux/*', '!../mux/index.js'], message: 'src/server sees only mux/index.js, never usb or the emulator.' }],
      }],
    },
  },
  {
    files: ['src/pairrecords/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: [{ name: 'usb', message: 'pairrecords is plain files.' }],
        patterns: [{ group: ['../usb/*', '../mux/*', '../server/*', '../emulator/*'], message: 'pairrecords imports plist, errors and log only.' }],
      }],
    },
  },
  {
    // the emulator depends only on its own codec (an independent check of mux/wire.ts) and the Transport port.
    files: ['src/emulator/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: [{ name: 'usb', message: 'the emulator plays the phone, not the host.' }],
        patterns: [{ group: ['../mux/*', '!../mux/transport.js', '!../mux/api.js', '../server/*', '../usb/*', '../pairrecords/*'], message: 'the emulator may import only the mux contracts (transport.js, api.js) from the host side.' }],
      }],
    },
  },
  {
    // preflight is a sibling of the server: it talks to lockdownd through the mux API, never
    // through our own socket, and never touches USB or the emulator (its tests may use the emulator).
    files: ['src/preflight/**/*.ts'],
    ignores: ['src/preflight/**/*.test.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: [{ name: 'usb', message: 'preflight must not import usb.' }, { name: 'node:net', message: 'preflight reaches the device through the mux API, not a socket.' }],
        patterns: [{ group: ['../usb/*', '../emulator/*', '../server/*', '../mux/*', '!../mux/index.js', '../main.js', '../cli/*', '../daemon/*'], message: 'preflight sees mux/index.js, pairrecords, plist, errors and log only.' }],
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
