// Clients: a searchable, paginated list, filtered by tag; create, edit, delete; tags made
// and set in bulk on the clients ticked; CSV import and export.

import { gql } from '../api.js';
import { field, form, h, table, when } from '../dom.js';
import { t } from '../i18n.js';

const LIST = `query($first: Int, $after: String, $search: String, $tagId: ID) {
  clients(first: $first, after: $after, search: $search, tagId: $tagId) {
    totalCount pageInfo { hasNextPage endCursor }
    nodes { id email fullName comment unsubscribedAt createdAt tags { id name } }
  }
}`;
const TAGS = '{ tags { id name clientCount } }';
const PAGE = 20;

export async function page() {
  let search = '';
  let tagFilter = '';
  let cursors = [null]; // the `after` of each page seen, for "previous"
  let editing = null;
  let tags = (await gql(TAGS)).tags;
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
    tagStatus);

  async function load() {
    const after = cursors[cursors.length - 1];
    const { clients } = await gql(LIST, { first: PAGE, after, search: search || null, tagId: tagFilter || null });
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
      h('td', {}, c.unsubscribedAt ? t('clients.unsubscribed', { when: when(c.unsubscribedAt) }) : ''),
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

  const importResult = h('div', { 'aria-live': 'polite' });
  const fileInput = h('input', { id: 'csv-file', type: 'file', accept: '.csv,text/csv' });
  const importButton = h('button', {
    type: 'button',
    async onclick() {
      const file = fileInput.files[0];
      if (!file) {
        importResult.replaceChildren(h('p', { class: 'alert' }, t('clients.chooseFile')));
        return;
      }
      try {
        const { importClients: r } = await gql(
          'mutation($csv: String!) { importClients(csv: $csv) { created updated errors { line message } } }',
          { csv: await file.text() });
        importResult.replaceChildren(
          h('p', { role: 'status' }, t('clients.imported', { created: r.created, updated: r.updated, errors: r.errors.length })),
          r.errors.length ? h('ul', { class: 'import-errors' }, r.errors.map((e) => h('li', {}, t('clients.line', { line: e.line }), ' ', e.message))) : '');
        load();
      } catch (err) {
        importResult.replaceChildren(h('p', { class: 'alert', role: 'alert' }, err.message));
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
    tagTools,
    listBox,
    formBox,
    h('section', { 'aria-labelledby': 'csv' },
      h('h2', { id: 'csv' }, t('clients.csv')),
      h('p', {}, t('clients.csvLead')),
      h('div', { class: 'field' }, h('label', { for: 'csv-file' }, t('clients.csvFile')), fileInput),
      importButton,
      importResult,
      h('p', {}, h('a', { href: '/export/clients.csv', download: 'clients.csv' }, t('clients.export')))));
}
