import { setAttribute } from './dom.ts';

/** A native <progress> that only touches the DOM when its value moves. */
export class ProgressBar {
  readonly element: HTMLProgressElement;
  private done = -1;
  private total = -1;

  constructor(label: string, className = 'bar') {
    this.element = document.createElement('progress');
    this.element.className = className;
    this.element.setAttribute('aria-label', label);
  }

  update(done: number, total: number): void {
    if (done === this.done && total === this.total) return;
    this.done = done;
    this.total = total;
    // An empty file or workspace is complete, and <progress max=0> is invalid.
    const max = total > 0 ? total : 1;
    const value = total > 0 ? Math.min(done, total) : 1;
    this.element.max = max;
    this.element.value = value;
    setAttribute(this.element, 'aria-valuetext', `${Math.floor((value / max) * 100)}%`);
  }
}
