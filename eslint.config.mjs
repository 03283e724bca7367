import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["**/dist/**", "**/node_modules/**", "packages/proto/src/gen/**", "**/testdata/**", "coverage/**", ".devcarry/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ["**/*.ts"],
    ignores: ["vitest.config.ts"],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-misused-promises": ["error", { checksVoidReturn: { arguments: false } }],
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/only-throw-error": "error",
      "@typescript-eslint/switch-exhaustiveness-check": "error",
      "no-console": "off",
    },
  },
  {
    // House rule 2: core is pure — no I/O, no clock, no transport or metrics libraries.
    files: ["packages/core/src/**/*.ts", "packages/spec/src/**/*.ts"],
    ignores: ["**/*.test.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            { group: ["node:*", "fs", "path", "os", "child_process", "net", "http"], message: "core/spec do no I/O" },
            { group: ["pg", "@grpc/*", "prom-client", "@electric-sql/*", "drizzle-orm", "drizzle-orm/*", "pino"], message: "core/spec depend on nothing with I/O" },
          ],
        },
      ],
      "no-restricted-syntax": [
        "error",
        { selector: "NewExpression[callee.name='Date'][arguments.length=0]", message: "inject a Clock" },
        { selector: "CallExpression[callee.object.name='Date'][callee.property.name='now']", message: "inject a Clock" },
      ],
      "no-restricted-properties": ["error", { object: "Math", property: "random", message: "inject randomness" }],
    },
  },
  {
    files: ["**/*.mjs", "**/*.js", "vitest.config.ts"],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    files: ["**/*.mjs", "**/*.js"],
    languageOptions: { globals: { process: "readonly", console: "readonly", URL: "readonly" } },
  },
);
