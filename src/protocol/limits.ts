/** Hard limits shared by every party; a value past one is rejected, never truncated. */
export const MAX_BLOCK_SIZE = 4 * 1024 * 1024;
/** 65,536 blocks of 4 MiB = 256 GiB per file; bounds commit bodies to about 4.5 MB of JSON. */
export const MAX_BLOCKS_PER_FILE = 65_536;
export const MAX_FILE_SIZE = MAX_BLOCKS_PER_FILE * MAX_BLOCK_SIZE;
export const MAX_PATH_BYTES = 4096;
export const MAX_SEGMENT_BYTES = 255;
export const MAX_WORKSPACE_NAME_LENGTH = 200;
export const DEFAULT_JOURNAL_PAGE = 200;
export const MAX_JOURNAL_PAGE = 1000;
export const MAX_LONG_POLL_SECONDS = 60;
/** Block existence queries per request. */
export const MAX_MISSING_QUERY = 10_000;
/** Largest cursor a JSON number carries exactly. */
export const MAX_CURSOR = Number.MAX_SAFE_INTEGER;
/** Commits per batch commit request (POST /api/v1/ns/:ns/commits). */
export const MAX_COMMIT_BATCH = 1000;
/** Hashes per batch block download (POST /api/v1/ns/:ns/blocks). */
export const MAX_BLOCK_BATCH = 1000;
/**
 * A batch block download stops adding blocks once their bytes would pass this (it always
 * carries at least one): a bound on what one response, and the client reading it, holds.
 */
export const MAX_BLOCK_BATCH_BYTES = 16 * 1024 * 1024;
