// The records panel beside the live call: the patient's documents (PDF, image, text shown in
// the page), previous notes, this consultation's note (saving again makes a new version), and
// sharing one document with the specialist. Everything goes when the consultation ends.

import { api, apiBytes, apiText, paths } from './api.js';
import { app, describeParticipant } from './app.js';
import { formatDate, formatDateTime, formatTime } from './format.js';
import { renderPdf } from './pdfview.js';
import { $, announce, clear, h, plainError } from './screens.js';

const panel = {
  consultationId: null,
  generation: 0,          // bumped on every close: late answers from before are dropped
  data: null,             // the agent's records answer
  objectUrls: new Set(),
  pdf: null,              // the open PDF's handle
  openDocument: null,
  specialists: () => [],
};

function root() {
  return $('records');
}

function live(generation) {
  return generation === panel.generation && panel.consultationId !== null;
}

/** Plain words for why the records cannot be shown. */
function recordsError(err) {
  if (err.code === 'not_live') return 'The records open when the consultation has started.';
  if (err.code === 'consultation_ended' || err.code === 'grant_revoked' || err.status === 410) {
    return 'The consultation has ended, so its records are closed.';
  }
  if (err.code === 'device_not_compliant') return 'The records are hidden while this laptop fails its security check.';
  return plainError(err, 'The records could not be opened. Please try again.');
}

/** Open the panel for a live consultation; `specialists()` lists who a document can be shared with. */
export async function openRecords(consultationId, { specialists } = {}) {
  if (panel.consultationId === consultationId && panel.data) return;
  closeRecords();
  panel.consultationId = consultationId;
  panel.specialists = specialists || (() => []);
  const generation = panel.generation;
  const node = root();
  node.dataset.records = 'loading';
  node.append(h('p', { className: 'loading-line' }, 'Opening the patient’s records…'));
  try {
    const data = await api(paths.records(consultationId));
    if (!live(generation)) return;
    panel.data = data;
    render();
  } catch (err) {
    if (!live(generation)) return;
    clear(node);
    node.dataset.records = 'error';
    const retry = h('button', { type: 'button', className: 'control', onclick: () => {
      const id = panel.consultationId;
      closeRecords();
      openRecords(id, { specialists });
    } }, 'Try again');
    node.append(h('p', { className: 'error-box', role: 'alert' }, recordsError(err)));
    if (err.code !== 'consultation_ended' && err.status !== 410) node.append(retry);
  }
}

/** Remove everything the panel shows from the page and free what it holds. */
export function closeRecords() {
  panel.generation += 1;
  closeDocumentView();
  panel.consultationId = null;
  panel.data = null;
  for (const url of panel.objectUrls) URL.revokeObjectURL(url);
  panel.objectUrls.clear();
  const node = root();
  if (node) {
    clear(node);
    node.dataset.records = 'closed';
  }
}

/** The specialists in the call changed: update the share buttons of the open document. */
export function refreshSharing() {
  const slot = document.getElementById('share-slot');
  if (slot && panel.openDocument) renderShare(slot, panel.openDocument);
}

function render() {
  const node = root();
  clear(node);
  node.dataset.records = 'open';
  const { documents = [], notes = [] } = panel.data || {};
  if (panel.data && panel.data.grant_expires_at) node.dataset.grantExpiresAt = panel.data.grant_expires_at;

  // Documents.
  const docs = h('section', { className: 'records-part', 'aria-labelledby': 'docs-title' },
    h('h3', { id: 'docs-title' }, 'Documents'));
  if (documents.length === 0) {
    docs.append(h('p', { className: 'empty' }, 'This patient has no documents.'));
  } else {
    const list = h('ul', { className: 'documents' });
    for (const doc of documents) {
      list.append(h('li', { dataset: { documentId: doc.id, contentType: doc.content_type } },
        h('button', {
          type: 'button', className: 'doc-button', dataset: { action: 'open-document' },
          onclick: (event) => openDocument(doc, event.currentTarget),
        }, h('span', { className: 'doc-title' }, doc.title),
        h('span', { className: 'sub' }, [kindWords(doc), formatDate(doc.document_date), doc.author].filter(Boolean).join(' · ')))));
    }
    docs.append(list);
  }
  const viewer = h('section', { className: 'viewer', id: 'viewer', 'aria-labelledby': 'viewer-title', hidden: true });
  node.append(docs, viewer, notesSection(notes));
}

function kindWords(doc) {
  const type = (doc.content_type || '').toLowerCase();
  const kind = doc.doc_type ? doc.doc_type.replace(/_/g, ' ') : '';
  const format = type === 'application/pdf' ? 'PDF' : type.startsWith('image/') ? 'picture' : type.startsWith('text/') ? 'text' : '';
  return [kind, format].filter(Boolean).join(', ');
}

function closeDocumentView() {
  if (panel.pdf) panel.pdf.destroy();
  panel.pdf = null;
  panel.openDocument = null;
  const viewer = document.getElementById('viewer');
  if (viewer) {
    for (const img of viewer.querySelectorAll('img')) img.removeAttribute('src');
    clear(viewer);
    viewer.hidden = true;
    delete viewer.dataset.documentId;
  }
}

async function openDocument(doc, opener) {
  closeDocumentView();
  const generation = panel.generation;
  const viewer = $('viewer');
  viewer.hidden = false;
  viewer.dataset.documentId = doc.id;
  panel.openDocument = doc;
  const close = h('button', { type: 'button', className: 'control small', dataset: { action: 'close-document' }, onclick: () => {
    closeDocumentView();
    if (opener && opener.isConnected) opener.focus();
  } }, 'Close document');
  const body = h('div', { className: 'viewer-body', dataset: { documentId: doc.id } });
  const shareSlot = h('div', { id: 'share-slot', className: 'share' });
  viewer.append(
    h('div', { className: 'viewer-head' }, h('h3', { id: 'viewer-title', tabindex: '-1' }, doc.title), close),
    shareSlot, body);
  renderShare(shareSlot, doc);
  $('viewer-title').focus();
  const url = paths.document(panel.consultationId, doc.id);
  const type = (doc.content_type || '').toLowerCase();
  body.dataset.state = 'loading';
  const loadingLine = h('p', { className: 'loading-line' }, 'Opening the document…');
  body.append(loadingLine);
  try {
    if (type === 'application/pdf') {
      const { buffer } = await apiBytes(url);
      if (!live(generation) || panel.openDocument !== doc) return;
      loadingLine.remove();
      const pages = h('div', { className: 'pdf-pages' });
      body.append(pages);
      await renderPdf(pages, buffer, {
        title: doc.title,
        width: Math.max(300, body.clientWidth - 8),
        isCancelled: () => !live(generation) || panel.openDocument !== doc,
        onHandle: (handle) => {
          if (panel.openDocument === doc) panel.pdf = handle;
          else handle.destroy();
        },
      });
    } else if (type.startsWith('image/')) {
      // Straight from the agent (img-src 'self'); it answers no-store.
      const img = h('img', { alt: doc.title, className: 'doc-image' });
      await new Promise((resolve, reject) => {
        img.addEventListener('load', resolve, { once: true });
        img.addEventListener('error', () => reject(Object.assign(new Error('image'), { code: 'image_failed' })), { once: true });
        img.src = url;
      });
      if (!live(generation) || panel.openDocument !== doc) return;
      loadingLine.remove();
      body.append(img);
    } else if (type.startsWith('text/') || type === 'application/json') {
      const text = await apiText(url);
      if (!live(generation) || panel.openDocument !== doc) return;
      loadingLine.remove();
      body.append(h('pre', { className: 'doc-text', tabindex: '0', 'aria-label': doc.title }, text));
    } else {
      loadingLine.remove();
      body.append(h('p', {}, 'This kind of document cannot be shown on this laptop.'));
    }
    body.dataset.state = 'shown';
  } catch (err) {
    if (!live(generation) || panel.openDocument !== doc) return;
    body.dataset.state = 'error';
    clear(body);
    body.append(h('p', { className: 'error-box', role: 'alert' },
      err.code === 'image_failed' ? 'This picture could not be shown.'
        : err.status ? recordsError(err) : 'This document could not be shown.'));
  }
}

function renderShare(slot, doc) {
  clear(slot);
  const specialists = panel.specialists();
  if (specialists.length === 0) {
    slot.append(h('p', { className: 'sub' }, 'When a specialist is in the call you can show them this document.'));
    return;
  }
  for (const s of specialists) {
    const done = h('span', { className: 'shared', 'aria-live': 'polite' });
    const button = h('button', {
      type: 'button', className: 'control small', dataset: { action: 'share', participant: s.id },
    }, `Share with ${s.name || 'the specialist'}`);
    button.addEventListener('click', async () => {
      button.disabled = true;
      try {
        await api(paths.shares(panel.consultationId), { method: 'POST', body: { document_id: doc.id, participant_id: s.id } });
        done.textContent = `Shared with ${s.name || 'the specialist'} at ${formatTime(new Date())}.`;
        done.dataset.shared = 'true';
        announce(`${doc.title} is shared with ${describeParticipant(s)}.`);
      } catch (err) {
        button.disabled = false;
        done.textContent = plainError(err, 'The document could not be shared. Please try again.');
      }
    });
    slot.append(h('p', {}, button, ' ', done));
  }
}

// --- notes ----------------------------------------------------------------------------

function mine(note) {
  return app.user && note.author_id === app.user.id;
}

function latest(note) {
  const versions = note.versions || [];
  return versions[versions.length - 1] || { text: '', version: note.latest_version, created_at: note.created_at };
}

function notesSection(notes) {
  const part = h('section', { className: 'records-part', 'aria-labelledby': 'notes-title' },
    h('h3', { id: 'notes-title' }, 'Notes'));
  const current = notes.find((n) => n.consultation_id === panel.consultationId && mine(n)) || null;
  part.append(noteEditor(current));
  const previous = notes.filter((n) => n !== current)
    .sort((a, b) => Date.parse(latest(b).created_at) - Date.parse(latest(a).created_at));
  part.append(h('h4', {}, 'Previous notes'));
  if (previous.length === 0) {
    part.append(h('p', { className: 'empty' }, 'No previous notes.'));
  } else {
    const list = h('ol', { className: 'notes' });
    for (const note of previous) list.append(noteItem(note));
    part.append(list);
  }
  return part;
}

function noteItem(note) {
  const last = latest(note);
  const who = mine(note) ? 'You' : 'Another clinician';
  const item = h('li', { className: 'note', dataset: { noteId: note.id, version: String(note.latest_version) } },
    h('p', { className: 'note-head' }, `${formatDateTime(last.created_at)} · ${who}`
      + (note.latest_version > 1 ? ` · version ${note.latest_version}` : '')),
    h('p', { className: 'note-text' }, last.text));
  const older = (note.versions || []).slice(0, -1).reverse();
  if (older.length) {
    const details = h('details', {}, h('summary', {}, older.length === 1 ? 'The earlier version' : `The ${older.length} earlier versions`));
    for (const v of older) {
      details.append(h('div', { className: 'note-version', dataset: { version: String(v.version) } },
        h('p', { className: 'note-head' }, `Version ${v.version}, ${formatDateTime(v.created_at)}`),
        h('p', { className: 'note-text' }, v.text)));
    }
    item.append(details);
  }
  return item;
}

function noteEditor(current) {
  let note = current;
  const box = h('div', { className: 'note-editor', dataset: { noteId: note ? note.id : '', version: note ? String(note.latest_version) : '0' } });
  const area = h('textarea', { id: 'note-text', rows: '8', maxlength: '100000', 'aria-describedby': 'note-saved' });
  area.value = note ? latest(note).text : '';
  const saved = h('p', { id: 'note-saved', className: 'sub', 'aria-live': 'polite' },
    note ? `Saved at ${formatTime(latest(note).created_at)} (version ${note.latest_version}).` : 'Not saved yet.');
  const save = h('button', { type: 'button', className: 'control primary', id: 'note-save', dataset: { action: 'save-note' } }, 'Save note');
  save.addEventListener('click', async () => {
    const text = area.value.trim();
    if (!text) {
      saved.textContent = 'Write the note first.';
      area.focus();
      return;
    }
    if (note && text === latest(note).text) {
      saved.textContent = `No changes since version ${note.latest_version}.`;
      return;
    }
    const id = panel.consultationId;
    const generation = panel.generation;
    save.disabled = true;
    try {
      const out = note
        ? await api(paths.noteVersions(id, note.id), { method: 'POST', body: { text, base_version: note.latest_version } })
        : await api(paths.notes(id), { method: 'POST', body: { text } });
      if (!live(generation)) return;
      note = out;
      box.dataset.noteId = out.id;
      box.dataset.version = String(out.latest_version);
      saved.textContent = `Saved at ${formatTime(latest(out).created_at || new Date())} (version ${out.latest_version}).`;
      announce(out.latest_version > 1 ? `Note saved as version ${out.latest_version}.` : 'Note saved.');
    } catch (err) {
      if (!live(generation)) return;
      saved.textContent = err.code === 'version_conflict'
        ? 'Someone saved this note since you opened it. Your text is still here: copy it, then reopen the records to see theirs.'
        : `Not saved. ${recordsError(err)}`;
      announce('The note was not saved.', 'warning');
    } finally {
      save.disabled = false;
    }
  });
  box.append(
    h('label', { for: 'note-text' }, 'Your note for this consultation'),
    area, h('div', { className: 'actions' }, save), saved);
  return box;
}
