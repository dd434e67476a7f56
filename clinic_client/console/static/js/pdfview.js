// PDF documents rendered into canvases with the vendored pdf.js (vendor/pdfjs/README.md).
// Loaded only when a PDF is opened. No eval, no WebAssembly, a same-origin module worker.

const PDFJS = '/assets/vendor/pdfjs/pdf.min.mjs';
const WORKER = '/assets/vendor/pdfjs/pdf.worker.min.mjs';
const MAX_PAGES = 50;

let loading = null;

function library() {
  if (!loading) {
    loading = import(PDFJS).then((lib) => {
      lib.GlobalWorkerOptions.workerSrc = WORKER;
      return lib;
    }).catch((err) => {
      loading = null;
      throw err;
    });
  }
  return loading;
}

/**
 * Render every page of a PDF (given as bytes) into `container`, one canvas per page with its
 * text beside it for screen readers. Resolves to a handle whose destroy() frees everything.
 */
export async function renderPdf(container, buffer, { title, width, isCancelled = () => false, onHandle = () => {} }) {
  const lib = await library();
  const task = lib.getDocument({
    data: new Uint8Array(buffer),
    isEvalSupported: false,
    useWasm: false,
    enableXfa: false,
    disableAutoFetch: true,
    verbosity: lib.VerbosityLevel ? lib.VerbosityLevel.ERRORS : 0,
  });
  const handle = {
    destroyed: false,
    destroy() {
      if (this.destroyed) return;
      this.destroyed = true;
      task.destroy().catch(() => {});
      for (const canvas of container.querySelectorAll('canvas')) {
        // Drop the pixels now rather than when the garbage collector gets round to it.
        canvas.width = 0;
        canvas.height = 0;
      }
    },
  };
  onHandle(handle);
  const pdf = await task.promise;
  const pages = Math.min(pdf.numPages, MAX_PAGES);
  const ratio = window.devicePixelRatio || 1;
  for (let n = 1; n <= pages; n += 1) {
    if (handle.destroyed || isCancelled()) break;
    const page = await pdf.getPage(n);
    const base = page.getViewport({ scale: 1 });
    const scale = Math.max(0.5, (width || 600) / base.width);
    const viewport = page.getViewport({ scale: scale * ratio });
    const canvas = document.createElement('canvas');
    canvas.width = Math.floor(viewport.width);
    canvas.height = Math.floor(viewport.height);
    canvas.className = 'pdf-page';
    canvas.setAttribute('role', 'img');
    canvas.setAttribute('aria-label', `${title}, page ${n} of ${pdf.numPages}`);
    canvas.dataset.page = String(n);
    const figure = document.createElement('figure');
    figure.className = 'pdf-figure';
    figure.append(canvas);
    // The page's words, so a screen reader (and a search with Ctrl+F) can reach them.
    const content = await page.getTextContent();
    const text = content.items.map((item) => ('str' in item ? item.str + (item.hasEOL ? '\n' : ' ') : '')).join('').trim();
    const caption = document.createElement('figcaption');
    caption.className = 'pdf-caption';
    const label = document.createElement('span');
    label.textContent = `Page ${n} of ${pdf.numPages}`;
    caption.append(label);
    if (text) {
      const details = document.createElement('details');
      const summary = document.createElement('summary');
      summary.textContent = `Text of page ${n}`;
      const body = document.createElement('p');
      body.className = 'pdf-text';
      body.textContent = text;
      details.append(summary, body);
      caption.append(details);
    }
    figure.append(caption);
    if (handle.destroyed || isCancelled()) break;
    container.append(figure);
    await page.render({ canvasContext: canvas.getContext('2d'), viewport, canvas }).promise;
    page.cleanup();
  }
  if (pdf.numPages > MAX_PAGES && !handle.destroyed) {
    const more = document.createElement('p');
    more.textContent = `Only the first ${MAX_PAGES} of ${pdf.numPages} pages are shown.`;
    container.append(more);
  }
  container.dataset.pages = String(pages);
  container.dataset.rendered = 'true';
  return handle;
}
