import { defineConfig } from 'vitest/config';

// Tiers (docs/architecture.md §3.9): unit tests sit next to the code they prove (src/**/*.test.ts);
// component and integration tests under test/; interop (real Debian clients, reference daemon), netns
// (network namespaces) and usb (node-usb's real libusb under umockdev) have their own projects so they
// can run alone.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['src/**/*.test.ts', 'test/component/**/*.test.ts', 'test/integration/**/*.test.ts', 'test/cli/**/*.test.ts', 'test/soak/**/*.test.ts'],
          testTimeout: 30_000,
          hookTimeout: 30_000,
        },
      },
      {
        test: {
          name: 'interop',
          include: ['test/interop/**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 60_000,
          fileParallelism: false,
        },
      },
      {
        // network namespaces and veth pairs made by the tests themselves (root, iproute2; skipped
        // with the reason otherwise): phones and hosts in separate namespaces, real multicast.
        test: {
          name: 'netns',
          include: ['test/netns/**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 60_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: 'usb',
          include: ['test/usb/**/*.test.ts'],
          testTimeout: 180_000,
          hookTimeout: 60_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
