import type { Browser, CDPSession } from 'playwright-core';

/** One attached target (a page or a dedicated worker) and a way to send it CDP commands. */
export interface AttachedTarget {
  targetId: string;
  type: string;
  url: string;
  send(method: string, params?: object): Promise<unknown>;
}

export interface TargetWatch {
  /** Every target attached so far, in attach order. */
  readonly targets: readonly AttachedTarget[];
  detach(): Promise<void>;
}

/**
 * Attaches to every target of `types` a browser has and gets (pages, dedicated workers) from
 * its browser CDP session, and runs `onAttach` on each. Playwright has no CDP session for a
 * worker, so commands go through Target.sendMessageToTarget and answers come back as
 * Target.receivedMessageFromTarget, matched by id.
 */
export async function watchTargets(browser: Browser, types: ReadonlySet<string>, onAttach: (target: AttachedTarget) => Promise<void>): Promise<TargetWatch> {
  const session: CDPSession = await browser.newBrowserCDPSession();
  const attached = new Map<string, AttachedTarget>();
  let nextId = 1;
  const pending = new Map<number, (result: unknown) => void>();
  session.on('Target.receivedMessageFromTarget', (event: { sessionId: string; message: string }) => {
    const message = JSON.parse(event.message) as { id?: number; result?: unknown };
    if (message.id === undefined) return;
    pending.get(message.id)?.(message.result);
    pending.delete(message.id);
  });
  const attach = async (info: { targetId: string; type: string; url: string }) => {
    if (attached.has(info.targetId)) return;
    const { sessionId } = (await session.send('Target.attachToTarget', { targetId: info.targetId, flatten: false })) as { sessionId: string };
    const target: AttachedTarget = {
      ...info,
      send: (method, params = {}) =>
        new Promise<unknown>((resolve, reject) => {
          const id = nextId++;
          pending.set(id, resolve);
          // A target that went away meanwhile (a worker of a page that navigated) has no session.
          session.send('Target.sendMessageToTarget', { sessionId, message: JSON.stringify({ id, method, params }) }).catch(reject);
        }),
    };
    attached.set(info.targetId, target);
    await onAttach(target);
  };
  session.on('Target.targetCreated', (event: { targetInfo: { targetId: string; type: string; url: string } }) => {
    if (types.has(event.targetInfo.type)) attach(event.targetInfo).catch(() => {});
  });
  await session.send('Target.setDiscoverTargets', { discover: true });
  const { targetInfos } = (await session.send('Target.getTargets')) as { targetInfos: Array<{ targetId: string; type: string; url: string }> };
  for (const info of targetInfos) if (types.has(info.type)) await attach(info).catch(() => {});
  return {
    get targets() {
      return [...attached.values()];
    },
    detach: () => session.detach().catch(() => {}),
  };
}
