import type { FilePath } from '../protocol/index.ts';

/**
 * The paths whose record, progress or status changed since the last `drain()`, for one
 * follower of the file table (the folder view, folder sync). A change that touches every file
 * (a keep policy, forgotten blocks) is kept as one flag, not as every path: `drain()` then
 * says `all` and the follower looks at the whole table once (plus the paths noted before,
 * which may be gone from the table).
 */
export class FileChangeFeed {
  private paths = new Set<FilePath>();
  private all = false;
  private closed = false;

  constructor(private readonly onClose: (feed: FileChangeFeed) => void = () => {}) {}

  add(path: FilePath): void {
    if (!this.closed) this.paths.add(path);
  }

  addAll(): void {
    if (this.closed) return;
    this.all = true;
  }

  /** What changed since the last call, then starts over. */
  drain(): { all: boolean; paths: FilePath[] } {
    const drained = { all: this.all, paths: [...this.paths] };
    this.all = false;
    this.paths.clear();
    return drained;
  }

  /** Stops following: the engine no longer feeds it. */
  close(): void {
    this.closed = true;
    this.paths.clear();
    this.onClose(this);
  }
}
