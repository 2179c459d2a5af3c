import type { FilePath, VersionEntry } from '../protocol/index.ts';

/**
 * The server refused a conditional commit (409 `conflict`): the path's live entry is not the
 * `parent` the commit named. Nothing was committed. `current` is the live entry (validated),
 * or null when the path is not live; `index` names the batch element (0 for a single commit).
 */
export class CommitConflictError extends Error {
  override readonly name = 'CommitConflictError';
  constructor(
    readonly path: FilePath,
    readonly index: number,
    readonly current: VersionEntry | null,
  ) {
    super(current === null ? `${path} is no longer live on the server` : `${path} was changed elsewhere (entry ${current.sjid})`);
  }
}
