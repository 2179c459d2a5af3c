import { describe, expect, it } from 'vitest';
import { BlockBatchSender } from '../../src/engine/block-batches.ts';
import type { UploadApi } from '../../src/engine/types.ts';
import type { BlockHash, BlockUpload } from '../../src/protocol/index.ts';

/** An UploadApi recording what the sender asks of it; `answer` decides each batch. */
function recorder(answer: (batch: readonly BlockUpload[]) => Promise<'ok' | 'unsupported'> = async () => 'ok') {
  const calls = { batches: [] as number[][], puts: [] as BlockHash[], inFlight: 0, maxInFlight: 0 };
  const api: UploadApi = {
    missingBlocks: async () => [],
    commit: async () => ({ sjid: 1 }),
    commitBatch: async () => ({ sjids: [] }),
    putBlock: async (hash) => {
      calls.puts.push(hash);
    },
    putBlocks: async (batch) => {
      calls.batches.push(batch.map((block) => block.bytes.length));
      calls.inFlight++;
      calls.maxInFlight = Math.max(calls.maxInFlight, calls.inFlight);
      try {
        await new Promise((resolve) => setTimeout(resolve, 5));
        return (await answer(batch)) === 'ok' ? { created: batch.length, existing: 0 } : null;
      } finally {
        calls.inFlight--;
      }
    },
  };
  return { api, calls };
}
const blockOf = (i: number, size: number): BlockUpload => ({ hash: i.toString(16).padStart(64, '0') as BlockHash, bytes: new Uint8Array(size) });

describe('BlockBatchSender', () => {
  it('cuts batches at the block and byte limits, keeps at most 2 in flight, and reports every block once', async () => {
    const { api, calls } = recorder();
    const sent: BlockHash[] = [];
    const sender = new BlockBatchSender(api, { maxBlocks: 4, maxBytes: 1000, onSent: (hash) => sent.push(hash) });
    const blocks = [300, 300, 300, 300, 100, 100, 100, 100, 100, 900, 200].map((size, i) => blockOf(i, size));
    for (const block of blocks) await sender.add(block);
    await sender.finish();
    expect(calls.batches).toEqual([[300, 300, 300], [300, 100, 100, 100], [100, 100], [900], [200]]);
    expect(calls.maxInFlight).toBe(2);
    expect(sent.sort()).toEqual(blocks.map((block) => block.hash).sort());
    expect(calls.puts).toEqual([]);
  });

  it('sends single PUTs from the first refused batch on, and never asks again', async () => {
    const { api, calls } = recorder(async () => 'unsupported');
    const sent: BlockHash[] = [];
    const sender = new BlockBatchSender(api, { maxBlocks: 3, onSent: (hash) => sent.push(hash) });
    const blocks = Array.from({ length: 10 }, (_, i) => blockOf(i, 10));
    for (const block of blocks) await sender.add(block);
    await sender.finish();
    // The first two batches were in flight together; neither went through.
    expect(calls.batches.length).toBeLessThanOrEqual(2);
    expect(calls.puts.sort()).toEqual(blocks.map((block) => block.hash).sort());
    expect(sent.length).toBe(10);
  });

  it('fails with the first failed batch, and add refuses once it is known', async () => {
    const { api } = recorder(async () => {
      throw new Error('server down');
    });
    const sender = new BlockBatchSender(api, { maxBlocks: 1 });
    await sender.add(blockOf(1, 10));
    await sender.add(blockOf(2, 10));
    await expect(sender.finish()).rejects.toThrow('server down');
    await expect(sender.add(blockOf(3, 10))).rejects.toThrow('server down');
  });
});
