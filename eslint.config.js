// ESLint for the TypeScript (src/, scripts/, test/) and the few plain JS files (native/build.mjs,
// this file). `npm run lint` runs it; .ci/run fails on any error.
//
// The TypeScript rules use type information (tsconfig.test.json covers src, scripts and test) so
// that the promise rules can see which calls return promises: a floating promise or an async
// callback where a plain one is expected loses its errors silently.
import js from "@eslint/js";
import { defineConfig, globalIgnores } from "eslint/config";
import globals from "globals";
import tseslint from "typescript-eslint";

export default defineConfig(
  globalIgnores(["dist/", "build/", "outputs/", "test/fixtures/", "test/.models/", ".cache/", "**/node_modules/"]),
  {
    files: ["**/*.js", "**/*.mjs"],
    extends: [js.configs.recommended],
    languageOptions: { globals: globals.node },
  },
  {
    files: ["**/*.ts"],
    // eslint:recommended, less the rules TypeScript's checker already does better (no-undef,
    // no-redeclare, ...), plus typescript-eslint's syntax-only recommended set
    extends: [js.configs.recommended, tseslint.configs.recommended],
    languageOptions: {
      parserOptions: { project: "./tsconfig.test.json", tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // `let x; [i, x] = f(i)` reassigns i with x: only a destructuring whose every name could be const is flagged
      "prefer-const": ["error", { destructuring: "all" }],
      // promises: every promise is awaited, returned, or explicitly dropped with `void`
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-misused-promises": "error",
      "@typescript-eslint/await-thenable": "error",
      // an async function without await is how a function promises a Promise-returning contract
      // (a throw becomes a rejection); flagging it would be noise
      "@typescript-eslint/require-await": "off",
      "require-await": "off",
      // unused names are errors, except the ones marked as deliberately unused with a leading _
      "@typescript-eslint/no-unused-vars": [
        "error",
        { argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrorsIgnorePattern: "^_", destructuredArrayIgnorePattern: "^_" },
      ],
    },
  },
);
