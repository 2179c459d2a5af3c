import type { UploadView } from '../../workers/sync-api.ts';
import type { Notices } from './notices.ts';

/**
 * Tells the user, once per upload, when their upload lost a race for its path and was kept
 * as a conflicted copy: which file kept the other device's version and where theirs went.
 * The copy is an ordinary file, so the folder view lists it like any other.
 */
export class ConflictNotices {
  private readonly announced = new Set<number>();

  constructor(private readonly notices: Notices) {}

  update(uploads: readonly UploadView[]): void {
    for (const upload of uploads) {
      if (upload.conflictedCopy === undefined || this.announced.has(upload.id)) continue;
      this.announced.add(upload.id);
      this.notices.warning(conflictText(upload.path, upload.conflictedCopy));
    }
  }
}

export function conflictText(path: string, copy: string): string {
  return (
    `“${path}” was changed on another device while your version was on its way. Both are kept: ` +
    `“${path}” has the other device’s version, and yours is now “${copy}”.`
  );
}
