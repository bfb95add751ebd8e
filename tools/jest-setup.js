// Loaded by every jest run (jest.preset.js). Property tests explore with a fresh random seed
// on a developer's machine; in CI (CI=true) they replay one fixed seed, so a CI run is
// repeatable and a red run can be reproduced (NETFENCE_FC_SEED picks another seed).
if (process.env.CI) {
  try {
    require('fast-check').configureGlobal({ seed: Number(process.env.NETFENCE_FC_SEED ?? 20261122) });
  } catch {
    /* a package without fast-check */
  }
}
