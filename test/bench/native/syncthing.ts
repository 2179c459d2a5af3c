import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Netns } from '../../netns/netns.ts';
import { stopProcess } from '../../netns/netns.ts';

/**
 * Syncthing (Debian's package) as the anchor of the native-pair bench: two devices, each in
 * its own test namespace, sharing one folder over the veth between them.
 *
 * Everything that could reach past the veth is off in the generated config: global and local
 * discovery, relays, NAT traversal (and with it STUN), usage and crash reporting, upgrades, the
 * GUI; each device knows the other only by an explicit `tcp://<veth address>:port`. The
 * namespaces themselves cannot route anywhere else either (see netns.ts).
 */

const SYNCTHING = '/usr/bin/syncthing';
export const SYNCTHING_PORT = 22_000;
export const SYNCTHING_FOLDER_ID = 'nearsync-bench';

export function syncthingInstalled(): boolean {
  return spawnSync(SYNCTHING, ['--version'], { encoding: 'utf8' }).status === 0;
}

/** Installs Debian's package (root with apt only), as the test preflight installs its other tools. */
export function installSyncthing(log: (message: string) => void): void {
  if (syncthingInstalled()) return;
  log('native-pair: installing Debian\'s syncthing with apt-get');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const result = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'syncthing'], { env, encoding: 'utf8' });
  if (result.status !== 0 || !syncthingInstalled()) {
    throw new Error(`could not install syncthing with apt-get (exit ${result.status}): ${(result.stderr ?? '').trim().split('\n').slice(-4).join(' / ')}`);
  }
}

export interface SyncthingDevice {
  /** Keys and config.xml. */
  configDir: string;
  /** The index database (wiped for a fresh receiver). */
  dataDir: string;
  folder: string;
  address: string;
  id: string;
  ns: Netns;
}

/** Makes keys (inside the namespace, so even key generation has no network) and returns the device id. */
export async function generateDevice(ns: Netns, configDir: string): Promise<string> {
  await mkdir(configDir, { recursive: true });
  await ns.exec(SYNCTHING, ['generate', `--config=${configDir}`, '--no-default-folder', '--skip-port-probing']);
  const out = await ns.exec(SYNCTHING, ['serve', `--config=${configDir}`, `--data=${configDir}`, '--device-id']);
  const id = out.trim().split('\n').pop()!.trim();
  if (!/^[A-Z0-9]{7}(-[A-Z0-9]{7}){7}$/.test(id)) throw new Error(`syncthing printed no device id: ${JSON.stringify(out)}`);
  return id;
}

const escapeXml = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** Writes `self`'s config.xml: one folder shared with `other`, nothing beyond the veth. */
export async function writeConfig(self: SyncthingDevice, other: SyncthingDevice): Promise<void> {
  await mkdir(join(self.folder, '.stfolder'), { recursive: true });
  const device = (d: SyncthingDevice, name: string) =>
    `  <device id="${d.id}" name="${name}" compression="metadata" introducer="false" skipIntroductionRemovals="false" introducedBy="">\n` +
    `    <address>tcp://${d.address}:${SYNCTHING_PORT}</address>\n    <paused>false</paused>\n    <autoAcceptFolders>false</autoAcceptFolders>\n  </device>\n`;
  const xml =
    `<configuration version="36">\n` +
    `  <folder id="${SYNCTHING_FOLDER_ID}" label="bench" path="${escapeXml(self.folder)}" type="sendreceive" rescanIntervalS="3600" fsWatcherEnabled="false" ignorePerms="false" autoNormalize="true">\n` +
    `    <filesystemType>basic</filesystemType>\n    <device id="${self.id}" introducedBy=""></device>\n    <device id="${other.id}" introducedBy=""></device>\n` +
    `    <minDiskFree unit="%">0</minDiskFree>\n    <versioning></versioning>\n  </folder>\n` +
    device(self, 'self') +
    device(other, 'other') +
    `  <gui enabled="false" tls="false"><address>127.0.0.1:0</address></gui>\n` +
    `  <options>\n` +
    `    <listenAddress>tcp://${self.address}:${SYNCTHING_PORT}</listenAddress>\n` +
    `    <globalAnnounceEnabled>false</globalAnnounceEnabled>\n    <localAnnounceEnabled>false</localAnnounceEnabled>\n` +
    `    <relaysEnabled>false</relaysEnabled>\n    <natEnabled>false</natEnabled>\n` +
    `    <urAccepted>-1</urAccepted>\n    <urSeen>3</urSeen>\n    <crashReportingEnabled>false</crashReportingEnabled>\n` +
    `    <autoUpgradeIntervalH>0</autoUpgradeIntervalH>\n    <startBrowser>false</startBrowser>\n` +
    `    <announceLANAddresses>false</announceLANAddresses>\n    <stunKeepaliveStartS>0</stunKeepaliveStartS>\n` +
    `    <setLowPriority>false</setLowPriority>\n  </options>\n` +
    `</configuration>\n`;
  await writeFile(join(self.configDir, 'config.xml'), xml);
}

export interface RunningSyncthing {
  child: ChildProcess;
  output(): string;
  waitFor(pattern: RegExp, timeoutMs: number): Promise<void>;
  stop(): Promise<void>;
}

export function startSyncthing(device: SyncthingDevice): RunningSyncthing {
  const child = device.ns.spawn(
    SYNCTHING,
    ['serve', `--config=${device.configDir}`, `--data=${device.dataDir}`, '--no-browser', '--no-restart', '--no-upgrade', '--no-default-folder', '--logflags=0'],
    {
      env: { ...process.env, STNORESTART: '1', STNOUPGRADE: '1', STNODEFAULTFOLDER: '1', STMONITORED: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  const append = (chunk: Buffer) => (output = (output + chunk.toString()).slice(-20_000));
  child.stdout!.on('data', append);
  child.stderr!.on('data', append);
  return {
    child,
    output: () => output,
    async waitFor(pattern, timeoutMs) {
      const deadline = performance.now() + timeoutMs;
      while (!pattern.test(output)) {
        if (child.exitCode !== null) throw new Error(`syncthing exited (${child.exitCode}) before ${pattern}:\n${output}`);
        if (performance.now() > deadline) throw new Error(`syncthing did not log ${pattern} within ${timeoutMs / 1000} s:\n${output}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    stop: () => stopProcess(child, 5_000),
  };
}
