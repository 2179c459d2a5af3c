import {
  isInviteFormat,
  parseCreateWorkspaceRequest,
  parseJoinRequest,
  type CreateWorkspaceResponse,
  type InviteResponse,
  type JoinResponse,
  type NamespaceId,
} from '../../protocol/index.ts';
import { requireMember } from '../auth.ts';
import type { Handler, RequestContext, ServerDeps } from '../context.ts';
import { HttpError } from '../http/errors.ts';
import { readJson } from '../http/json-body.ts';
import { sendJson } from '../http/respond.ts';
import { newInvite, newNamespaceId, newToken, sha256Hex } from '../ids.ts';
import type { Router } from '../http/router.ts';

/** `…/w/<ns>#invite=<invite>`: the invite rides in the fragment, which browsers never send. */
function inviteUrl(ctx: RequestContext, deps: ServerDeps, ns: string, invite: string): string {
  return `${deps.publicUrl(ctx.req)}/w/${ns}#invite=${invite}`;
}

const createWorkspace: Handler = async (ctx, deps) => {
  const { name } = parseCreateWorkspaceRequest(await readJson(ctx.req));
  const namespaceId = newNamespaceId() as NamespaceId;
  const token = newToken();
  const invite = newInvite();
  await deps.metadata.createWorkspace({ namespaceId, name, tokenHash: sha256Hex(token), inviteHash: sha256Hex(invite) });
  deps.logger.info('workspace created', { ns: namespaceId });
  const body: CreateWorkspaceResponse = { namespaceId, name, inviteUrl: inviteUrl(ctx, deps, namespaceId, invite), token };
  ctx.stats.bytesOut = sendJson(ctx.res, 201, body);
};

const join: Handler = async (ctx, deps) => {
  const { invite } = parseJoinRequest(await readJson(ctx.req));
  const token = newToken();
  const workspace = isInviteFormat(invite) ? await deps.metadata.joinByInviteHash(sha256Hex(invite), sha256Hex(token)) : null;
  if (!workspace) throw new HttpError(403, 'invite_invalid', 'this invite is unknown or has been replaced');
  deps.logger.info('member joined', { ns: workspace.namespaceId });
  const body: JoinResponse = { namespaceId: workspace.namespaceId, name: workspace.name, token };
  ctx.stats.bytesOut = sendJson(ctx.res, 200, body);
};

const rotateInvite: Handler = async (ctx, deps) => {
  const ns = await requireMember(ctx.req, deps, ctx.params.ns);
  const invite = newInvite();
  await deps.metadata.rotateInvite(ns, sha256Hex(invite));
  deps.logger.info('invite rotated', { ns });
  const body: InviteResponse = { inviteUrl: inviteUrl(ctx, deps, ns, invite) };
  ctx.stats.bytesOut = sendJson(ctx.res, 200, body);
};

const getWorkspace: Handler = async (ctx, deps) => {
  const ns = await requireMember(ctx.req, deps, ctx.params.ns);
  const workspace = await deps.metadata.getWorkspace(ns);
  if (!workspace) throw new HttpError(404, 'not_found', 'no such workspace');
  ctx.stats.bytesOut = sendJson(ctx.res, 200, { namespaceId: workspace.namespaceId, name: workspace.name, cursor: workspace.head });
};

export function workspaceRoutes(router: Router<Handler>): void {
  router.add('POST', '/api/v1/workspaces', createWorkspace);
  router.add('POST', '/api/v1/join', join);
  router.add('POST', '/api/v1/ns/:ns/invite', rotateInvite);
  router.add('GET', '/api/v1/ns/:ns', getWorkspace);
}
