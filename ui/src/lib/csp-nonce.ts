/**
 * The page's Content-Security-Policy allows <style> elements only with this response's
 * nonce (no 'unsafe-inline'). xterm.js creates a few <style> elements of its own and
 * takes no nonce, so every <style> this document creates gets the nonce stamped at
 * creation, before it is inserted (a nonce set later is ignored). The nonce comes from
 * this very script's tag, which the control plane writes per response. Imported first.
 */
const nonce = (document.currentScript as HTMLScriptElement | null)?.nonce ?? '';

if (nonce) {
  const create = Document.prototype.createElement;
  Document.prototype.createElement = function (this: Document, tagName: string, options?: ElementCreationOptions) {
    const el = create.call(this, tagName, options);
    if (tagName.toLowerCase() === 'style') el.setAttribute('nonce', nonce);
    return el;
  } as typeof Document.prototype.createElement;
}

export {};
