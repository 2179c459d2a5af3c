import type { LoadFlags } from './flags.ts';
import { openFileLimit } from './proc.ts';

/** Descriptors a process needs beyond its connections (modules, pipes, the database, logs). */
const FD_MARGIN = 512;

/**
 * Keeps the connection counts within the open-file limit that every process here inherits
 * (`ulimit -n`; the bench raises nothing). A single server instance holds every poll and
 * socket, a generator its share; when they do not fit, polls and sockets are scaled down
 * together and the returned message says so.
 */
export function fitToFileLimit(flags: LoadFlags): string | null {
  const limit = openFileLimit();
  if (limit === null) return null;
  const perServer = flags.polls + flags.sockets + FD_MARGIN;
  const perGenerator = Math.ceil((flags.polls + flags.sockets) / flags.generators) + FD_MARGIN;
  const need = Math.max(perServer, perGenerator);
  if (need <= limit) return null;
  const scale = (limit - FD_MARGIN) / (flags.polls + flags.sockets);
  const before = `${flags.polls} polls + ${flags.sockets} sockets`;
  flags.polls = Math.max(1, Math.floor(flags.polls * scale));
  flags.sockets = Math.max(1, Math.floor(flags.sockets * scale));
  return `open-file limit (ulimit -n) is ${limit}: one server instance would need ${need} descriptors for ${before}; lowered to ${flags.polls} polls + ${flags.sockets} sockets (raise the limit yourself to run the full counts)`;
}
