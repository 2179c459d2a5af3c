/** The p-th percentile (0–100) of `values` by nearest rank; null for no values. */
export function percentile(values: number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = Float64Array.from(values).sort();
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

export const MiB = 1024 * 1024;

/** Bytes as MiB with one decimal, the unit of every memory column. */
export const toMiB = (bytes: number) => Math.round((bytes / MiB) * 10) / 10;

/** A figure rounded to `digits` decimals (rows carry numbers, the table formats them). */
export const round = (value: number, digits = 1) => Math.round(value * 10 ** digits) / 10 ** digits;
