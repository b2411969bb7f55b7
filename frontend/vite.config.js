// Vite config for the store. In development the API goes through the running gateway
// (payctl up), which adds the store merchant's key: the browser never holds an API key.
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

export default defineConfig({
  plugins: [react()],
  server: {
    proxy: { '/store-api': process.env.PAYCTL_GATEWAY ?? 'http://127.0.0.1:8080' },
  },
  test: { include: ['src/**/*.test.js'] },
});
