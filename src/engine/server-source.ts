import type { ServerApi } from './server-api.ts';
import type { BlockSource, WantedBlock } from './types.ts';

/** The server as one more block source: it can serve anything its journal references. */
export class ServerBlockSource implements BlockSource {
  readonly id = 'server';
  readonly kind = 'server' as const;
  constructor(
    private readonly api: ServerApi,
    readonly maxInFlight = 4,
  ) {}

  canServe(): boolean {
    return true;
  }

  fetchBlock(want: WantedBlock, signal: AbortSignal): Promise<Uint8Array> {
    return this.api.getBlock(want.ns, want.hash, signal);
  }
}
