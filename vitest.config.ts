import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // the engine uses every core for one computation; two files at a time fill a 2-core machine
    maxWorkers: 2,
  },
});
