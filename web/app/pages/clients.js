// Clients: a searchable, paginated list; create, edit, delete; CSV import and export.

import { gql } from '../api.js';
import { field, form, h, table, when } from '../dom.js';
import { t } from '../i18n.js';

const LIST = `query($first: Int, $after: String, $search: String) {
  clients(first: $first, after: $after, search: $search) {
    totalCount pageInfo { hasNextPage endCursor }
    nodes { id email fullName comment unsubscribedAt createdAt }
  }
}`;
const PAGE = 20;

export async function page() {
  let search = '';
  let cursors = [null]; // the `after` of each page seen, for "previous"
  let editing = null;

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

  async function load() {
    const after = cursors[cursors.length - 1];
    const { clients } = await gql(LIST, { first: PAGE, after, search: search || null });
    const rows = clients.nodes.map((c) => h('tr', {},
      h('td', {}, c.email),
      h('td', {}, c.fullName),
      h('td', {}, c.comment),
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
        ? table([t('field.email'), t('field.fullName'), t('field.comment'), t('clients.status'), ''], rows, t('clients.title'))
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
        ],
        submitLabel: c ? t('action.save') : t('clients.create'),
        async submit(v, el) {
          const input = { email: v['input.email'], fullName: v['input.fullName'], comment: v['input.comment'] };
          if (c) await gql('mutation($id: ID!, $input: ClientInput!) { updateClient(id: $id, input: $input) { id } }', { id: c.id, input });
          else await gql('mutation($input: ClientInput!) { createClient(input: $input) { id } }', { input });
          editing = null;
          el.reset();
          renderForm();
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

  renderForm();
  await load();
  return h('div', {},
    heading,
    h('div', { class: 'field' }, h('label', { for: 'client-search' }, t('clients.search')), searchInput),
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
