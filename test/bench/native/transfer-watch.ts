import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { receivedBytes, threadCpuSeconds, treeCpuSeconds } from './proc-stats.ts';

/**
 * Watches one receiving daemon (nearsync or Syncthing, the same way) from its start until every
 * file is in its folder under its final name with its full size, then checks the bytes.
 * Samples every 10 ms: the interface's received bytes (from the receiver's namespace) and the
 * files' sizes.
 */

export interface ExpectedFile {
  name: string;
  bytes: Buffer;
}

export interface TransferFigures {
  /** First MiB received on the link → 99.9 % of the files' bytes received, in seconds. */
  networkSeconds: number;
  /** File bytes over that span, MB/s (1e6 B/s). */
  networkMbps: number;
  /** Receiver start → every file complete in the folder, seconds. */
  completeSeconds: number;
  /** Last network byte of the 99.9 % mark → every file complete, seconds. */
  tailSeconds: number;
  /** CPU seconds of the receiver's processes from the first MiB on the link to completion, per GiB of files. */
  cpuSecondsPerGiB: number;
  /** CPU seconds of the receiver's processes from its start to completion (startup included). */
  cpuTotalSeconds: number;
  /** Bytes the link received in all (framing, TLS, index exchange on top of the files). */
  linkBytes: number;
  /** The receiver's CPU seconds by thread name, first MiB → complete, as the CPU per GiB (its main process only). */
  threads: Record<string, number>;
}

const SAMPLE_MS = 10;
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

export async function watchTransfer(options: {
  receiverPid: number;
  /** A process that lives in the receiver's network namespace for the whole run (the receiver may not be there yet). */
  namespacePid: number;
  iface: string;
  folder: string;
  files: ExpectedFile[];
  /** performance.now() when the receiver was started. */
  startedAt: number;
  timeoutMs: number;
  /** Why it failed, if the receiver died: its output. */
  describeFailure(): string;
  alive(): boolean;
}): Promise<TransferFigures> {
  const total = options.files.reduce((sum, file) => sum + file.bytes.length, 0);
  const rxAtStart = await receivedBytes(options.namespacePid, options.iface);
  let firstMiBAt: number | null = null;
  let cpuAtFirstMiB = 0;
  let threadsAtFirstMiB: Record<string, number> = {};
  let mostAt: number | null = null;
  let rx = rxAtStart;
  const deadline = options.startedAt + options.timeoutMs;
  for (;;) {
    const now = performance.now();
    rx = await receivedBytes(options.namespacePid, options.iface).catch(() => rx);
    const got = rx - rxAtStart;
    if (firstMiBAt === null && got >= MiB) {
      firstMiBAt = now;
      cpuAtFirstMiB = await treeCpuSeconds(options.receiverPid);
      threadsAtFirstMiB = await threadCpuSeconds(options.receiverPid);
    }
    if (mostAt === null && got >= 0.999 * total) mostAt = now;
    if (await allComplete(options.folder, options.files)) {
      const cpu = await treeCpuSeconds(options.receiverPid);
      const threadsNow = await threadCpuSeconds(options.receiverPid);
      const threads = Object.fromEntries(Object.entries(threadsNow).map(([name, seconds]) => [name, seconds - (threadsAtFirstMiB[name] ?? 0)]));
      const completeAt = performance.now();
      await checkBytes(options.folder, options.files);
      if (firstMiBAt === null || mostAt === null) throw new Error(`the files are complete but the link received only ${got} bytes (${total} expected): not over the link?`);
      const networkSeconds = (mostAt - firstMiBAt) / 1000;
      return {
        networkSeconds,
        networkMbps: (0.999 * total - MiB) / 1e6 / networkSeconds,
        completeSeconds: (completeAt - options.startedAt) / 1000,
        tailSeconds: (completeAt - mostAt) / 1000,
        cpuSecondsPerGiB: (cpu - cpuAtFirstMiB) / (total / GiB),
        cpuTotalSeconds: cpu,
        linkBytes: rx - rxAtStart,
        threads,
      };
    }
    if (!options.alive()) throw new Error(`the receiver exited before the files were complete:\n${options.describeFailure()}`);
    if (now > deadline) throw new Error(`the files were not complete after ${options.timeoutMs / 1000} s (${got} bytes received):\n${options.describeFailure()}`);
    await new Promise((resolve) => setTimeout(resolve, SAMPLE_MS));
  }
}

async function allComplete(folder: string, files: ExpectedFile[]): Promise<boolean> {
  for (const file of files) {
    const info = await stat(join(folder, file.name)).catch(() => null);
    if (!info || info.size !== file.bytes.length) return false;
  }
  return true;
}

async function checkBytes(folder: string, files: ExpectedFile[]): Promise<void> {
  for (const file of files) {
    const got = await readFile(join(folder, file.name));
    if (!got.equals(file.bytes)) throw new Error(`${file.name} in ${folder} is complete in size but its bytes differ from the sender's`);
  }
}
