/**
 * `nearsync peer --server URL --invite LINK --dir PATH [--lan] [--port N] [--cache-only]`:
 * the native LAN peer (issue 4; being built).
 */
console.error('nearsync peer: not built yet');
process.exitCode = 1;
