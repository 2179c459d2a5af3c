import { defineConfig } from 'vite';

// The web app: index.html at the top, UI in src/app, the sync worker in workers/, and the
// service worker built to /sw.js (a fixed name at the top: its scope must cover /w/).
export default defineConfig({
  root: '.',
  publicDir: 'public',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: true,
    rollupOptions: {
      input: { index: 'index.html', sw: 'workers/service-worker.ts' },
      output: { entryFileNames: (chunk) => (chunk.name === 'sw' ? 'sw.js' : 'assets/[name]-[hash].js') },
    },
  },
  worker: { format: 'es' },
  server: {
    proxy: {
      // `npm run dev` starts the API on API_PORT (default 8081) and Vite in front of it.
      '/api': { target: `http://127.0.0.1:${process.env.API_PORT ?? '8081'}`, changeOrigin: false },
      '/socket.io': { target: `http://127.0.0.1:${process.env.API_PORT ?? '8081'}`, ws: true },
    },
  },
});
