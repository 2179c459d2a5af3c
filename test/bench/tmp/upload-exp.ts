import { randomBytes, createHash } from 'node:crypto';
import { E2eHarness } from '../../e2e/harness.ts';
import { ServerApi } from '../../../src/engine/server-api.ts';
import { MAX_BLOCK_SIZE } from '../../../src/protocol/index.ts';

const MiB = 1024 * 1024;
const size = Number(process.argv[2] ?? 256) * MiB;
const harness = await E2eHarness.start();
const server = await harness.startServer();
const ctx = await harness.newBrowser();
const page = await ctx.newPage();
await page.goto(`${server.origin}/`);
const ws = await new ServerApi(server.origin).createWorkspace('exp');
for (let round = 0; round < 3; round++) {
  for (const mode of ['plain', 'unnamed', 'plain', 'unnamed']) {
    const bytes = randomBytes(size);
    const hashes: string[] = [];
    for (let o = 0; o < size; o += MAX_BLOCK_SIZE) hashes.push(createHash('sha256').update(bytes.subarray(o, o + MAX_BLOCK_SIZE)).digest('hex'));
    const path = await harness.writeTempFile(`exp-${round}-${mode}.bin`, bytes);
    await page.evaluate(() => { document.getElementById('x')?.remove(); const i = document.createElement('input'); i.type = 'file'; i.id = 'x'; document.body.append(i); });
    await page.setInputFiles('#x', path);
    const seconds = await page.evaluate(async ({ origin, token, hashes, bs, mode }) => {
      const file = (document.getElementById('x') as HTMLInputElement).files![0];
      const t0 = performance.now();
      let next = 0;
      await Promise.all(Array.from({ length: 4 }, async () => {
        while (next < hashes.length) {
          const index = next++;
          const slice = file.slice(index * bs, (index + 1) * bs);
          if (mode === 'hash') {
            const buf = await slice.arrayBuffer();
            const h = await crypto.subtle.digest('SHA-256', buf);
            void h;
          }
          const r = await fetch(mode === 'unnamed' ? `${origin}/api/v1/blocks` : `${origin}/api/v1/blocks/${hashes[index]}`, { method: mode === 'unnamed' ? 'POST' : 'PUT', body: slice, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' } });
          if (!r.ok) throw new Error(String(r.status));
        }
      }));
      return (performance.now() - t0) / 1000;
    }, { origin: server.origin, token: ws.token, hashes, bs: MAX_BLOCK_SIZE, mode });
    console.log(JSON.stringify({ round, mode, seconds }));
  }
}
await harness.close();
