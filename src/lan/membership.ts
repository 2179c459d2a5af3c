import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, readFile, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ServerApi } from '../engine/server-api.ts';
import {
  expectRecord,
  expectString,
  inviteFromLink,
  isInviteFormat,
  isTokenFormat,
  parseNamespaceId,
  type NamespaceId,
} from '../protocol/index.ts';

/** The workspace this daemon belongs to, as kept in `<state>/member.json` (mode 0600). */
export interface Membership {
  server: string;
  namespaceId: NamespaceId;
  name: string;
  token: string;
}

const MEMBER_FILE = 'member.json';

/** Creates the state dir (0700) or checks an existing one is a directory only we can read. */
export async function prepareStateDir(stateDir: string): Promise<void> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const info = await stat(stateDir);
  if (!info.isDirectory()) throw new Error(`state dir ${stateDir} is not a directory`);
  // mkdir's mode is filtered by the umask, and an existing dir keeps its mode: it holds a token.
  if ((info.mode & 0o077) !== 0) await chmod(stateDir, 0o700);
}

export async function loadMembership(stateDir: string): Promise<Membership | null> {
  let text: string;
  try {
    text = await readFile(join(stateDir, MEMBER_FILE), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  const record = expectRecord(JSON.parse(text), MEMBER_FILE);
  const token = expectString(record.token, 'token', 200);
  if (!isTokenFormat(token)) throw new Error(`${MEMBER_FILE}: token is malformed`);
  return {
    server: expectString(record.server, 'server', 2000),
    namespaceId: parseNamespaceId(record.namespaceId),
    name: expectString(record.name, 'name', 1000),
    token,
  };
}

/** Writes the membership atomically, readable by the owner only. */
export async function saveMembership(stateDir: string, membership: Membership): Promise<void> {
  const final = join(stateDir, MEMBER_FILE);
  const temp = `${final}.${randomBytes(6).toString('hex')}.tmp`;
  const file = await open(temp, 'wx', 0o600);
  try {
    await file.writeFile(`${JSON.stringify(membership, null, 2)}\n`);
    await file.sync();
  } finally {
    await file.close();
  }
  await rename(temp, final);
}

/** The invite code in a share link (`…#invite=X`) or given bare; null when there is none. */
export function parseInvite(link: string): string | null {
  if (isInviteFormat(link)) return link;
  return inviteFromLink(link);
}

/** The namespace a share link names in its path (`/w/<ns>`), when it names one. */
export function namespaceOfLink(link: string): NamespaceId | null {
  const match = /\/w\/([A-Za-z0-9_-]{16,64})(?:[/?#]|$)/.exec(link);
  return match ? (match[1] as NamespaceId) : null;
}

/**
 * The membership to run with: the stored one when the state dir has it (the invite, if
 * given, must name the same workspace), otherwise a fresh join with the invite, stored
 * before it is used so a crash right after joining does not join twice.
 */
export async function ensureMembership(
  stateDir: string,
  server: string,
  invite: string | null,
  log: (line: string) => void,
): Promise<Membership> {
  const stored = await loadMembership(stateDir);
  if (stored) {
    if (stored.server !== server) {
      throw new Error(`the state dir belongs to server ${stored.server}, not ${server} (use another --state)`);
    }
    const linked = invite ? namespaceOfLink(invite) : null;
    if (linked && linked !== stored.namespaceId) {
      throw new Error(`the state dir belongs to workspace ${stored.namespaceId}, the link names ${linked} (use another --state)`);
    }
    log(`using workspace "${stored.name}" (${stored.namespaceId}), member token from ${join(stateDir, MEMBER_FILE)}`);
    return stored;
  }
  if (invite === null) throw new Error('--invite LINK is required the first time (no member token in the state dir yet)');
  const code = parseInvite(invite);
  if (!code) throw new Error('--invite must be a share link ending in #invite=… or the 22-character invite itself');
  log(`joining the workspace at ${server} with the invite`);
  const joined = await new ServerApi(server).join(code);
  const membership: Membership = { server, namespaceId: joined.namespaceId, name: joined.name, token: joined.token };
  await saveMembership(stateDir, membership);
  log(`joined workspace "${joined.name}" (${joined.namespaceId}); member token kept in ${join(stateDir, MEMBER_FILE)}`);
  return membership;
}
