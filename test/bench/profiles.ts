import type { BrowserContext, Page } from 'playwright-core';
import type { NetnsHarness } from '../netns/harness.ts';
import type { BrowserKind } from './flags.ts';
import { markerSwitch } from './chromium-rss.ts';
import { chromiumThreadCpu, type TreeCpu } from './process-cpu.ts';

/**
 * One browser profile of a benchmark (own IndexedDB, localStorage and Web Locks): its own
 * Chromium process inside the namespace (`processes`, the realistic case: one machine per
 * person), the same with an on-disk profile (`disk`: Playwright's contexts are off the record,
 * so their IndexedDB and origin private files live in the browser process's memory and every
 * block written crosses to it), or a context of one shared Chromium process (`contexts`,
 * lighter on a small machine). All are closed by `close()` and, failing that, by the harness.
 */
export interface Profile {
  context: BrowserContext;
  page: Page;
  /**
   * CPU so far of this profile's Chromium (all its processes, from /proc); null for a context
   * of a shared process (its CPU is not this profile's alone) or where /proc cannot tell.
   */
  cpu(): Promise<TreeCpu | null>;
  close(): Promise<void>;
}

export interface ProfileOptions {
  /** JavaScript run in every document of the profile before the page's own scripts. */
  initScripts?: string[];
}

export async function openProfile(harness: NetnsHarness, kind: BrowserKind, options: ProfileOptions = {}): Promise<Profile> {
  let context: BrowserContext;
  let close: () => Promise<void>;
  let cpu: () => Promise<TreeCpu | null> = async () => null;
  if (kind === 'processes') {
    const tag = `profile-${process.pid}-${++launched}`;
    const browser = await harness.launchSeparateBrowser([markerSwitch(tag)]);
    cpu = async () => chromiumThreadCpu(tag);
    context = await browser.newContext({ acceptDownloads: false });
    close = () => browser.close();
  } else if (kind === 'disk') {
    const tag = `profile-${process.pid}-${++launched}`;
    context = await harness.newProfileBrowser([markerSwitch(tag)]);
    cpu = async () => chromiumThreadCpu(tag);
    close = () => context.close();
  } else {
    context = await harness.newBrowser();
    close = () => context.close();
  }
  for (const content of options.initScripts ?? []) await context.addInitScript({ content });
  // A persistent context opens with a blank tab: use it rather than start another renderer.
  const page = context.pages()[0] ?? (await context.newPage());
  return { context, page, cpu, close };
}

/** Browsers launched by this process, for unique tags. */
let launched = 0;

export async function openProfiles(harness: NetnsHarness, kind: BrowserKind, count: number, options: ProfileOptions = {}): Promise<Profile[]> {
  // One at a time: launching several Chromium processes at once on two cores only slows each.
  const profiles: Profile[] = [];
  try {
    for (let i = 0; i < count; i++) profiles.push(await openProfile(harness, kind, options));
    await untilQuiet(profiles);
  } catch (error) {
    await closeProfiles(profiles);
    throw error;
  }
  return profiles;
}

/** A browser that used less than this share of a core over one look has finished starting. */
const QUIET_SHARE = 0.05;
const QUIET_LOOK_MS = 250;
const QUIET_WITHIN_MS = 10_000;

/**
 * Waits until each freshly launched Chromium has finished its own start-up work, 10 s at most.
 * *Why:* Chromium 156 loads the omnibox popup's WebUI in a renderer of its own in the first
 * second or two after launch (0.4–0.7 s of CPU at rest, seen in a Chrome trace of an office
 * joiner), and a joiner's CPU is counted from right after its launch, while the bare data
 * channel's receiver is counted from its transfers, long after. That start-up is the
 * browser's, not the app's: it counted as up to 3 s per GiB against a 256 MiB join.
 */
async function untilQuiet(profiles: Profile[]): Promise<void> {
  const deadline = Date.now() + QUIET_WITHIN_MS;
  let last = await Promise.all(profiles.map((profile) => profile.cpu()));
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, QUIET_LOOK_MS));
    const now = await Promise.all(profiles.map((profile) => profile.cpu()));
    const busy = now.some((cpu, i) => cpu && last[i] && cpu.seconds - last[i]!.seconds > (QUIET_SHARE * QUIET_LOOK_MS) / 1000);
    last = now;
    if (!busy) return;
  }
}

export async function closeProfiles(profiles: Profile[]): Promise<void> {
  await Promise.all(profiles.map((profile) => profile.close().catch(() => undefined)));
}

/** Collects uncaught page errors and console errors of a profile's page, for failure reports. */
export function collectPageErrors(page: Page, name: string, into: string[]): void {
  page.on('pageerror', (error) => into.push(`${name}: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') into.push(`${name} console: ${message.text()}`);
  });
}
