// Clients: a searchable, paginated list, filtered by tag and by segment; create, edit,
// delete; tags made and set in bulk on the clients ticked or on a whole segment; CSV files
// of any size uploaded with a progress bar (the import runs on the server), and export.

import { gql } from '../api.js';
import { field, form, h, table, when } from '../dom.js';
import { t } from '../i18n.js';
import { segmentBuilder } from '../segment.js';

const LIST = `query($first: Int, $after: String, $search: String, $tagId: ID, $segment: SegmentInput) {
  clients(first: $first, after: $after, search: $search, tagId: $tagId, segment: $segment) {
    totalCount pageInfo { hasNextPage endCursor }
    nodes { id email fullName comment unsubscribedAt createdAt tags { id name } suppression { reason since } }
  }
}`;
const TAGS = '{ tags { id name clientCount } }';
const PAGE = 20;

export async function page() {
  let search = '';
  let tagFilter = '';
  let segmentFilter = null;
  let cursors = [null]; // the `after` of each page seen, for "previous"
  let editing = null;
  let { tags, attributeKeys } = await gql('{ tags { id name clientCount } attributeKeys }');
  const ticked = new Set();

  const heading = h('h1', {}, t('clients.title'));
  const listBox = h('div', { 'aria-live': 'polite' });
  const formBox = h('section', { 'aria-labelledby': 'client-form' });
  const searchInput = h('input', { id: 'client-search', type: 'search', placeholder: t('clients.searchPlaceholder') });
  let timer;
  searchInput.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      search = searchInput.value;
      cursors = [null];
      load();
    }, 250);
  });

  // Tags: the filter, making one, and setting one on the clients ticked.
  const tagSelect = h('select', { id: 'client-tag' });
  const bulkSelect = h('select', { 'aria-label': t('clients.tagToApply') });
  const tagStatus = h('p', { role: 'status' });
  function renderTags() {
    tagSelect.replaceChildren(h('option', { value: '' }, t('clients.allTags')),
      ...tags.map((tag) => h('option', { value: tag.id, selected: tag.id === tagFilter }, `${tag.name} (${tag.clientCount})`)));
    bulkSelect.replaceChildren(...tags.map((tag) => h('option', { value: tag.id }, tag.name)));
  }
  async function reloadTags() {
    tags = (await gql(TAGS)).tags;
    renderTags();
    if (!editing) renderForm();
  }
  tagSelect.addEventListener('change', () => { tagFilter = tagSelect.value; cursors = [null]; load(); });
  const newTag = h('input', { id: 'new-tag', maxlength: 100 });
  async function bulk(mutation, done) {
    if (!bulkSelect.value || !ticked.size) { tagStatus.textContent = t('clients.tickFirst'); return; }
    try {
      const reply = await gql(`mutation($t: ID!, $c: [ID!]!) { n: ${mutation}(tagId: $t, clientIds: $c) }`, { t: bulkSelect.value, c: [...ticked] });
      tagStatus.textContent = t(done, { n: reply.n });
      await reloadTags();
      load();
    } catch (err) {
      tagStatus.textContent = err.message;
    }
  }
  // The segment filter: applied as the user edits it, a moment after the last key.
  const segmentStatus = h('p', { class: 'error', role: 'status' });
  let segmentTimer;
  const segment = segmentBuilder({
    keys: attributeKeys,
    onChange() {
      clearTimeout(segmentTimer);
      segmentTimer = setTimeout(() => { segmentFilter = segment.value(); cursors = [null]; load(); }, 300);
    },
  });
  const tagSegment = h('button', {
    type: 'button',
    async onclick() {
      if (!bulkSelect.value || !segmentFilter) { tagStatus.textContent = t('clients.segmentFirst'); return; }
      try {
        const reply = await gql('mutation($t: ID!, $s: SegmentInput) { n: tagClients(tagId: $t, segment: $s) }', { t: bulkSelect.value, s: segmentFilter });
        tagStatus.textContent = t('clients.tagged', { n: reply.n });
        await reloadTags();
        load();
      } catch (err) {
        tagStatus.textContent = err.message;
      }
    },
  }, t('clients.tagSegment'));

  const tagTools = h('div', { class: 'tag-tools' },
    h('div', { class: 'field' }, h('label', { for: 'new-tag' }, t('clients.newTag')), newTag),
    h('button', {
      type: 'button',
      async onclick() {
        try {
          await gql('mutation($n: String!) { createTag(name: $n) { id } }', { n: newTag.value });
          newTag.value = '';
          tagStatus.textContent = '';
          await reloadTags();
        } catch (err) {
          tagStatus.textContent = err.message;
        }
      },
    }, t('clients.createTag')),
    bulkSelect,
    h('button', { type: 'button', onclick: () => bulk('tagClients', 'clients.tagged') }, t('clients.tagTicked')),
    h('button', { type: 'button', onclick: () => bulk('untagClients', 'clients.untagged') }, t('clients.untagTicked')),
    tagSegment,
    tagStatus);

  async function load() {
    const after = cursors[cursors.length - 1];
    let clients;
    try {
      ({ clients } = await gql(LIST, { first: PAGE, after, search: search || null, tagId: tagFilter || null, segment: segmentFilter }));
      segmentStatus.textContent = '';
    } catch (err) {
      // A condition still being written: say what is wrong and keep the list as it was.
      segmentStatus.textContent = err.message;
      return;
    }
    const rows = clients.nodes.map((c) => h('tr', {},
      h('td', {}, h('input', {
        type: 'checkbox',
        'aria-label': t('clients.tick', { email: c.email }),
        checked: ticked.has(c.id),
        onchange(event) { if (event.target.checked) ticked.add(c.id); else ticked.delete(c.id); },
      })),
      h('td', {}, c.email),
      h('td', {}, c.fullName),
      h('td', {}, c.comment),
      h('td', {}, c.tags.map((tag) => h('span', { class: 'tag' }, tag.name))),
      h('td', {},
        c.unsubscribedAt ? h('div', {}, t('clients.unsubscribed', { when: when(c.unsubscribedAt) })) : '',
        c.suppression ? h('div', { class: 'suppressed' },
          h('span', { class: `badge ${c.suppression.reason.toLowerCase()}` }, t('clients.suppressed', { reason: t(`reason.${c.suppression.reason}`) })), ' ',
          h('button', {
            type: 'button',
            class: 'link',
            'aria-label': t('suppressions.liftOf', { email: c.email }),
            async onclick() {
              await gql('mutation($e: String!) { unsuppress(email: $e) }', { e: c.email });
              load();
            },
          }, t('suppressions.lift'))) : ''),
      h('td', { class: 'actions' },
        h('button', { type: 'button', onclick: () => { editing = c; renderForm(); } }, t('action.edit')),
        h('button', {
          type: 'button',
          class: 'danger',
          async onclick() {
            if (!confirm(t('clients.deleteConfirm', { email: c.email }))) return;
            await gql('mutation($id: ID!) { deleteClient(id: $id) }', { id: c.id });
            load();
          },
        }, t('action.delete')))));
    const prev = h('button', { type: 'button', disabled: cursors.length < 2, onclick: () => { cursors.pop(); load(); } }, t('page.previous'));
    const next = h('button', {
      type: 'button',
      disabled: !clients.pageInfo.hasNextPage,
      onclick: () => { cursors.push(clients.pageInfo.endCursor); load(); },
    }, t('page.next'));
    listBox.replaceChildren(
      h('p', {}, t('clients.count', { n: clients.totalCount })),
      rows.length
        ? table(['', t('field.email'), t('field.fullName'), t('field.comment'), t('clients.tags'), t('clients.status'), ''], rows, t('clients.title'))
        : h('p', {}, t('clients.none')),
      h('div', { class: 'pager' }, prev, next));
  }

  function renderForm() {
    const c = editing;
    formBox.replaceChildren(
      h('h2', { id: 'client-form' }, c ? t('clients.edit', { email: c.email }) : t('clients.new')),
      form({
        fields: [
          field({ name: 'input.email', label: t('field.email'), type: 'email', required: true, value: c ? c.email : '' }),
          field({ name: 'input.fullName', label: t('field.fullName'), required: true, value: c ? c.fullName : '' }),
          field({ name: 'input.comment', label: t('field.comment'), type: 'textarea', value: c ? c.comment : '' }),
          tags.length ? h('fieldset', { class: 'field tag-choice' }, h('legend', {}, t('clients.tags')),
            tags.map((tag) => h('label', {},
              h('input', { type: 'checkbox', 'data-tag': tag.id, checked: !!c && c.tags.some((x) => x.id === tag.id) }), ' ', tag.name)),
            h('p', { class: 'error', 'data-field': 'input.tagIds' })) : '',
        ],
        submitLabel: c ? t('action.save') : t('clients.create'),
        async submit(v, el) {
          const input = { email: v['input.email'], fullName: v['input.fullName'], comment: v['input.comment'] };
          if (tags.length) input.tagIds = [...el.querySelectorAll('[data-tag]')].filter((x) => x.checked).map((x) => x.dataset.tag);
          if (c) await gql('mutation($id: ID!, $input: ClientInput!) { updateClient(id: $id, input: $input) { id } }', { id: c.id, input });
          else await gql('mutation($input: ClientInput!) { createClient(input: $input) { id } }', { input });
          editing = null;
          el.reset();
          renderForm();
          await reloadTags();
          load();
        },
      }),
      c ? h('button', { type: 'button', onclick: () => { editing = null; renderForm(); } }, t('action.cancel')) : '');
  }

  // Import: the file goes up as it is (any size), then the server imports it; the bar
  // shows the upload, then the lines imported.
  const importResult = h('div', { 'aria-live': 'polite' });
  const bar = h('progress', { id: 'import-progress', max: 100, value: 0, hidden: true, 'aria-label': t('clients.importProgress') });
  const barText = h('p', { role: 'status' });
  const fileInput = h('input', { id: 'csv-file', type: 'file', accept: '.csv,text/csv' });
  function send(file) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('POST', '/import/clients.csv');
      xhr.setRequestHeader('content-type', 'text/csv');
      xhr.upload.onprogress = (e) => {
        if (!e.lengthComputable) return;
        bar.max = e.total;
        bar.value = e.loaded;
        barText.textContent = t('clients.uploading', { pct: Math.floor((100 * e.loaded) / e.total) });
      };
      xhr.onload = () => {
        let body = {};
        try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
        if (xhr.status === 202) resolve(body.importJob);
        else reject(new Error(body.error || `HTTP ${xhr.status}`));
      };
      xhr.onerror = () => reject(new Error(t('clients.uploadFailed')));
      xhr.send(file);
    });
  }
  async function follow(id) {
    for (;;) {
      const { importJob: job } = await gql('query($id: ID!) { importJob(id: $id) { id status total processed created updated errorCount failure } }', { id });
      bar.max = Math.max(job.total, 1);
      bar.value = job.processed;
      barText.textContent = t('clients.importing', { processed: job.processed, total: job.total });
      if (job.status === 'DONE' || job.status === 'FAILED') return job;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  const importButton = h('button', {
    type: 'button',
    async onclick() {
      const file = fileInput.files[0];
      if (!file) {
        importResult.replaceChildren(h('p', { class: 'alert' }, t('clients.chooseFile')));
        return;
      }
      importButton.disabled = true;
      importResult.replaceChildren();
      bar.hidden = false;
      try {
        const job = await follow(await send(file));
        importResult.replaceChildren(
          job.status === 'FAILED' ? h('p', { class: 'alert', role: 'alert' }, t('clients.importFailed', { why: job.failure || '' })) : '',
          h('p', { role: 'status', id: 'import-summary' }, t('clients.imported', { created: job.created, updated: job.updated, errors: job.errorCount })),
          job.errorCount ? h('p', {}, h('a', { href: `/import/${job.id}/errors.csv`, download: 'import-errors.csv' }, t('clients.errorsLink'))) : '');
        await reloadTags();
        load();
      } catch (err) {
        importResult.replaceChildren(h('p', { class: 'alert', role: 'alert' }, err.message));
      } finally {
        importButton.disabled = false;
      }
    },
  }, t('clients.import'));

  renderTags();
  renderForm();
  await load();
  return h('div', {},
    heading,
    h('div', { class: 'filters' },
      h('div', { class: 'field' }, h('label', { for: 'client-search' }, t('clients.search')), searchInput),
      h('div', { class: 'field' }, h('label', { for: 'client-tag' }, t('clients.tagFilter')), tagSelect)),
    h('details', { class: 'segment-filter' }, h('summary', {}, t('clients.segmentFilter')), segment.el, segmentStatus),
    tagTools,
    listBox,
    formBox,
    h('section', { 'aria-labelledby': 'csv' },
      h('h2', { id: 'csv' }, t('clients.csv')),
      h('p', {}, t('clients.csvLead')),
      h('div', { class: 'field' }, h('label', { for: 'csv-file' }, t('clients.csvFile')), fileInput),
      importButton,
      bar,
      barText,
      importResult,
      h('p', {}, h('a', { href: '/export/clients.csv', download: 'clients.csv' }, t('clients.export')))));
}
