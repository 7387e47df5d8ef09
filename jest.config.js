// Tests run against the TypeScript sources through ts-jest; the addon is the one built by
// `npm install` (build/Release). NM_TEST_DEVICE=cuda runs the same suites on the GPU.
/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { isolatedModules: true }] },
  testTimeout: 120000,
};
