import { E2eHarness } from '../e2e/harness.ts';
import { benchAppTransfer } from './app-transfer.ts';
import { numericFlags, printRows } from './report.ts';

/**
 * `npm run bench [-- --size-mib 64 --repeats 3]`: real server on loopback, real Chromium.
 * Figures are reported, never asserted: these machines are shared and noisy, so every row
 * carries a baseline measured in the same run.
 */
const flags = numericFlags(process.argv.slice(2), { 'size-mib': 64, repeats: 3 });
const harness = await E2eHarness.start();
try {
  printRows(await benchAppTransfer(harness, flags['size-mib'], flags.repeats));
} finally {
  await harness.close();
}
