// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'cdk.out/', '**/cdk.out/', 'coverage/', 'bench/results/', '.pgdata/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      // A focused or skipped test left behind silently shrinks the suite.
      'no-restricted-properties': [
        'error',
        ...['describe', 'it', 'test', 'suite'].flatMap((object) => [
          { object, property: 'only', message: 'Focused tests must not be committed.' },
          { object, property: 'skip', message: 'Skipped tests must not be committed.' },
          { object, property: 'todo', message: 'Placeholder tests must not be committed.' },
        ]),
      ],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'off',
    },
  },
);
