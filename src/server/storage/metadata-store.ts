import type { BlockHash, CommitRequest, DeletedFilesResponse, FilePath, HistoryResponse, JournalEntry, NamespaceId, VersionEntry } from '../../protocol/index.ts';
import type { BeforeCommitWrite, GcMetadata } from './gc-metadata.ts';

/**
 * Workspace metadata: workspaces, member tokens, invites, the journal and which blocks each
 * namespace references. Tokens and invites arrive here only as SHA-256 hashes (hex).
 * Async so that a PostgreSQL implementation can follow the SQLite one.
 */
export interface Workspace {
  namespaceId: NamespaceId;
  name: string;
  /** The latest sjid, 0 before the first commit. */
  head: number;
}

export interface NewWorkspace {
  namespaceId: NamespaceId;
  name: string;
  /** The creator's member token. */
  tokenHash: string;
  inviteHash: string;
}

export interface JournalRead {
  entries: JournalEntry[];
  /** True when entries exist past the last one returned. */
  more: boolean;
}

/**
 * A journal page stops filling once it carries this many block hashes (about 13 MB of
 * JSON); every store applies the same budget, so pages look alike whatever the engine.
 */
export const PAGE_BLOCK_BUDGET = 200_000;

/** A conditional commit whose `parent` is not the path's live sjid: `current` is the live entry, or null. */
export interface CommitConflict {
  ok: false;
  reason: 'conflict';
  current: VersionEntry | null;
}

export type CommitResult = { ok: true; sjid: number } | { ok: false; reason: 'not_live' | 'no_namespace' } | CommitConflict;

/**
 * `index`: the batch element (from 0) that failed: a deletion of a path not live at that
 * point, or a `parent` that is not the path's live sjid at that point.
 */
export type CommitBatchResult =
  | { ok: true; sjids: number[] }
  | { ok: false; reason: 'not_live'; index: number }
  | (CommitConflict & { index: number })
  | { ok: false; reason: 'no_namespace' };

/** A single commit is a batch of one: one code path, one set of rules. */
export async function commitOne(store: Pick<MetadataStore, 'commitBatch'>, ns: NamespaceId, request: CommitRequest): Promise<CommitResult> {
  const result = await store.commitBatch(ns, [request]);
  if (result.ok) return { ok: true, sjid: result.sjids[0] };
  if (result.reason === 'conflict') return { ok: false, reason: 'conflict', current: result.current };
  return { ok: false, reason: result.reason };
}

/**
 * A history page stops filling once it carries this many block hashes (always at least one
 * version), like a journal page.
 */
export const HISTORY_BLOCK_BUDGET = 200_000;

export interface MetadataStore extends GcMetadata {
  createWorkspace(workspace: NewWorkspace): Promise<void>;
  /** Adds a member token for the namespace of a valid (unrevoked) invite; null when the invite is unknown or revoked. */
  joinByInviteHash(inviteHash: string, tokenHash: string): Promise<Workspace | null>;
  /** Revokes every live invite of the namespace and records the new one. */
  rotateInvite(ns: NamespaceId, inviteHash: string): Promise<void>;
  authenticate(tokenHash: string): Promise<{ namespaceId: NamespaceId } | null>;
  getWorkspace(ns: NamespaceId): Promise<Workspace | null>;
  /**
   * Entries with sjid > afterSjid, ascending, at most `limit`. An implementation may return
   * fewer (never zero when more exist) to bound the page's size; `more` tells the caller.
   */
  readJournal(ns: NamespaceId, afterSjid: number, limit: number): Promise<JournalRead>;
  headSjid(ns: NamespaceId): Promise<number>;
  /**
   * Appends one entry with the next sjid, in one transaction: sjids stay gapless and ordered
   * under concurrent commits. Records that the namespace references the entry's blocks.
   * A deletion of a path that is not live changes nothing and returns `not_live`.
   * The caller has already checked that every block is stored.
   */
  commit(ns: NamespaceId, request: CommitRequest): Promise<CommitResult>;
  /**
   * Appends the entries in array order with consecutive sjids, in one transaction: all or
   * nothing. Elements apply one after another, so a deletion is valid when its path is live
   * after the elements before it (a batch may write a path and then delete it; deleting a
   * path twice fails at the second), and an element's `parent`, when given, must be the
   * path's live sjid as the elements before it left it (0: not live). The check and the
   * append happen under the namespace's commit lock, so of concurrent commits naming the
   * same parent exactly one succeeds. On `not_live` or `conflict` nothing is stored.
   * Each entry records the request's `device` label. Long-poll wakes (the PostgreSQL
   * NOTIFY) happen once, for the last sjid.
   *
   * `beforeWrite` runs first, where no block GC batch can run until this commit has written
   * or given up (see GcMetadata): the place to check that the blocks are stored. What it
   * throws refuses the commit, with nothing written.
   */
  commitBatch(ns: NamespaceId, requests: readonly CommitRequest[], beforeWrite?: BeforeCommitWrite): Promise<CommitBatchResult>;
  /**
   * The entries of one path with sjid < `before` (null: all), newest first, deletions
   * included, at most `limit`; fewer when HISTORY_BLOCK_BUDGET would be passed (never zero
   * when one exists). `more`: older entries remain.
   */
  history(ns: NamespaceId, path: FilePath, before: number | null, limit: number): Promise<HistoryResponse>;
  /**
   * Paths whose latest entry is a deletion with sjid < `before` (null: all), committed at or
   * after `since` (ms since the epoch; null: any time, for the retention window), newest
   * deletion first, at most `limit`, each with its last live version. Walks the namespace's
   * deletions (journal_deletions index) backwards and skips those a later entry of the path
   * superseded. `more`: older deletions remain.
   */
  deletedFiles(ns: NamespaceId, before: number | null, limit: number, since?: number | null): Promise<DeletedFilesResponse>;
  namespaceReferencesBlock(ns: NamespaceId, hash: BlockHash): Promise<boolean>;
  /** The subset of `hashes` the namespace's journal references, in one query. */
  namespaceReferencedBlocks(ns: NamespaceId, hashes: readonly BlockHash[]): Promise<Set<BlockHash>>;
  /**
   * The namespace's secret LAN key (LAN_KEY_BYTES random bytes), created on first use. LAN
   * peers derive their UDP advert tags and TCP pre-shared key from it, so every caller, on
   * every instance, must get the same bytes: creation only fills a key that is still unset.
   * Throws when the namespace does not exist.
   */
  lanKey(ns: NamespaceId): Promise<Buffer>;
  close(): Promise<void>;
}
