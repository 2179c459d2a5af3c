import type { JoinAnswer, JoinQuestion } from '../../workers/sync-api.ts';
import { h, setText } from './dom.ts';
import { formatBytes } from './format.ts';
import { errorMessage } from './message-page.ts';
import type { Notices } from './notices.ts';

/**
 * Asked when a join's files to keep will not fit in what the browser allows this site:
 * nothing is fetched until the user chooses, instead of filling the storage and stopping
 * half-way.
 */
export class JoinQuestionBanner {
  readonly element: HTMLElement;
  private readonly text = h('p', { 'data-testid': 'join-question-text' });
  private readonly hint = h('p', { class: 'hint', 'data-testid': 'join-question-hint', hidden: true });
  private readonly buttons: HTMLButtonElement[];
  private asked = false;

  constructor(
    answer: (choice: JoinAnswer) => Promise<void>,
    private readonly notices: Notices,
  ) {
    const choose = (choice: JoinAnswer, pick: boolean) => {
      for (const button of this.buttons) button.disabled = true;
      answer(choice)
        .then(() => {
          if (pick) this.notices.info('Every file is online only now. Choose “Keep on this device” on the folders you want here.');
        })
        .catch((error: unknown) => this.notices.error(`Could not apply the choice: ${errorMessage(error)}`))
        .finally(() => {
          for (const button of this.buttons) button.disabled = false;
        });
    };
    const button = (label: string, testId: string, run: () => void) => {
      const element = h('button', { type: 'button', class: 'button', 'data-testid': testId }, label);
      element.addEventListener('click', run);
      return element;
    };
    this.buttons = [
      button('Make it online only', 'join-online-only', () => choose('online', false)),
      button('Pick folders to keep', 'join-pick-folders', () => choose('online', true)),
      button('Keep everything anyway', 'join-keep-all', () => choose('keep', false)),
    ];
    this.element = h(
      'section',
      { class: 'banner is-warning', role: 'alertdialog', 'aria-label': 'This workspace does not fit', 'data-testid': 'join-question', hidden: true },
      this.text,
      this.hint,
      h('div', { class: 'banner-actions' }, ...this.buttons),
    );
  }

  update(question: JoinQuestion | null): void {
    this.element.hidden = question === null;
    if (!question) {
      this.asked = false;
      return;
    }
    if (this.asked) return;
    this.asked = true;
    const room =
      question.freeBytes === null
        ? 'this browser will not let this site store that much'
        : `this browser lets this site store only about ${formatBytes(question.freeBytes)} more`;
    setText(
      this.text,
      `This workspace holds ${formatBytes(question.neededBytes)}, but ${room}. ` +
        'Nothing has been downloaded yet. Online-only files are listed as usual and downloaded when you open them.',
    );
    setText(this.hint, 'Keeping everything anyway will stop when the storage is full, until space is freed.');
    this.hint.hidden = false;
  }
}
