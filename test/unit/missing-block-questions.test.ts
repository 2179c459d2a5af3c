import { describe, expect, it } from 'vitest';
import { MissingBlockQuestions } from '../../src/engine/missing-block-questions.ts';
import type { BlockHash } from '../../src/protocol/index.ts';

const hash = (n: number) => n.toString(16).padStart(64, '0') as BlockHash;

describe('MissingBlockQuestions', () => {
  it('gathers questions asked while requests are out into the next request, and answers each', async () => {
    const requests: BlockHash[][] = [];
    const answers: ((missing: BlockHash[]) => void)[] = [];
    const questions = new MissingBlockQuestions((hashes) => {
      requests.push(hashes);
      return new Promise((resolve) => answers.push(resolve));
    }, 1);
    const first = questions.lacks(hash(1));
    const rest = [2, 3, 4, 3].map((n) => questions.lacks(hash(n)));
    expect(requests).toEqual([[hash(1)]]);
    answers[0]([hash(1)]);
    await first;
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(requests[1]).toEqual([hash(2), hash(3), hash(4)]);
    answers[1]([hash(3)]);
    expect(await Promise.all([first, ...rest])).toEqual([true, false, true, false, true]);
  });

  it('fails every question of a failed request, and asks anew afterwards', async () => {
    let fail = true;
    const questions = new MissingBlockQuestions(async (hashes) => {
      if (fail) throw new Error('server down');
      return hashes;
    });
    await expect(questions.lacks(hash(1))).rejects.toThrow('server down');
    fail = false;
    expect(await questions.lacks(hash(1))).toBe(true);
  });
});
