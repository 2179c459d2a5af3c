/** What the shell mounts for a route; `dispose` runs when the user navigates away. */
export interface Page {
  element: HTMLElement;
  dispose(): void;
}

export function staticPage(element: HTMLElement): Page {
  return { element, dispose() {} };
}
