import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DaemonPool } from '../support/lan-daemon.ts';
import { until } from '../support/until.ts';

/**
 * A hostile server: a real HTTP server on loopback that speaks the journal API and serves
 * one page mixing honest entries with paths built to escape the folder or clobber another
 * entry. The daemon must write the honest ones and nothing anywhere else.
 */

const NS = 'hostileNamespace0001';
const TOKEN = randomBytes(32).toString('base64url');
const INVITE = randomBytes(16).toString('base64url');

interface Entry {
  path: unknown;
  content: string;
  badHash?: boolean;
}

let scratch: string;
let root: string;
let dir: string;
let outside: string;
let server: Server;
let url: string;
const daemons = new DaemonPool();
const blocks = new Map<string, Buffer>();
const journal: object[] = [];

function hash(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function addEntries(entries: Entry[]): void {
  for (const entry of entries) {
    const bytes = Buffer.from(entry.content);
    blocks.set(hash(bytes), bytes);
    journal.push({
      sjid: journal.length + 1,
      path: entry.path,
      size: bytes.length,
      mtime: 1_700_000_000_000,
      blocks: [entry.badHash ? 'not-a-hash' : hash(bytes)],
      deleted: false,
    });
  }
}

function json(res: import('node:http').ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'nearsync-hostile-'));
  root = join(scratch, 'root');
  dir = join(root, 'folder');
  outside = join(root, 'outside');
  await mkdir(dir, { recursive: true });
  await mkdir(outside);
  // A symlinked directory in the folder pointing out of it, and a local name in NFD form.
  await symlink(outside, join(dir, 'link'));
  await writeFile(join(dir, 'cafe\u0301.txt'), 'local NFD name\n');

  addEntries([
    { path: 'ok.txt', content: 'honest 1\n' },
    { path: '../escape-dotdot.txt', content: 'escape\n' },
    { path: join(root, 'escape-absolute.txt'), content: 'escape\n' },
    { path: 'a/../../escape-inner.txt', content: 'escape\n' },
    { path: '..\\escape-backslash.txt', content: 'escape\n' },
    { path: 'link/escape-symlink.txt', content: 'escape\n' },
    { path: 'Readme.md', content: 'readme, first spelling\n' },
    { path: 'README.md', content: 'readme, second spelling\n' },
    { path: 'caf\u00e9.txt', content: 'NFC twin of a local NFD name\n' },
    { path: 'nfd-e\u0301.txt', content: 'NFD path in the journal\n' },
    { path: '.nearsync-tmp-planted', content: 'reserved name\n' },
    { path: 'bad-hash.txt', content: 'bad hash\n', badHash: true },
    { path: 42, content: 'not a string\n' },
    { path: 'dir/ok2.txt', content: 'honest 2\n' },
  ]);

  server = createServer((req, res) => {
    const target = new URL(req.url ?? '/', 'http://x');
    const authorised = req.headers.authorization === `Bearer ${TOKEN}`;
    if (req.method === 'POST' && target.pathname === '/api/v1/join') {
      req.resume();
      return json(res, 200, { namespaceId: NS, name: 'hostile', token: TOKEN });
    }
    if (!authorised) return json(res, 401, { error: 'unauthorized', message: 'no' });
    if (req.method === 'GET' && target.pathname === `/api/v1/ns/${NS}`) {
      return json(res, 200, { namespaceId: NS, name: 'hostile', cursor: journal.length });
    }
    if (req.method === 'GET' && target.pathname === `/api/v1/ns/${NS}/journal`) {
      const cursor = Number(target.searchParams.get('cursor') ?? '0');
      if (cursor >= journal.length) {
        // A long poll with nothing new: answer empty after a moment.
        setTimeout(() => json(res, 200, { entries: [], cursor, more: false }), 300);
        return;
      }
      return json(res, 200, { entries: journal.slice(cursor), cursor: journal.length, more: false });
    }
    const block = /^\/api\/v1\/blocks\/([0-9a-f]{64})$/.exec(target.pathname);
    if (req.method === 'GET' && block && blocks.has(block[1])) {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      return res.end(blocks.get(block[1]));
    }
    req.resume();
    json(res, 404, { error: 'not_found', message: `${req.method} ${target.pathname}` });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await daemons.stopAll();
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  await rm(scratch, { recursive: true, force: true });
});

async function allFiles(base: string, prefix = ''): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(base, { withFileTypes: true })) {
    const relative = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) found.push(...(await allFiles(join(base, entry.name), relative)));
    else found.push(relative);
  }
  return found;
}

describe('nearsync peer against a hostile journal', () => {
  it('writes the honest entries of a page and nothing outside the folder or over another entry', async () => {
    const daemon = daemons.start({ server: url, invite: `${url}/w/${NS}#invite=${INVITE}`, dir });
    await daemon.waitFor(/wrote dir\/ok2\.txt/);
    // Refused by the protocol validator while reading the page (the rest of the page still applies).
    for (const sjid of [2, 3, 4, 5, 10, 12, 13]) await daemon.waitFor(new RegExp(`refused journal entry ${sjid} `));
    // Refused by the folder checks.
    await daemon.waitFor(/refused "link\/escape-symlink\.txt" from the journal: parent link is a symlink/);
    await daemon.waitFor(/refused "README\.md" from the journal: .*differs only by case/);
    await daemon.waitFor(/refused "caf\u00e9\.txt" from the journal: .*differs only by case or Unicode form/);
    await daemon.waitFor(/refused journal entry 11 |refused "\.nearsync-tmp-planted"/);

    expect(await readFile(join(dir, 'ok.txt'), 'utf8')).toBe('honest 1\n');
    expect(await readFile(join(dir, 'dir/ok2.txt'), 'utf8')).toBe('honest 2\n');
    expect(await readFile(join(dir, 'Readme.md'), 'utf8')).toBe('readme, first spelling\n');
    expect(await readFile(join(dir, 'cafe\u0301.txt'), 'utf8')).toBe('local NFD name\n');
    expect((await allFiles(dir)).sort()).toEqual(['Readme.md', 'cafe\u0301.txt', 'dir/ok2.txt', 'link', 'ok.txt'].sort());
    expect(await readdir(outside)).toEqual([]);
    expect((await readdir(root)).sort()).toEqual(['folder', 'folder.nearsync', 'outside']);
    expect((await allFiles(scratch)).filter((name) => name.includes('escape'))).toEqual([]);
    // The local scan that names the NFD file runs after the journal pass, so wait for its line.
    await daemon.waitFor(/not synced: "cafe\\u0301\.txt"|not synced: "cafe\u0301\.txt"/);
    expect(daemon.running).toBe(true);
  });
});
