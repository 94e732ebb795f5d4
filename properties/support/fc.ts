import fc from 'fast-check';

/**
 * fast-check parameters from the environment: VHDX_SEED fixes the seed, VHDX_RUNS scales the
 * run counts (CI keeps the defaults, which are modest). On failure fast-check reports the seed
 * and path; `counterexample` files are written by the property suites that need them.
 */
export function fcParams<T>(defaults: { numRuns: number } & fc.Parameters<T>): fc.Parameters<T> {
  const runs = process.env.VHDX_RUNS ? Math.max(1, Math.round(defaults.numRuns * Number(process.env.VHDX_RUNS))) : defaults.numRuns;
  const seed = process.env.VHDX_SEED ? Number(process.env.VHDX_SEED) : undefined;
  return { ...defaults, numRuns: runs, ...(seed !== undefined ? { seed } : {}) };
}
