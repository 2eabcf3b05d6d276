// ESLint for the sidebar's TypeScript: the recommended rules of ESLint and
// typescript-eslint, React's hooks rules, and nothing that prettier decides.
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import reactHooks from 'eslint-plugin-react-hooks';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['lib/', 'node_modules/', '../jupyter_edge/labextension/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['src/**/*.{ts,tsx}', 'test/**/*.ts'],
    plugins: { 'react-hooks': reactHooks },
    rules: {
      ...reactHooks.configs.recommended.rules,
      '@typescript-eslint/no-unused-vars': ['error', { args: 'none' }],
      // JupyterLab's convention: command ids in one `CommandIDs` namespace.
      '@typescript-eslint/no-namespace': 'off',
      eqeqeq: 'error',
      curly: 'error'
    }
  },
  prettier
);
