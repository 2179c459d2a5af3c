import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ServerApi } from '../../src/engine/server-api.ts';
import { inviteFromLink, type JournalEntry, type NamespaceId } from '../../src/protocol/index.ts';
import { E2eHarness, randomBuffer, sha256, type TestServer } from './harness.ts';
import { createWorkspace } from './ui.ts';

/**
 * A folder dropped on the page the way a user drops one: Chromium's own drag and drop of a
 * real directory (DevTools `Input.dispatchDragEvent` with its path), which hands the page a
 * `FileSystemDirectoryHandle` the sync worker walks itself. Checked on the server's journal:
 * every file at its path with the blocks of its bytes, nothing else.
 */

const MiB = 1024 * 1024;
const BLOCK = 4 * MiB;

let harness: E2eHarness;
let server: TestServer;

beforeAll(async () => {
  harness = await E2eHarness.start();
  server = await harness.startServer();
});

afterAll(async () => {
  await harness?.close();
});

/** Drops `paths` (files or folders on this machine) on the page, as the OS would. */
async function dropFromDisk(page: Page, paths: string[]): Promise<void> {
  const cdp = await page.context().newCDPSession(page);
  const data = { items: [], files: paths, dragOperationsMask: 1 };
  for (const type of ['dragEnter', 'dragOver', 'drop'] as const) {
    await cdp.send('Input.dispatchDragEvent', { type, x: 200, y: 200, data });
  }
  await cdp.detach();
}

function blocksOf(bytes: Buffer): string[] {
  const blocks: string[] = [];
  for (let at = 0; at < bytes.length; at += BLOCK) blocks.push(sha256(bytes.subarray(at, at + BLOCK)));
  return blocks;
}

async function liveFiles(api: ServerApi, ns: NamespaceId): Promise<Map<string, JournalEntry>> {
  const live = new Map<string, JournalEntry>();
  let cursor = 0;
  for (;;) {
    const page = await api.readJournal(ns, cursor);
    for (const entry of page.entries) {
      if (entry.deleted) live.delete(entry.path);
      else live.set(entry.path, entry);
    }
    cursor = page.cursor;
    if (!page.more) return live;
  }
}

async function uploadTotals(page: Page): Promise<{ files: number; done: number; failed: number; counting: boolean; text: string }> {
  const totals = page.getByTestId('upload-totals');
  return {
    files: Number(await totals.getAttribute('data-files')),
    done: Number(await totals.getAttribute('data-done-files')),
    failed: Number(await totals.getAttribute('data-failed-files')),
    counting: (await totals.getAttribute('data-counting')) === 'true',
    text: (await totals.textContent()) ?? '',
  };
}

describe('a dropped folder is walked by the sync worker', () => {
  test('2,600 files in nested folders, a large file and an empty one arrive byte-exact; a name with a control character never reaches the server', { timeout: 240_000 }, async () => {
    const tree: Record<string, Buffer> = {};
    for (let i = 0; i < 2_600; i++) {
      // More files than the walk may run ahead of the queue (two batches): the walk must resume.
      tree[`part-${i % 7}/sub-${i % 3}/file-${i}.txt`] = Buffer.from(`file ${i} `.repeat(1 + (i % 40)));
    }
    tree['media/clip.bin'] = randomBuffer(9 * MiB + 17);
    tree['media/empty.txt'] = Buffer.alloc(0);
    tree['naïve café.md'] = Buffer.from('unicode name\n');
    tree['bell\u0007.txt'] = Buffer.from('control character in the name\n');
    const folder = await harness.writeTempTree('dropped', tree);

    const page = await (await harness.newBrowser()).newPage();
    page.on('pageerror', (error) => console.error('page error:', error.message));
    const { shareLink, namespaceId } = await createWorkspace(page, server.origin, 'Folder drop');
    await dropFromDisk(page, [folder]);

    // Chromium's directory listing leaves out a name with a control character; the worker
    // would refuse it anyway (parseFilePath), so it must not reach the server either way.
    const expectedFiles = Object.keys(tree).length - 1;
    await page.waitForFunction(
      (expected) => {
        const totals = document.querySelector('[data-testid="upload-totals"]');
        const done = Number(totals?.getAttribute('data-done-files'));
        const failed = Number(totals?.getAttribute('data-failed-files'));
        return totals?.getAttribute('data-counting') === 'false' && done + failed >= expected;
      },
      expectedFiles,
      { timeout: 60_000, polling: 250 },
    ).catch(async (error: unknown) => {
      throw new Error(`the uploads did not finish: ${JSON.stringify(await uploadTotals(page))}`, { cause: error });
    });
    const totals = await uploadTotals(page);
    expect(totals).toMatchObject({ files: expectedFiles, done: expectedFiles, failed: 0, counting: false });
    expect(totals.text).toMatch(/^2,603 of 2,603 files uploaded · 9\.9 MB of 9\.9 MB sent$/);

    const api = new ServerApi(server.origin, (await new ServerApi(server.origin).join(inviteFromLink(shareLink)!)).token);
    const live = await liveFiles(api, namespaceId as NamespaceId);
    const expected = Object.entries(tree).filter(([path]) => !path.includes('\u0007'));
    expect(live.size).toBe(expected.length);
    for (const [path, bytes] of expected) {
      const entry = live.get(`dropped/${path.normalize('NFC')}`);
      expect(entry, path).toBeDefined();
      expect(entry!.size).toBe(bytes.length);
      expect(entry!.blocks).toEqual(blocksOf(bytes));
    }
  });
});
