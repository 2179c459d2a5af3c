import { describe, expect, it } from 'vitest';
import { SendBufferTarget } from '../../src/engine/send-buffer-target.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

/** A sender that keeps the channel's buffer at 512 KiB while the channel drains `bytesPerMs`. */
class Channel {
  now = 0;
  queued = 512 * KiB;
  constructor(private readonly target: SendBufferTarget) {}
  drain(bytesPerMs: number, ms: number): void {
    for (const end = this.now + ms; this.now < end; this.now += 5) {
      this.target.sample(this.now, this.queued, 512 * KiB);
      this.queued += bytesPerMs * 5;
    }
  }
}
const drive = (target: SendBufferTarget, bytesPerMs: number, ms: number) => new Channel(target).drain(bytesPerMs, ms);

describe('SendBufferTarget', () => {
  it('keeps the most until it has measured the channel', () => {
    const target = new SendBufferTarget(128 * KiB, 1 * MiB);
    expect(target.highWaterMark).toBe(1 * MiB);
    expect(target.lowWaterMark).toBe(256 * KiB);
  });

  it('keeps about 50 ms of what the channel drains, within its bounds', () => {
    const slow = new SendBufferTarget(128 * KiB, 1 * MiB);
    drive(slow, 6_000, 1000); // 6 MB/s: 300 kB
    expect(slow.highWaterMark).toBeGreaterThan(280_000);
    expect(slow.highWaterMark).toBeLessThan(320_000);
    const fast = new SendBufferTarget(128 * KiB, 1 * MiB);
    drive(fast, 100_000, 1000); // 100 MB/s: more than the bound
    expect(fast.highWaterMark).toBe(1 * MiB);
    const crawling = new SendBufferTarget(128 * KiB, 1 * MiB);
    drive(crawling, 100, 1000);
    expect(crawling.highWaterMark).toBe(128 * KiB);
  });

  it('measures only while the buffer holds data: an idle sender is not a slow channel', () => {
    const target = new SendBufferTarget(128 * KiB, 1 * MiB);
    const channel = new Channel(target);
    channel.drain(10_000, 500);
    const before = target.highWaterMark;
    expect(before).toBeGreaterThan(400_000);
    // Nothing to send for a second: the buffer is empty, and the samples say nothing.
    for (const end = channel.now + 1000; channel.now < end; channel.now += 5) target.sample(channel.now, channel.queued, 0);
    expect(target.highWaterMark).toBe(before);
  });

  it('follows the channel when it slows down', () => {
    const target = new SendBufferTarget(128 * KiB, 1 * MiB);
    const channel = new Channel(target);
    channel.drain(30_000, 500);
    expect(target.highWaterMark).toBe(1 * MiB);
    channel.drain(4_000, 500);
    expect(target.highWaterMark).toBeLessThan(250_000);
  });
});
