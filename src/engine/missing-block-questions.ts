import type { BlockHash } from '../protocol/index.ts';

/**
 * "Does the server lack this block?", asked for many blocks as they are hashed, gathered into
 * few requests: while `inFlight` requests are out, new questions wait and go together in the
 * next. An upload of a file asked once per 4 MiB block, and each answer took 30–700 ms on a
 * loaded machine (the server busy receiving the blocks before it), which set the pace.
 */
export class MissingBlockQuestions {
  private waiting: { hash: BlockHash; resolve: (lacks: boolean) => void; reject: (error: unknown) => void }[] = [];
  private asking = 0;

  constructor(
    private readonly ask: (hashes: BlockHash[]) => Promise<BlockHash[]>,
    private readonly inFlight = 2,
    private readonly perRequest = 1000,
  ) {}

  /** Whether the server lacks `hash` (so it must be sent). */
  lacks(hash: BlockHash): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      this.waiting.push({ hash, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.asking < this.inFlight && this.waiting.length > 0) {
      const batch = this.waiting.splice(0, this.perRequest);
      this.asking += 1;
      this.ask([...new Set(batch.map((question) => question.hash))])
        .then(
          (missing) => {
            const lacking = new Set(missing);
            for (const question of batch) question.resolve(lacking.has(question.hash));
          },
          (error: unknown) => {
            for (const question of batch) question.reject(error);
          },
        )
        .finally(() => {
          this.asking -= 1;
          this.pump();
        });
    }
  }
}
