import type { KeepMode } from '../../workers/sync-api.ts';
import { h } from './dom.ts';

/** What the page can do about where a folder's files live ('' is the whole workspace). */
export interface KeepActions {
  set(folder: string, mode: KeepMode): Promise<void>;
}

const LABELS: Record<KeepMode, string> = {
  keep: 'Keep on this device',
  online: 'Online only',
};

/**
 * A small menu choosing whether a folder (or the workspace) is kept on this device or online
 * only. A failure is reported like a file action's (the page shows it as a notice).
 */
export function keepSelect(folder: string, actions: KeepActions, label: string): { element: HTMLSelectElement; show(mode: KeepMode): void } {
  const select = h(
    'select',
    { class: 'keep-select small', 'data-testid': 'keep-select', 'data-folder': folder, 'aria-label': label, title: label },
    ...(['keep', 'online'] as const).map((mode) => h('option', { value: mode }, LABELS[mode])),
  );
  let shown: KeepMode = 'keep';
  const show = (mode: KeepMode) => {
    shown = mode;
    select.value = mode;
  };
  select.addEventListener('change', () => {
    const mode = select.value === 'online' ? 'online' : 'keep';
    actions.set(folder, mode).catch((error: unknown) => {
      select.value = shown;
      select.dispatchEvent(
        new CustomEvent('file-action-error', { bubbles: true, detail: `Could not change where ${folder || 'the workspace'} is kept: ${String((error as Error)?.message ?? error)}` }),
      );
    });
  });
  return { element: select, show };
}
