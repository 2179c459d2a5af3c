import { randomBytes } from 'node:crypto';
import { E2eHarness } from '../../e2e/harness.ts';
import { createWorkspace, uploadThroughPicker, waitForRole } from '../../e2e/ui.ts';

const MiB = 1024 * 1024;
const size = Number(process.argv[2] ?? 256) * MiB;
const harness = await E2eHarness.start();
const server = await harness.startServer();
for (let round = 0; round < 2; round++) {
  const context = await harness.newBrowser();
  const page = await context.newPage();
  await createWorkspace(page, server.origin, `tl ${round}`);
  await waitForRole(page, 'leader');
  const path = await harness.writeTempFile(`tl-${round}.bin`, randomBytes(size));
  const name = path.split('/').pop()!;
  const events: string[] = [];
  let t0 = 0;
  const at = () => (performance.now() - t0).toFixed(0);
  context.on('request', (r) => { if (t0) events.push(`${at()} > ${r.method()} ${new URL(r.url()).pathname.slice(0, 30)}`); });
  context.on('requestfinished', (r) => { if (t0) events.push(`${at()} < ${r.method()} ${new URL(r.url()).pathname.slice(0, 30)}`); });
  t0 = performance.now();
  await uploadThroughPicker(page, [path]);
  events.push(`${at()} picked`);
  await page.waitForFunction((p) => document.querySelector(`[data-testid="upload-row"][data-path="${p}"]`)?.getAttribute('data-state') === 'done', name, { polling: 'raf', timeout: 300_000 });
  events.push(`${at()} done`);
  const posts = events.filter((e) => e.includes('POST /api/v1/blocks') && !e.includes('missing'));
  console.log(`round ${round}: first ${events.slice(0, 6).join(' | ')}`);
  console.log(`  first unnamed ${posts[0]} | last ${posts.at(-1)} | ${events.filter((e) => /commit|done|knownS|journal/.test(e)).slice(-8).join(' | ')}`);
  await context.close();
}
await harness.close();
