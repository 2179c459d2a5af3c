import type { FilePath } from '../src/protocol/index.ts';

/**
 * The `parent` each upload of a queue names. It is the live entry the device knew for the
 * path when the user added the file (the version the user meant to replace), except that
 * uploads of one path from this queue follow each other: an upload based on the version an
 * earlier upload of the queue replaced is based on that upload instead. The user replaced
 * their own file twice; neither is a conflict with anyone.
 */
export class UploadParents {
  /** path → (sjid replaced → sjid of this queue's commit that replaced it). */
  private readonly replaced = new Map<FilePath, Map<number, number>>();

  /** The parent to send for an upload of `path` that was based on `known`. */
  resolve(path: FilePath, known: number): number {
    const chain = this.replaced.get(path);
    let parent = known;
    // Each step moves to a newer sjid, so the walk ends; the bound is belt and braces.
    for (let steps = 0; chain?.has(parent) && steps <= chain.size; steps++) parent = chain.get(parent)!;
    return parent;
  }

  /** An upload of `path` naming `parent` is now the live entry `sjid`. */
  committed(path: FilePath, parent: number, sjid: number): void {
    let chain = this.replaced.get(path);
    if (!chain) this.replaced.set(path, (chain = new Map()));
    chain.set(parent, sjid);
  }

  /** The queue went idle: later uploads are based on what the device knows by then. */
  clear(): void {
    this.replaced.clear();
  }
}
