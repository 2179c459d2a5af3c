/** Copies the input's text; falls back to select + execCommand where the Clipboard API is missing or refused. */
export async function copyFromInput(input: HTMLInputElement): Promise<boolean> {
  try {
    if (navigator.clipboard?.writeText) {
      await navigator.clipboard.writeText(input.value);
      return true;
    }
  } catch {
    // Permission refused or document not focused: the selection route still works.
  }
  input.focus();
  input.select();
  return document.execCommand('copy');
}
