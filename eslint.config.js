// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// What no deployed file (functions/, cdk/) may import: dev tooling and test support.
const DEPLOYED_CODE = [
  { regex: '^#local/|(^|/)local/', message: 'Deployed code must not import local/ (dev tooling): move what it needs into functions/.' },
  { regex: '^#testing/|(^|/)testing/', message: 'Deployed code must not import testing/ (test support).' },
];

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
  {
    // The house runs one way: what is deployed (functions/, cdk/) never imports dev tooling
    // (local/) or test support (testing/); the replica side never imports the publisher side.
    files: ['functions/**/*.ts', 'cdk/**/*.ts'],
    ignores: ['**/*.test.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            ...DEPLOYED_CODE,
          ],
        },
      ],
    },
  },
  {
    files: ['functions/core/replica/**/*.ts', 'functions/applier/**/*.ts'],
    ignores: ['**/*.test.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            ...DEPLOYED_CODE,
            { regex: '^#core/source|/source/|^pg-copy-streams$|/publisher/|^#ops/|/ops/', message: 'The applier side must not import the publisher side (core/source, publisher/, pg-copy-streams) or operator tools (ops/).' },
          ],
        },
      ],
    },
  },
  {
    files: ['functions/core/source/**/*.ts', 'functions/publisher/**/*.ts'],
    ignores: ['**/*.test.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            ...DEPLOYED_CODE,
            { regex: '^#core/replica|/replica/|/applier/|^#ops/|/ops/', message: 'The publisher side must not import the applier side (core/replica, applier/) or operator tools (ops/).' },
          ],
        },
      ],
    },
  },
);
