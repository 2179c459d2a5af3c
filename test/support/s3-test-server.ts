import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { mkdtemp, rm, unlink } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { S3Settings } from '../../src/server/backends/index.ts';
import { s3ClientConfig } from '../../src/server/backends/s3.ts';
import { silentLogger } from '../../src/server/log.ts';

/**
 * s3rver's DeleteObject removes the key's directory once it is empty, with no lock: a
 * PutObject of another key in that directory, between its mkdirp and its open, then fails with
 * an ENOENT that its write stream does not handle, an uncaught exception in the test process.
 * S3 itself has no directories. Block GC deletes while uploads run, so the test server keeps
 * empty directories (the objects' own files are removed as before).
 */
function keepEmptyDirectories(): void {
  const require = createRequire(import.meta.url);
  const store = require('s3rver/lib/stores/filesystem.js').prototype as {
    getResourcePath(bucket: string, key: string, resource: string): string;
    deleteObject(bucket: string, key: string): Promise<void>;
    nearsyncKeepsDirectories?: boolean;
  };
  if (store.nearsyncKeepsDirectories) return;
  store.nearsyncKeepsDirectories = true;
  store.deleteObject = async function deleteObject(bucket, key) {
    await Promise.all(
      ['object', 'object.md5', 'metadata.json'].map((resource) =>
        unlink(this.getResourcePath(bucket, key, resource)).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') throw err;
        }),
      ),
    );
  };
}

/** s3rver accepts only its built-in key pair (and checks SigV4 requests for that key only). */
const S3RVER_KEY = 'S3RVER';

/** An S3-compatible server (s3rver) on loopback over a temp directory, holding one fresh bucket. */
export interface S3TestServer {
  /** e.g. http://127.0.0.1:40123 */
  readonly endpoint: string;
  readonly bucket: string;
  /** Connection settings for BackendConfig.s3 (path style, s3rver's credentials). */
  readonly settings: S3Settings;
  /** s3://bucket or s3://bucket/prefix, for BackendConfig.blockStore. */
  location(prefix?: string): string;
  /** Requests the server has received, by method, and the most it handled at once (since resetRequests). */
  readonly requests: RequestCounts;
  resetRequests(): void;
  /** Keys stored in the bucket (the test checks that rejected uploads leave none behind). */
  keys(): Promise<string[]>;
  /** Stops answering (connections refused); the stored objects stay. */
  pause(): Promise<void>;
  /** Answers again on the same port, with the same objects. */
  resume(): Promise<void>;
  /** Stops the server and removes its directory. */
  stop(): Promise<void>;
}

export interface RequestCounts {
  byMethod: Record<string, number>;
  maxInFlight: number;
}

export async function startS3TestServer(): Promise<S3TestServer> {
  keepEmptyDirectories();
  const directory = await mkdtemp(join(tmpdir(), 'nearsync-s3-'));
  const bucket = `nearsync-test-${randomBytes(6).toString('hex')}`;
  const requests: RequestCounts = { byMethod: {}, maxInFlight: 0 };
  let inFlight = 0;
  const launch = async (port: number) => {
    const instance = new S3rver({ address: '127.0.0.1', port, silent: true, directory, configureBuckets: [{ name: bucket }] });
    const address = await instance.run();
    instance.httpServer?.on('request', (req: IncomingMessage, res: ServerResponse) => {
      const method = req.method ?? '?';
      requests.byMethod[method] = (requests.byMethod[method] ?? 0) + 1;
      inFlight++;
      requests.maxInFlight = Math.max(requests.maxInFlight, inFlight);
      res.once('close', () => inFlight--);
    });
    return { instance, port: address.port };
  };

  let running: S3rver | null;
  let port: number;
  try {
    ({ instance: running, port } = await launch(0));
  } catch (err) {
    await rm(directory, { recursive: true, force: true });
    throw err;
  }
  const endpoint = `http://127.0.0.1:${port}`;
  const halt = async () => {
    const instance = running;
    running = null;
    if (!instance) return;
    const closed = instance.close();
    // Keep-alive connections from the client under test would hold close() open.
    instance.httpServer?.closeAllConnections();
    await closed;
  };

  const settings: S3Settings = { endpoint, region: 'us-east-1', accessKeyId: S3RVER_KEY, secretAccessKey: S3RVER_KEY, forcePathStyle: true };
  return {
    endpoint,
    bucket,
    settings,
    requests,
    resetRequests() {
      requests.byMethod = {};
      requests.maxInFlight = inFlight;
    },
    location: (prefix) => (prefix ? `s3://${bucket}/${prefix}` : `s3://${bucket}`),
    async keys() {
      return listKeys(settings, bucket);
    },
    pause: halt,
    async resume() {
      if (running) return;
      ({ instance: running } = await launch(port));
    },
    async stop() {
      await halt();
      await rm(directory, { recursive: true, force: true });
    },
  };
}

/** Every key in the bucket, through the S3 API (ListObjectsV2, all pages). */
async function listKeys(settings: S3Settings, bucket: string): Promise<string[]> {
  const client = new S3Client(s3ClientConfig(settings, silentLogger));
  try {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
      for (const object of page.Contents ?? []) if (object.Key !== undefined) keys.push(object.Key);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return keys.sort();
  } finally {
    client.destroy();
  }
}
