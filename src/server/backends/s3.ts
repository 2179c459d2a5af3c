import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import type { Logger } from '../log.ts';
import type { BlockStore } from '../storage/block-store.ts';
import { S3BlockStore, type S3BlockStoreOptions } from '../storage/s3-block-store.ts';
import type { S3Settings } from './index.ts';

/** A TCP connection to the endpoint that takes longer than this counts as a failure. */
const CONNECT_TIMEOUT_MS = 3_000;
/** One request, from sending (up to one block) to the response headers. Bodies read afterwards are guarded by S3BlockStore. */
const REQUEST_TIMEOUT_MS = 30_000;
/** Tries per request, with the SDK's backoff between them, before a request answers 503. */
const MAX_ATTEMPTS = 3;
/** Sockets per endpoint: above statMany's concurrency, so one missing-blocks query does not starve downloads. */
const MAX_SOCKETS = 64;

/** `s3://bucket` or `s3://bucket/some/prefix` → the bucket and a key prefix ('' or ending in '/'). */
export function parseS3Location(location: string): Pick<S3BlockStoreOptions, 'bucket' | 'prefix'> {
  const match = /^s3:\/\/([^/\s]+)(?:\/(\S*))?$/.exec(location);
  if (!match) throw new Error(`BLOCK_STORE must be s3://bucket or s3://bucket/prefix, not ${JSON.stringify(location)}`);
  const path = (match[2] ?? '').replace(/^\/+|\/+$/g, '');
  return { bucket: match[1], prefix: path === '' ? '' : `${path}/` };
}

/** The S3 client configuration for these settings: explicit timeouts, retries and logging. */
export function s3ClientConfig(settings: S3Settings, logger: Logger): S3ClientConfig {
  if ((settings.accessKeyId === undefined) !== (settings.secretAccessKey === undefined)) {
    throw new Error('AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together: set both, or neither to use the default credential chain');
  }
  const sdkLogger = {
    debug: (...content: unknown[]) => logger.debug('s3 client', { detail: describe(content) }),
    info: (...content: unknown[]) => logger.debug('s3 client', { detail: describe(content) }),
    warn: (...content: unknown[]) => logger.warn('s3 client', { detail: describe(content) }),
    error: (...content: unknown[]) => logger.error('s3 client', { detail: describe(content) }),
  };
  return {
    endpoint: settings.endpoint,
    // Custom endpoints (MinIO, s3rver…) ignore the region but the signer needs one.
    region: settings.region ?? (settings.endpoint ? 'us-east-1' : undefined),
    forcePathStyle: settings.forcePathStyle ?? settings.endpoint !== undefined,
    credentials:
      settings.accessKeyId !== undefined && settings.secretAccessKey !== undefined
        ? { accessKeyId: settings.accessKeyId, secretAccessKey: settings.secretAccessKey }
        : undefined,
    maxAttempts: MAX_ATTEMPTS,
    // Blocks carry their own SHA-256 (sent with each upload, checked by every client that
    // downloads), and S3-compatible servers differ in which extra checksums they accept.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: {
      connectionTimeout: CONNECT_TIMEOUT_MS,
      requestTimeout: REQUEST_TIMEOUT_MS,
      throwOnRequestTimeout: true,
      httpAgent: { keepAlive: true, maxSockets: MAX_SOCKETS },
      httpsAgent: { keepAlive: true, maxSockets: MAX_SOCKETS },
      // Socket exhaustion and timeout warnings. The client itself keeps its silent default
      // logger: it would log every call, with bodies, and every 404 of a block check as an error.
      logger: sdkLogger,
    },
  };
}

/** Blocks in S3-compatible storage; fails at start when the bucket is missing or unreachable. */
export async function openS3BlockStore(location: string, settings: S3Settings, logger: Logger): Promise<BlockStore> {
  // The SDK warns at every start on Node 20 that its releases after January 2027 need Node
  // 22. This server supports Node 20.19+, and the warning breaks up a JSON-lines log; the SDK
  // documents this variable for turning it off. An operator's own setting wins.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const { bucket, prefix } = parseS3Location(location);
  const store = await S3BlockStore.open(new S3Client(s3ClientConfig(settings, logger)), { bucket, prefix });
  logger.info('block store', { engine: 's3', bucket, prefix, endpoint: settings.endpoint ?? 'aws' });
  return store;
}

function describe(content: unknown[]): string {
  return content.map(describePart).join(' ');
}

function describePart(part: unknown): string {
  if (typeof part === 'string') return part;
  if (part instanceof Error) return `${part.name}: ${part.message}`;
  try {
    return JSON.stringify(part) ?? String(part);
  } catch {
    return String(part);
  }
}
