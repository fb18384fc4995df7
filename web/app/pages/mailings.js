// Mailings: the active ones, the completed ones, and the editor.

import { gql } from '../api.js';
import { field, form, h, link, localZone, table, toLocalInput, when } from '../dom.js';
import { t } from '../i18n.js';

const FIELDS = `id status paused periodicity timeZone startsAt endsAt nextRunAt createdAt
  message { id subject }
  stats { recipients sent failed unknown pending }`;

/** The pause / resume / complete / delete buttons of a mailing. */
export function controls(m, after) {
  const act = (label, mutation, cls) => h('button', {
    type: 'button',
    class: cls,
    async onclick() {
      if (cls === 'danger' && !confirm(t('mailings.confirm', { action: label }))) return;
      try {
        await gql(mutation, { id: m.id });
        after();
      } catch (err) {
        alert(err.message);
      }
    },
  }, label);
  if (m.status === 'COMPLETED') {
    return [act(t('action.delete'), 'mutation($id: ID!) { deleteMailing(id: $id) }', 'danger')];
  }
  return [
    m.paused
      ? act(t('mailings.resume'), 'mutation($id: ID!) { resumeMailing(id: $id) { id } }')
      : act(t('mailings.pause'), 'mutation($id: ID!) { pauseMailing(id: $id) { id } }'),
    act(t('mailings.complete'), 'mutation($id: ID!) { completeMailing(id: $id) { id } }', 'danger'),
    act(t('action.delete'), 'mutation($id: ID!) { deleteMailing(id: $id) }', 'danger'),
  ];
}

export function statusText(m) {
  return m.paused && m.status !== 'COMPLETED' ? `${t(`status.${m.status}`)}, ${t('mailings.paused')}` : t(`status.${m.status}`);
}

async function listPage(app, statuses, title) {
  const box = h('div', {});
  async function load() {
    const lists = await Promise.all(statuses.map((status) =>
      gql(`query($s: MailingStatus) { mailings(first: 100, status: $s) { nodes { ${FIELDS} } } }`, { s: status })));
    const mailings = lists.flatMap((l) => l.mailings.nodes);
    const rows = mailings.map((m) => h('tr', { 'data-mailing': m.id },
      h('td', {}, link(`/mailings/${m.id}`, m.message.subject)),
      h('td', {}, statusText(m)),
      h('td', {}, t(`periodicity.${m.periodicity}`)),
      h('td', {}, when(m.nextRunAt)),
      h('td', {}, m.stats.recipients),
      h('td', {}, t('mailings.statsShort', m.stats)),
      h('td', { class: 'actions' },
        m.status !== 'COMPLETED' ? link(`/mailings/${m.id}/edit`, t('action.edit')) : null,
        controls(m, load))));
    box.replaceChildren(rows.length
      ? table([t('field.message'), t('mailings.status'), t('field.periodicity'), t('mailings.nextRun'),
        t('mailings.recipients'), t('mailings.stats'), ''], rows, title)
      : h('p', {}, t('mailings.none')));
  }
  await load();
  return h('div', {},
    h('h1', {}, title),
    h('p', {}, link('/mailings/new', t('mailings.new')), ' · ', t('mailings.zoneNote', { zone: localZone() })),
    box);
}

export function active({ app }) {
  return listPage(app, ['CREATED', 'RUNNING'], t('mailings.title'));
}

export function completed({ app }) {
  return listPage(app, ['COMPLETED'], t('mailings.completedTitle'));
}

/** The ids of all of a mailing's clients (the API pages them 100 at a time). */
async function mailingClientIds(id) {
  const ids = [];
  let after = null;
  for (;;) {
    const { mailing } = await gql(
      'query($id: ID!, $after: String) { mailing(id: $id) { clients(first: 100, after: $after) { nodes { id } pageInfo { hasNextPage endCursor } } } }',
      { id, after },
    );
    if (!mailing) throw new Error(t('error.notFound'));
    ids.push(...mailing.clients.nodes.map((c) => c.id));
    if (!mailing.clients.pageInfo.hasNextPage) return ids;
    after = mailing.clients.pageInfo.endCursor;
  }
}

/** Create (no id) or edit a mailing: message picker, client picker, schedule in local time. */
export async function editor({ app, params }) {
  const id = params[0];
  const [{ messages }, existing] = await Promise.all([
    gql('{ messages(first: 100) { nodes { id subject } } }'),
    id
      ? gql(`query($id: ID!) { mailing(id: $id) { id startsAt endsAt periodicity timeZone message { id } } }`, { id })
        .then((d) => d.mailing)
      : null,
  ]);
  if (id && !existing) throw new Error(t('error.notFound'));
  // Every client of the mailing, page by page: saving sends the whole set, so a set cut
  // to one page would drop the clients the user never saw.
  const selected = new Set(existing ? await mailingClientIds(id) : []);
  const zone = localZone();

  // The client picker: search, tick, select all shown.
  const pickerList = h('ul', { class: 'picker', id: 'client-picker' });
  const count = h('p', { 'aria-live': 'polite' });
  const clientError = h('p', { class: 'error', id: 'clients-error', 'aria-live': 'polite' });
  const pickerSearch = h('input', { id: 'picker-search', type: 'search' });
  let shown = [];
  const showCount = () => { count.textContent = t('mailings.selected', { n: selected.size }); };
  async function loadClients() {
    const { clients } = await gql('query($s: String) { clients(first: 100, search: $s) { nodes { id email fullName } } }',
      { s: pickerSearch.value || null });
    shown = clients.nodes;
    pickerList.replaceChildren(...shown.map((c) => {
      const box = h('input', { type: 'checkbox', id: `pick-${c.id}`, checked: selected.has(c.id) });
      box.addEventListener('change', () => {
        if (box.checked) selected.add(c.id);
        else selected.delete(c.id);
        showCount();
      });
      return h('li', {}, box, h('label', { for: `pick-${c.id}` }, c.fullName, ' <', c.email, '>'));
    }));
    showCount();
  }
  pickerSearch.addEventListener('input', () => loadClients());
  const selectAll = h('button', {
    type: 'button',
    onclick() {
      for (const c of shown) selected.add(c.id);
      loadClients();
    },
  }, t('mailings.selectAll'));
  const selectNone = h('button', { type: 'button', onclick() { selected.clear(); loadClients(); } }, t('mailings.selectNone'));
  await loadClients();

  const picker = h('fieldset', { 'data-field': 'input.clientIds', 'aria-describedby': 'clients-error' },
    h('legend', {}, t('mailings.clients')),
    h('div', { class: 'field' }, h('label', { for: 'picker-search' }, t('clients.search')), pickerSearch),
    h('div', { class: 'row' }, selectAll, selectNone), count, pickerList, clientError);

  const el = form({
    fields: [
      field({
        name: 'input.messageId',
        label: t('field.message'),
        type: 'select',
        required: true,
        value: existing ? existing.message.id : '',
        options: [['', t('mailings.chooseMessage')], ...messages.nodes.map((m) => [m.id, m.subject])],
      }),
      field({ name: 'input.startsAt', label: t('field.startsAt', { zone }), type: 'datetime-local', required: true, value: existing ? toLocalInput(existing.startsAt) : toLocalInput(new Date().toISOString()) }),
      field({ name: 'input.endsAt', label: t('field.endsAt', { zone }), type: 'datetime-local', value: existing ? toLocalInput(existing.endsAt) : '', hint: t('field.endsAtHint') }),
      field({
        name: 'input.periodicity',
        label: t('field.periodicity'),
        type: 'select',
        value: existing ? existing.periodicity : 'ONCE',
        options: ['ONCE', 'DAILY', 'WEEKLY', 'MONTHLY'].map((p) => [p, t(`periodicity.${p}`)]),
      }),
      picker,
    ],
    submitLabel: id ? t('action.save') : t('mailings.create'),
    async submit(v) {
      const iso = (local) => (local ? new Date(local).toISOString() : null);
      const input = {
        messageId: v['input.messageId'],
        startsAt: iso(v['input.startsAt']),
        endsAt: iso(v['input.endsAt']),
        periodicity: v['input.periodicity'],
        timeZone: zone,
        clientIds: [...selected],
      };
      if (!input.startsAt) throw { errors: [{ message: t('error.required'), extensions: { field: 'input.startsAt' } }] };
      const data = id
        ? await gql('mutation($id: ID!, $input: MailingInput!) { updateMailing(id: $id, input: $input) { id } }', { id, input })
        : await gql('mutation($input: MailingInput!) { createMailing(input: $input) { id } }', { input });
      app.navigate(`/mailings/${(data.updateMailing || data.createMailing).id}`);
    },
  });
  // The picker's error goes under it (its search box has no field name).
  for (const named of el.querySelectorAll('#picker-search, #client-picker input')) named.removeAttribute('name');
  return h('div', {}, h('h1', {}, id ? t('mailings.editTitle') : t('mailings.newTitle')),
    messages.nodes.length ? null : h('p', { class: 'alert' }, t('mailings.noMessages'), ' ', link('/messages', t('nav.messages'))),
    el);
}
