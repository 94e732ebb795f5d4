/** @type {import('jest').Config} */
module.exports = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  roots: ['<rootDir>/properties'],
  testMatch: ['**/*.test.ts'],
  // Transpile only (isolatedModules in tsconfig): `npm test` type-checks the whole tree first.
  transform: { '^.+\\.ts$': ['ts-jest', {}] },
  testTimeout: 120000,
  maxWorkers: 2,
};
