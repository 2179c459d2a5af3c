import { h } from './dom.ts';

let dialogCount = 0;

/**
 * A modal dialog on the native <dialog> element: showModal() makes the rest of the page
 * inert (focus stays inside) and Escape closes it. Labelled by its heading; on close, focus
 * goes back to the control that opened it, or to `fallback` when that control is gone (a
 * file row the folder view recycled while the dialog was open).
 */
export class ModalDialog {
  readonly element: HTMLDialogElement;
  /** Where the dialog's content goes. */
  readonly body: HTMLElement;
  private opener: Element | null = null;
  private readonly closeHandlers: Array<() => void> = [];

  constructor(title: string, testId: string, private readonly fallback: () => HTMLElement | null = () => null) {
    const headingId = `dialog-title-${++dialogCount}`;
    const close = h('button', { type: 'button', class: 'small dialog-close', 'data-testid': 'dialog-close' }, 'Close');
    close.addEventListener('click', () => this.close());
    this.body = h('div', { class: 'dialog-body' });
    this.element = h(
      'dialog',
      { class: 'modal', 'aria-labelledby': headingId, 'data-testid': testId },
      h('header', { class: 'dialog-header' }, h('h2', { id: headingId }, title), close),
      this.body,
    );
    // Escape (the 'cancel' event) and the Close button both end in 'close'.
    this.element.addEventListener('close', () => this.afterClose());
  }

  onClose(handler: () => void): void {
    this.closeHandlers.push(handler);
  }

  open(): void {
    this.opener = document.activeElement;
    document.body.append(this.element);
    this.element.showModal();
  }

  close(): void {
    if (this.element.open) this.element.close();
  }

  private afterClose(): void {
    this.element.remove();
    const target = this.opener instanceof HTMLElement && this.opener.isConnected ? this.opener : this.fallback();
    target?.focus();
    for (const handler of this.closeHandlers) handler();
  }
}
