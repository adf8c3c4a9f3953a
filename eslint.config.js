// Lint rules the type checker cannot hold, checked by `npm run lint`. Only promise handling for now: a promise
// nobody awaits loses its rejection (an unhandled rejection ends the process) and its ordering.
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

export default defineConfig(
  { ignores: ['.hermetic/'] },
  {
    files: ['**/*.ts', '**/*.js'],
    languageOptions: {
      parser: tseslint.parser,
      parserOptions: {
        // tsconfig.json for the TypeScript; the launcher in bin/ is plain JavaScript outside it.
        projectService: { allowDefaultProject: ['bin/*.js', 'eslint.config.js', '.dependency-cruiser.js'] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    plugins: { '@typescript-eslint': tseslint.plugin },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          // node:test's describe/it return a promise the runner itself awaits and reports.
          allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite'] }],
        },
      ],
      '@typescript-eslint/no-misused-promises': 'error',
    },
  },
);
