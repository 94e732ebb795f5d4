/** @type {import('jest').Config} */
module.exports = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  roots: ['<rootDir>/properties'],
  testMatch: ['**/*.test.ts'],
  // ts-jest type-checks each file in isolation; `npm run typecheck` checks the whole tree.
  transform: { '^.+\\.ts$': ['ts-jest', { isolatedModules: true }] },
  testTimeout: 120000,
  maxWorkers: 2,
};
