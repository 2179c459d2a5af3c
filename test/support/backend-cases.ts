import type { BackendConfig } from '../../src/server/backends/index.ts';

/**
 * The engine combinations the HTTP API suite runs against (parametrised, not copied).
 * SQLite with block files always runs; the others need their engine on loopback.
 */
export interface BackendCase {
  /** e.g. 'sqlite+files', 'postgres+files'. */
  name: string;
  metadata: 'sqlite' | 'postgres';
  blocks: 'files' | 's3';
  /** Fresh engines for one harness (a new schema, a new bucket); teardown drops them. */
  provision(): Promise<ProvisionedBackends>;
}

export interface ProvisionedBackends {
  backends: BackendConfig;
  teardown(): Promise<void>;
}

export const sqliteFiles: BackendCase = {
  name: 'sqlite+files',
  metadata: 'sqlite',
  blocks: 'files',
  async provision() {
    return { backends: {}, teardown: async () => {} };
  },
};

export const BACKEND_CASES: readonly BackendCase[] = [sqliteFiles];
