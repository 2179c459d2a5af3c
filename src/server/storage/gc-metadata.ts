import type { BlockHash } from '../../protocol/index.ts';

/**
 * What block GC needs from the metadata store, beside the commits it must never race.
 *
 * Safety rests on one exclusion. A commit checks that its blocks are stored and then writes
 * its entry, both inside a *shared* hold (`MetadataStore.commitBatch`'s `beforeWrite` runs in
 * it); GC re-reads the references and deletes a batch of blocks inside an *exclusive* hold
 * (`withCommitsHeld`). So a commit either wrote its entry before GC re-read the references
 * (and its blocks stay), or checks its blocks after GC deleted them (and answers 409
 * need_blocks). PostgreSQL: an advisory lock (shared per commit transaction, exclusive per GC
 * batch) on every instance of the schema; SQLite: an in-process lock (one process owns it).
 */
export interface GcMetadata {
  /**
   * Starts a pass, or null when another pass holds the pass lock (on any instance sharing
   * the metadata). The session must be ended.
   */
  beginGcPass(): Promise<GcSession | null>;
}

/** Each namespace's head sjid when read: entries above it are newer than what was scanned. */
export type JournalHeads = Map<string, number>;

export interface GcSession {
  /** Heads of every namespace now. Read before `retainedBlocks`, so later entries are caught by `withCommitsHeld`. */
  heads(): Promise<JournalHeads>;
  /**
   * The blocks of every retained entry, page by page as concatenated 32-byte digests: live
   * versions, and versions superseded less than `historyMs` ago (by the metadata engine's
   * clock). Deletion entries have no blocks.
   */
  retainedBlocks(historyMs: number, onPage: (digests: Buffer) => void): Promise<void>;
  /**
   * Holds every commit off (waiting for those between their block check and their write),
   * then hands `work` the blocks of every entry committed since `heads` (and moves `heads`
   * on), and lets commits go once `work` settles. Before `work` runs, the GC generation
   * grows, so every instance forgets its cached block sizes at its next commit.
   */
  withCommitsHeld<T>(heads: JournalHeads, work: (newerDigests: Buffer) => Promise<T>): Promise<T>;
  /** Releases the pass lock. */
  end(): Promise<void>;
}

/**
 * Called by a commit inside its shared hold, before anything is written: check the blocks
 * here (throwing refuses the commit, nothing is written). `gcGeneration` is the current GC
 * generation: when it differs from the last one seen, cached block sizes may name deleted
 * blocks and must be dropped before checking.
 */
export type BeforeCommitWrite = (gcGeneration: number) => Promise<void>;

/** Block hashes as the 32-byte keys GC sets hold (latin1 strings: a third of the hex's memory). */
export function digestKey(hash: BlockHash): string {
  return Buffer.from(hash, 'hex').toString('latin1');
}
