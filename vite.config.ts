import { defineConfig } from 'vite';

// The web app: index.html at the top, UI in src/app, the sync worker in workers/.
export default defineConfig({
  root: '.',
  publicDir: 'public',
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022', sourcemap: true },
  worker: { format: 'es' },
  server: {
    proxy: {
      // `npm run dev` starts the API on API_PORT (default 8081) and Vite in front of it.
      '/api': { target: `http://127.0.0.1:${process.env.API_PORT ?? '8081'}`, changeOrigin: false },
      '/socket.io': { target: `http://127.0.0.1:${process.env.API_PORT ?? '8081'}`, ws: true },
    },
  },
});
