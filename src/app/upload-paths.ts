import type { UploadInput } from '../../workers/sync-api.ts';
import { normaliseUserPath } from '../protocol/index.ts';
import type { PickedFile } from './dropped-files.ts';
import { errorMessage } from './message-page.ts';

export interface RejectedFile {
  name: string;
  reason: string;
}

/** Splits picked files into valid workspace paths and names the protocol refuses. */
export function prepareUploads(picked: readonly PickedFile[]): { accepted: UploadInput[]; rejected: RejectedFile[] } {
  const accepted: UploadInput[] = [];
  const rejected: RejectedFile[] = [];
  const seen = new Set<string>();
  for (const { file, path } of picked) {
    let normalised: string;
    try {
      normalised = normaliseUserPath(path);
    } catch (error) {
      rejected.push({ name: path, reason: errorMessage(error) });
      continue;
    }
    if (seen.has(normalised)) {
      rejected.push({ name: path, reason: 'picked twice in the same upload' });
      continue;
    }
    seen.add(normalised);
    accepted.push({ file, path: normalised });
  }
  return { accepted, rejected };
}
