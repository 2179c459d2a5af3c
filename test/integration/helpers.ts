import { createHash, randomBytes } from 'node:crypto';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BlockHash, NamespaceId } from '../../src/protocol/index.ts';
import { startServer, type RunningServer, type ServerOptions } from '../../src/server/app.ts';
import type { BackendConfig } from '../../src/server/backends/index.ts';
import { silentLogger } from '../../src/server/log.ts';
import { sqliteFiles, type BackendCase, type ProvisionedBackends, type StoredState } from '../support/backend-cases.ts';
import { until } from '../support/until.ts';

export { blockFiles, tempFiles, type StoredState } from '../support/backend-cases.ts';

/** A real server on loopback over a temp data dir and fresh engines, restartable on both. */
export interface Harness {
  server: RunningServer;
  readonly url: string;
  dataDir: string;
  /** The engine combination under test. */
  backendCase: BackendCase;
  /** The engines' settings this harness runs with (e.g. its DATABASE_URL). */
  backends: BackendConfig;
  /** What the server has stored, read beside it (tables, blocks, partial uploads). */
  storedState(): Promise<StoredState>;
  /** Everything the metadata engine holds, as bytes. */
  metadataBytes(): Promise<Buffer>;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export type HarnessOptions = Omit<Partial<ServerOptions>, 'backends'> & {
  /** Which engines: provisioned fresh for this harness, dropped by stop(). Default SQLite + block files. */
  backends?: BackendCase;
};

export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const { backends: backendCase = sqliteFiles, ...serverOptions } = options;
  const dataDir = serverOptions.dataDir ?? (await mkdtemp(join(tmpdir(), 'nearsync-it-')));
  const removeDataDir = () => (serverOptions.dataDir ? Promise.resolve() : rm(dataDir, { recursive: true, force: true }));
  let provisioned: ProvisionedBackends;
  try {
    provisioned = await backendCase.provision();
  } catch (err) {
    await removeDataDir();
    throw err;
  }
  const start = () =>
    startServer({ host: '127.0.0.1', port: 0, staticDir: null, logger: silentLogger, ...serverOptions, dataDir, backends: provisioned.backends });
  let server: RunningServer;
  try {
    server = await start();
  } catch (err) {
    await provisioned.teardown();
    await removeDataDir();
    throw err;
  }
  const harness: Harness = {
    server,
    get url() {
      return this.server.url;
    },
    dataDir,
    backendCase,
    backends: provisioned.backends,
    storedState: () => provisioned.storedState(dataDir),
    metadataBytes: () => provisioned.metadataBytes(dataDir),
    async restart() {
      await harness.server.close();
      harness.server = await start();
    },
    async stop() {
      try {
        await harness.server.close();
      } finally {
        await provisioned.teardown();
        await removeDataDir();
      }
    },
  };
  return harness;
}

/** What the harness's server has stored: compare before and after a bad request. */
export function storedState(h: Harness): Promise<StoredState> {
  return h.storedState();
}

export interface ApiResult<T = any> {
  status: number;
  headers: Headers;
  body: T;
}

export interface ApiInit {
  token?: string;
  json?: unknown;
  body?: BodyInit | Uint8Array;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/** fetch() with a bearer token and a JSON body; parses JSON responses. */
export async function api<T = any>(base: string, method: string, path: string, init: ApiInit = {}): Promise<ApiResult<T>> {
  const headers: Record<string, string> = { ...init.headers };
  if (init.token !== undefined) headers.authorization = `Bearer ${init.token}`;
  let body = init.body;
  if (init.json !== undefined) {
    headers['content-type'] ??= 'application/json';
    body = JSON.stringify(init.json);
  }
  const res = await fetch(base + path, { method, headers, body: body as BodyInit | undefined, signal: init.signal });
  const type = res.headers.get('content-type') ?? '';
  const parsed = type.startsWith('application/json') ? await res.json() : Buffer.from(await res.arrayBuffer());
  return { status: res.status, headers: res.headers, body: parsed as T };
}

export interface Member {
  ns: NamespaceId;
  token: string;
  invite: string;
  inviteUrl: string;
  name: string;
}

export async function createWorkspace(base: string, name = 'Team'): Promise<Member> {
  const res = await api(base, 'POST', '/api/v1/workspaces', { json: { name } });
  if (res.status !== 201) throw new Error(`create workspace: ${res.status} ${JSON.stringify(res.body)}`);
  const invite = /#invite=(.+)$/.exec(res.body.inviteUrl)![1];
  return { ns: res.body.namespaceId, token: res.body.token, invite, inviteUrl: res.body.inviteUrl, name: res.body.name };
}

export interface TestBlock {
  bytes: Buffer;
  hash: BlockHash;
}

export function sha256(bytes: Uint8Array): BlockHash {
  return createHash('sha256').update(bytes).digest('hex') as BlockHash;
}

export function makeBlock(size: number): TestBlock {
  const bytes = randomBytes(size);
  return { bytes, hash: sha256(bytes) };
}

export async function putBlock(base: string, token: string, block: TestBlock): Promise<number> {
  const res = await api(base, 'PUT', `/api/v1/blocks/${block.hash}`, { token, body: block.bytes });
  if (res.status !== 201 && res.status !== 200) throw new Error(`put block: ${res.status} ${JSON.stringify(res.body)}`);
  return res.status;
}

/** Uploads the blocks and commits them as one file; returns the sjid. */
export async function commitFile(base: string, member: Member, path: string, blocks: TestBlock[], mtime = 1_700_000_000_000): Promise<number> {
  for (const block of blocks) await putBlock(base, member.token, block);
  const size = blocks.reduce((n, b) => n + b.bytes.length, 0);
  const res = await api(base, 'POST', `/api/v1/ns/${member.ns}/commit`, {
    token: member.token,
    json: { path, size, mtime, blocks: blocks.map((b) => b.hash) },
  });
  if (res.status !== 200) throw new Error(`commit: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.sjid;
}

export async function head(base: string, member: Member): Promise<number> {
  const res = await api(base, 'GET', `/api/v1/ns/${member.ns}`, { token: member.token });
  if (res.status !== 200) throw new Error(`head: ${res.status}`);
  return res.body.cursor;
}

export interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** A request through node:http with an exact request target (no URL normalisation). */
export function rawRequest(
  base: string,
  method: string,
  target: string,
  headers: Record<string, string | number> = {},
  body?: Buffer,
): Promise<RawResponse> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: url.hostname, port: url.port, method, path: target, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

export { until };
