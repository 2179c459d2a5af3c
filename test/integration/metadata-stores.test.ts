import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_BLOCKS_PER_FILE, type BlockHash, type CommitRequest, type FilePath, type NamespaceId } from '../../src/protocol/index.ts';
import { silentLogger } from '../../src/server/log.ts';
import { PAGE_BLOCK_BUDGET, type MetadataStore } from '../../src/server/storage/metadata-store.ts';
import { PgMetadataStore } from '../../src/server/storage/pg-metadata-store.ts';
import { parsePostgresUrl } from '../../src/server/storage/pg-target.ts';
import { SqliteMetadataStore } from '../../src/server/storage/sqlite-metadata-store.ts';
import { createTestSchema, type TestSchema } from '../support/pg-test-db.ts';

/**
 * The MetadataStore contract, checked on each implementation directly: what the HTTP suite
 * cannot reach cheaply (page block budget, rollbacks, concurrent invite rotation).
 */

interface OpenedStore {
  store: MetadataStore;
  /** PostgreSQL only: the schema, to look at how rows are stored. */
  schema?: TestSchema;
  teardown(): Promise<void>;
}

const STORES: Array<{ name: string; open(): Promise<OpenedStore> }> = [
  {
    name: 'sqlite',
    async open() {
      const dir = await mkdtemp(join(tmpdir(), 'nearsync-store-'));
      const store = SqliteMetadataStore.open(dir);
      return { store, teardown: async () => (await store.close(), await rm(dir, { recursive: true, force: true })) };
    },
  },
  {
    name: 'postgres',
    async open() {
      const schema = await createTestSchema('store');
      const store = await PgMetadataStore.open(parsePostgresUrl(schema.databaseUrl), silentLogger);
      return { store, schema, teardown: async () => (await store.close(), await schema.drop()) };
    },
  },
];

const hex = (bytes: Buffer) => bytes.toString('hex');
const sha = (text: string) => createHash('sha256').update(text).digest('hex');
let counter = 0;
const newNamespace = () => `ns${String(++counter).padStart(4, '0')}${randomBytes(12).toString('base64url')}`.slice(0, 22) as NamespaceId;

function randomHashes(count: number): BlockHash[] {
  const bytes = randomBytes(32 * count);
  return Array.from({ length: count }, (_, i) => hex(bytes.subarray(i * 32, (i + 1) * 32)) as BlockHash);
}

function fileCommit(path: string, blocks: BlockHash[]): CommitRequest {
  return { path: path as FilePath, size: blocks.length, mtime: 1, blocks, deleted: false };
}

describe.each(STORES)('$name metadata store', ({ open }) => {
  let opened: OpenedStore;
  let store: MetadataStore;
  beforeAll(async () => {
    opened = await open();
    store = opened.store;
  });
  afterAll(async () => {
    await opened?.teardown();
  });

  async function workspace(): Promise<NamespaceId> {
    const ns = newNamespace();
    await store.createWorkspace({ namespaceId: ns, name: 'W', tokenHash: sha(`${ns}-token`), inviteHash: sha(`${ns}-invite`) });
    return ns;
  }

  it('cuts journal pages at the block budget, never below one entry', async () => {
    const ns = await workspace();
    const perEntry = MAX_BLOCKS_PER_FILE;
    const fit = Math.floor(PAGE_BLOCK_BUDGET / perEntry);
    expect(fit).toBeGreaterThanOrEqual(1);
    const committed = [];
    for (let i = 0; i < fit + 1; i++) {
      // The budget counts hashes, repeats included; a few distinct ones keep the test light.
      const distinct = randomHashes(4);
      const blocks = Array.from({ length: perEntry }, (_, j) => distinct[j % distinct.length]);
      committed.push(blocks);
      expect(await store.commit(ns, fileCommit(`big/${i}`, blocks))).toEqual({ ok: true, sjid: i + 1 });
    }
    const first = await store.readJournal(ns, 0, 1000);
    expect(first.entries.map((e) => e.sjid)).toEqual(Array.from({ length: fit }, (_, i) => i + 1));
    expect(first.more).toBe(true);
    expect(first.entries[0].blocks).toEqual(committed[0]);
    const rest = await store.readJournal(ns, fit, 1000);
    expect(rest.entries.map((e) => e.sjid)).toEqual([fit + 1]);
    expect(rest.more).toBe(false);
    expect(rest.entries[0].blocks).toEqual(committed[fit]);
    // The limit still applies first, and `more` is false at the end.
    expect((await store.readJournal(ns, 0, 1)).entries.map((e) => e.sjid)).toEqual([1]);
    expect(await store.readJournal(ns, fit + 1, 10)).toEqual({ entries: [], more: false });
  });

  it('commits a batch in order with consecutive sjids, applying each element after the ones before it', async () => {
    const ns = await workspace();
    const remove = (path: string): CommitRequest => ({ path: path as FilePath, size: 0, mtime: 2, blocks: [], deleted: true });
    const shared = randomHashes(1)[0];
    const [x, y] = randomHashes(2);
    expect(await store.commit(ns, fileCommit('old', [x]))).toEqual({ ok: true, sjid: 1 });
    const batch = [fileCommit('a', [shared]), fileCommit('a', [shared, y]), remove('a'), fileCommit('a', [x]), remove('old'), fileCommit('b', [shared])];
    expect(await store.commitBatch(ns, batch)).toEqual({ ok: true, sjids: [2, 3, 4, 5, 6, 7] });
    const entries = (await store.readJournal(ns, 0, 100)).entries;
    expect(entries.map((e) => [e.sjid, e.path, e.deleted, e.blocks.length])).toEqual([
      [1, 'old', false, 1],
      [2, 'a', false, 1],
      [3, 'a', false, 2],
      [4, 'a', true, 0],
      [5, 'a', false, 1],
      [6, 'old', true, 0],
      [7, 'b', false, 1],
    ]);
    expect(await store.headSjid(ns)).toBe(7);
    // The live table followed the last element per path: 'a' is live (sjid 5), 'old' is not.
    expect(await store.commitBatch(ns, [remove('a'), remove('b')])).toEqual({ ok: true, sjids: [8, 9] });
    expect(await store.commitBatch(ns, [remove('old')])).toEqual({ ok: false, reason: 'not_live', index: 0 });
    expect(await store.namespaceReferencedBlocks(ns, [y, randomHashes(1)[0], shared, x])).toEqual(new Set([y, shared, x]));
    expect(await store.namespaceReferencedBlocks(ns, [])).toEqual(new Set());
  });

  it('stores nothing of a batch whose deletion finds its path not live, even after earlier elements', async () => {
    const ns = await workspace();
    const remove = (path: string): CommitRequest => ({ path: path as FilePath, size: 0, mtime: 2, blocks: [], deleted: true });
    const [x] = randomHashes(1);
    expect(await store.commit(ns, fileCommit('p', [x]))).toEqual({ ok: true, sjid: 1 });
    const fresh = randomHashes(1)[0];
    const result = await store.commitBatch(ns, [fileCommit('q', [fresh]), remove('p'), remove('p')]);
    expect(result).toEqual({ ok: false, reason: 'not_live', index: 2 });
    expect(await store.headSjid(ns)).toBe(1);
    expect((await store.readJournal(ns, 0, 10)).entries.map((e) => e.path)).toEqual(['p']);
    expect(await store.namespaceReferencesBlock(ns, fresh)).toBe(false);
    // 'p' is still live: deleting it once works.
    expect(await store.commitBatch(ns, [remove('p')])).toEqual({ ok: true, sjids: [2] });
    expect(await store.commitBatch(newNamespace(), [fileCommit('x', [])])).toEqual({ ok: false, reason: 'no_namespace' });
  });

  it('rolls back a deletion of a path that is not live, and an unknown namespace', async () => {
    const ns = await workspace();
    const blocks = randomHashes(2);
    expect(await store.commit(ns, fileCommit('a', blocks))).toEqual({ ok: true, sjid: 1 });
    const remove = (path: string): CommitRequest => ({ path: path as FilePath, size: 0, mtime: 2, blocks: [], deleted: true });
    expect(await store.commit(ns, remove('never'))).toEqual({ ok: false, reason: 'not_live' });
    expect(await store.headSjid(ns)).toBe(1);
    expect((await store.getWorkspace(ns))?.head).toBe(1);
    expect(await store.commit(ns, remove('a'))).toEqual({ ok: true, sjid: 2 });
    expect(await store.commit(ns, remove('a'))).toEqual({ ok: false, reason: 'not_live' });
    expect((await store.readJournal(ns, 0, 10)).entries.map((e) => [e.sjid, e.path, e.deleted])).toEqual([
      [1, 'a', false],
      [2, 'a', true],
    ]);
    // Blocks stay referenced after the delete.
    expect(await store.namespaceReferencesBlock(ns, blocks[1])).toBe(true);
    expect(await store.namespaceReferencesBlock(ns, randomHashes(1)[0])).toBe(false);

    const unknown = newNamespace();
    expect(await store.commit(unknown, fileCommit('x', []))).toEqual({ ok: false, reason: 'no_namespace' });
    expect(await store.headSjid(unknown)).toBe(0);
    expect(await store.getWorkspace(unknown)).toBeNull();
  });

  it('leaves exactly one live invite after concurrent rotations', async () => {
    const ns = await workspace();
    const invites = Array.from({ length: 8 }, (_, i) => sha(`${ns}-rotated-${i}`));
    await Promise.all(invites.map((invite) => store.rotateInvite(ns, invite)));
    const joined = await Promise.all([sha(`${ns}-invite`), ...invites].map((invite, i) => store.joinByInviteHash(invite, sha(`${ns}-joiner-${i}`))));
    expect(joined.filter((w) => w !== null)).toEqual([{ namespaceId: ns, name: 'W', head: 0 }]);
  });

  it('authenticates member tokens by hash only', async () => {
    const ns = await workspace();
    expect(await store.authenticate(sha(`${ns}-token`))).toEqual({ namespaceId: ns });
    expect(await store.authenticate(sha(`${ns}-other`))).toBeNull();
    const member = await store.joinByInviteHash(sha(`${ns}-invite`), sha(`${ns}-joiner`));
    expect(member).toEqual({ namespaceId: ns, name: 'W', head: 0 });
    expect(await store.authenticate(sha(`${ns}-joiner`))).toEqual({ namespaceId: ns });
  });
});

describe('PostgreSQL metadata store rows', () => {
  let opened: OpenedStore;
  beforeAll(async () => {
    opened = await STORES.find((s) => s.name === 'postgres')!.open();
  });
  afterAll(async () => {
    await opened?.teardown();
  });

  it('stores hashes as 32-byte bytea', async () => {
    const ns = newNamespace();
    const { store, schema } = opened;
    await store.createWorkspace({ namespaceId: ns, name: 'W', tokenHash: sha(`${ns}-token`), inviteHash: sha(`${ns}-invite`) });
    await store.commit(ns, fileCommit('f', randomHashes(3)));
    const [row] = await schema!.query<{ token: number; invite: number; block: number; blocks: number }>(
      `SELECT (SELECT octet_length(token_hash) FROM members WHERE ns = $1 LIMIT 1) AS token,
              (SELECT octet_length(invite_hash) FROM invites WHERE ns = $1 LIMIT 1) AS invite,
              (SELECT octet_length(hash) FROM ns_blocks WHERE ns = $1 LIMIT 1) AS block,
              (SELECT octet_length(blocks) FROM journal WHERE ns = $1 LIMIT 1) AS blocks`,
      [ns],
    );
    expect(row).toEqual({ token: 32, invite: 32, block: 32, blocks: 96 });
  });
});
