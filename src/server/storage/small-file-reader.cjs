'use strict';
// Worker thread of SmallFileReadPool (small-file-reads.ts): reads whole small files with
// synchronous calls. On a warm page cache that is one open, read and close in a few
// microseconds, where the event loop's callback calls cost five to ten times as much CPU
// per file; here the blocking is this thread's alone.
const fs = require('node:fs');
const { parentPort } = require('node:worker_threads');

const MISSING = -1;
const TOO_LARGE = -2;
const FAILED = -3;

parentPort.on('message', (job) => {
  const { id, paths, maxBytes } = job;
  const sizes = new Int32Array(paths.length);
  const errors = [];
  let out = Buffer.allocUnsafeSlow(Math.max(maxBytes, Math.min(paths.length * 4096, 8 * maxBytes)));
  let used = 0;
  for (let i = 0; i < paths.length; i++) {
    let fd;
    try {
      fd = fs.openSync(paths[i], 'r');
    } catch (err) {
      sizes[i] = err.code === 'ENOENT' ? MISSING : FAILED;
      if (sizes[i] === FAILED) errors.push({ index: i, code: err.code, message: err.message });
      continue;
    }
    try {
      if (used + maxBytes > out.length) {
        const grown = Buffer.allocUnsafeSlow(Math.max(out.length * 2, used + maxBytes));
        out.copy(grown, 0, 0, used);
        out = grown;
      }
      // Asking for maxBytes and getting them all means the file is at least that large.
      const read = fs.readSync(fd, out, used, maxBytes, 0);
      if (read >= maxBytes) {
        sizes[i] = TOO_LARGE;
        continue;
      }
      used += read;
      sizes[i] = read;
    } catch (err) {
      sizes[i] = FAILED;
      errors.push({ index: i, code: err.code, message: err.message });
    } finally {
      fs.closeSync(fd);
    }
  }
  // A fresh ArrayBuffer of exactly the bytes read, moved (not copied) to the main thread.
  const bytes = new ArrayBuffer(used);
  out.copy(Buffer.from(bytes), 0, 0, used);
  parentPort.postMessage({ id, sizes, bytes, errors }, [bytes, sizes.buffer]);
});
