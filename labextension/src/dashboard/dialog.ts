/**
 * The confirmation dialog (a native `<dialog>`), worded by the core's confirmations.
 */

import { IConfirmation } from '../core/confirm';
import { byId } from './dom';

/** Resolves true only when the user presses the confirming button. */
export function confirmAction(c: IConfirmation): Promise<boolean> {
  const dialog = byId<HTMLDialogElement>('confirm');
  const ok = byId<HTMLButtonElement>('confirm-ok');
  const cancel = byId<HTMLButtonElement>('confirm-cancel');
  byId('confirm-title').textContent = c.title;
  byId('confirm-text').textContent = c.body;
  ok.textContent = c.accept;
  ok.className = c.warn ? 'danger' : 'primary';
  return new Promise(resolve => {
    const finish = (answer: boolean): void => {
      ok.removeEventListener('click', onOk);
      cancel.removeEventListener('click', onCancel);
      dialog.removeEventListener('close', onClose);
      if (dialog.open) {
        dialog.close();
      }
      resolve(answer);
    };
    const onOk = (): void => finish(true);
    const onCancel = (): void => finish(false);
    const onClose = (): void => finish(false); // Escape
    ok.addEventListener('click', onOk);
    cancel.addEventListener('click', onCancel);
    dialog.addEventListener('close', onClose);
    dialog.showModal();
    // Cancel has the focus: a stray Enter backs out instead of acting.
    cancel.focus();
  });
}
