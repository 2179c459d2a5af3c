/**
 * Which rows of a fixed-row-height list are on screen, for a list that scrolls with the page.
 * The list's body is sized to every row (so the scroll bar is true) and only the rows that
 * intersect the viewport, plus a margin, exist in the DOM.
 */
export interface RowRange {
  /** First row index to render (inclusive). */
  start: number;
  /** Last row index to render (exclusive). */
  end: number;
}

/** The rows of `total` that intersect the viewport, widened by `overscan` rows each side. */
export function visibleRows(bodyTop: number, viewportHeight: number, rowHeight: number, total: number, overscan: number): RowRange {
  if (total === 0 || rowHeight <= 0) return { start: 0, end: 0 };
  const first = Math.floor(Math.max(0, -bodyTop) / rowHeight);
  const last = Math.ceil(Math.max(0, viewportHeight - bodyTop) / rowHeight);
  return { start: Math.max(0, Math.min(total, first - overscan)), end: Math.max(0, Math.min(total, last + overscan)) };
}

/** Whether `inner` lies within `outer`. */
export function covers(outer: RowRange, inner: RowRange): boolean {
  return inner.start >= outer.start && inner.end <= outer.end;
}
