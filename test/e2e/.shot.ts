import { E2eHarness, randomBuffer } from './harness.ts';
import { createWorkspace, uploadThroughPicker, waitForUploadsDone, joinWithLink } from './ui.ts';
const h = await E2eHarness.start();
try {
  const s = await h.startServer({ egressBytesPerSecond: 4 * 1024 * 1024 });
  const ctx = await h.newBrowser();
  const page = await ctx.newPage();
  page.on('console', (m) => console.log('console', m.type(), m.text()));
  await page.setViewportSize({ width: 1200, height: 800 });
  await page.goto(s.origin + '/');
  await page.waitForTimeout(500);
  await page.screenshot({ path: '/tmp/shots/home-empty.png', fullPage: true });
  const { namespaceId, shareLink } = await createWorkspace(page, s.origin, 'Design team');
  await page.waitForTimeout(300);
  await page.screenshot({ path: '/tmp/shots/ws-empty.png', fullPage: true });
  const files = [
    await h.writeTempFile('report.pdf', randomBuffer(9_000_000)),
    await h.writeTempFile('notes.txt', Buffer.from('hello')),
  ];
  await uploadThroughPicker(page, files);
  await page.waitForTimeout(150);
  await page.screenshot({ path: '/tmp/shots/ws-uploading.png', fullPage: true });
  await waitForUploadsDone(page, ['report.pdf', 'notes.txt']);
  await page.getByTestId('folder-input').setInputFiles([]).catch(() => {});
  await page.screenshot({ path: '/tmp/shots/ws-files.png', fullPage: true });
  const pb = await (await h.newBrowser()).newPage();
  await pb.setViewportSize({ width: 1200, height: 800 });
  await joinWithLink(pb, shareLink, namespaceId);
  await pb.waitForTimeout(700);
  await pb.screenshot({ path: '/tmp/shots/b-syncing.png', fullPage: true });
  await pb.setViewportSize({ width: 400, height: 800 });
  await pb.waitForTimeout(2500);
  await pb.screenshot({ path: '/tmp/shots/b-mobile.png', fullPage: true });
  await page.goto(s.origin + '/');
  await page.waitForTimeout(300);
  await page.screenshot({ path: '/tmp/shots/home-list.png', fullPage: true });
  await page.goto(s.origin + '/#invite=AAAAAAAAAAAAAAAAAAAAAA');
  await page.getByTestId('join-error').waitFor();
  await page.screenshot({ path: '/tmp/shots/join-error.png', fullPage: true });
} finally { await h.close(); }
