// Mailings: the active ones, the completed ones, and the editor.

import { gql } from '../api.js';
import { field, form, h, link, localZone, table, toLocalInput, when } from '../dom.js';
import { t } from '../i18n.js';
import { segmentBuilder } from '../segment.js';

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

/** The ids of all the clients picked for a mailing (the API pages them 100 at a time). */
async function pickedClientIds(id) {
  const ids = [];
  let after = null;
  for (;;) {
    const { mailing } = await gql(
      'query($id: ID!, $after: String) { mailing(id: $id) { audience { clients(first: 100, after: $after) { nodes { id } pageInfo { hasNextPage endCursor } } } } }',
      { id, after },
    );
    if (!mailing) throw new Error(t('error.notFound'));
    const page = mailing.audience.clients;
    ids.push(...page.nodes.map((c) => c.id));
    if (!page.pageInfo.hasNextPage) return ids;
    after = page.pageInfo.endCursor;
  }
}

/** The message picker: a search over all messages and the matches to choose from. */
async function messagePicker(current) {
  const search = h('input', { id: 'message-search', type: 'search', placeholder: t('mailings.messageSearch') });
  const select = field({
    name: 'input.messageId',
    label: t('field.message'),
    type: 'select',
    required: true,
    value: current ? current.id : '',
    options: [['', t('mailings.chooseMessage')]],
  });
  const input = select.querySelector('select');
  let count = 0;
  async function load() {
    const { messages } = await gql('query($s: String) { messages(first: 50, search: $s) { totalCount nodes { id subject } } }',
      { s: search.value || null });
    count = messages.totalCount;
    const chosen = input.value || (current ? current.id : '');
    const nodes = messages.nodes.slice();
    if (current && chosen === current.id && !nodes.some((m) => m.id === current.id)) nodes.unshift(current);
    input.replaceChildren(h('option', { value: '' }, t('mailings.chooseMessage')),
      ...nodes.map((m) => h('option', { value: m.id, selected: m.id === chosen }, m.subject)));
  }
  let timer;
  search.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(load, 250); });
  await load();
  return {
    el: h('div', {}, h('div', { class: 'field' }, h('label', { for: 'message-search' }, t('mailings.messageSearchLabel')), search), select),
    none: () => count === 0 && !search.value,
  };
}

/**
 * The audience chooser: all clients, tags, a segment, clients picked one by one (search and
 * pages over every client), and the size of the whole as it is now. `changed()` says
 * whether the user touched it: an edit that did not is saved without an audience, which
 * leaves the mailing's as it is.
 */
async function audienceChooser(existing) {
  const [{ tags, attributeKeys }, picked] = await Promise.all([
    gql('{ tags { id name clientCount } attributeKeys }'),
    existing ? pickedClientIds(existing.id) : [],
  ]);
  const start = existing ? existing.audience : { allClients: false, tags: [], segment: null };
  const selected = new Set(picked);
  let touched = false;
  const size = h('p', { id: 'audience-size', class: 'audience-size', 'aria-live': 'polite' });
  let sizeTimer;
  let asked = 0;
  function change() {
    touched = true;
    clearTimeout(sizeTimer);
    sizeTimer = setTimeout(showSize, 300);
  }
  const all = h('input', { id: 'audience-all', type: 'checkbox', checked: start.allClients });
  all.addEventListener('change', change);
  const tagBoxes = tags.map((tag) => {
    const box = h('input', { type: 'checkbox', id: `audience-tag-${tag.id}`, 'data-tag': tag.id, checked: start.tags.some((x) => x.id === tag.id) });
    box.addEventListener('change', change);
    return h('label', { for: box.id }, box, ' ', `${tag.name} (${tag.clientCount})`);
  });
  const segment = segmentBuilder({ keys: attributeKeys, initial: start.segment, prefix: 'input.audience.segment', onChange: change });

  // Picked clients: every client, a page at a time.
  const pickerList = h('ul', { class: 'picker', id: 'client-picker' });
  const count = h('p', { 'aria-live': 'polite' });
  const pickerSearch = h('input', { id: 'picker-search', type: 'search' });
  const pager = h('div', { class: 'pager' });
  let shown = [];
  let cursors = [null];
  const showCount = () => { count.textContent = t('mailings.selected', { n: selected.size }); };
  async function loadClients() {
    const { clients } = await gql('query($s: String, $after: String) { clients(first: 100, after: $after, search: $s) { totalCount pageInfo { hasNextPage endCursor } nodes { id email fullName } } }',
      { s: pickerSearch.value || null, after: cursors[cursors.length - 1] });
    shown = clients.nodes;
    pickerList.replaceChildren(...shown.map((c) => {
      const box = h('input', { type: 'checkbox', id: `pick-${c.id}`, checked: selected.has(c.id) });
      box.addEventListener('change', () => {
        if (box.checked) selected.add(c.id);
        else selected.delete(c.id);
        showCount();
        change();
      });
      return h('li', {}, box, h('label', { for: `pick-${c.id}` }, c.fullName, ' <', c.email, '>'));
    }));
    pager.replaceChildren(
      h('span', {}, t('mailings.pickerPage', { from: (cursors.length - 1) * 100 + (shown.length ? 1 : 0), to: (cursors.length - 1) * 100 + shown.length, total: clients.totalCount })),
      h('button', { type: 'button', disabled: cursors.length < 2, onclick() { cursors.pop(); loadClients(); } }, t('page.previous')),
      h('button', {
        type: 'button',
        disabled: !clients.pageInfo.hasNextPage,
        onclick() { cursors.push(clients.pageInfo.endCursor); loadClients(); },
      }, t('page.next')));
    showCount();
  }
  let searchTimer;
  pickerSearch.addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { cursors = [null]; loadClients(); }, 250);
  });
  const selectAll = h('button', {
    type: 'button',
    onclick() {
      for (const c of shown) selected.add(c.id);
      change();
      loadClients();
    },
  }, t('mailings.selectAll'));
  const selectNone = h('button', { type: 'button', onclick() { selected.clear(); change(); loadClients(); } }, t('mailings.selectNone'));
  await loadClients();

  function value() {
    const audience = {
      allClients: all.checked,
      clientIds: [...selected],
      tagIds: tagBoxes.map((l) => l.querySelector('input')).filter((b) => b.checked).map((b) => b.dataset.tag),
    };
    const s = segment.value();
    if (s) audience.segment = s;
    return audience;
  }
  async function showSize() {
    const mine = ++asked;
    try {
      const { audienceSize } = await gql('query($a: AudienceInput!) { audienceSize(audience: $a) }', { a: value() });
      if (mine === asked) size.textContent = t('mailings.audienceSize', { n: audienceSize });
    } catch (err) {
      if (mine === asked) size.textContent = err.message;
    }
  }
  await showSize();

  const el = h('fieldset', { class: 'audience', 'data-field': 'input.audience', 'aria-describedby': 'audience-error' },
    h('legend', {}, t('mailings.audience')),
    size,
    h('div', { class: 'field check' }, all, h('label', { for: 'audience-all' }, t('mailings.allClients'))),
    tags.length ? h('fieldset', { class: 'tag-choice', 'data-field': 'input.audience.tagIds', 'aria-describedby': 'audience-tags-error' },
      h('legend', {}, t('mailings.byTag')), tagBoxes, h('p', { class: 'error', id: 'audience-tags-error', 'aria-live': 'polite' })) : '',
    h('fieldset', {}, h('legend', {}, t('mailings.bySegment')), segment.el),
    h('fieldset', { 'data-field': 'input.clientIds', 'aria-describedby': 'clients-error' },
      h('legend', {}, t('mailings.clients')),
      h('div', { class: 'field' }, h('label', { for: 'picker-search' }, t('clients.search')), pickerSearch),
      h('div', { class: 'row' }, selectAll, selectNone), count, pickerList, pager,
      h('p', { class: 'error', id: 'clients-error', 'aria-live': 'polite' })),
    h('p', { class: 'error', id: 'audience-error', 'aria-live': 'polite' }));
  return { el, value, changed: () => touched };
}

/** Create (no id) or edit a mailing: message, schedule in local time, audience. */
export async function editor({ app, params }) {
  const id = params[0];
  const existing = id
    ? (await gql(`query($id: ID!) { mailing(id: $id) { id startsAt endsAt periodicity timeZone message { id subject }
        senderIdentity { id } sendingWindow { days fromHour toHour }
        audience { allClients tags { id } segment { match conditions { field op value } } } } }`, { id })).mailing
    : null;
  if (id && !existing) throw new Error(t('error.notFound'));
  const [messages, audience] = await Promise.all([
    messagePicker(existing ? existing.message : null),
    audienceChooser(existing),
  ]);
  const zone = localZone();
  const { senderIdentities } = await gql('{ senderIdentities { id name email } }');
  const sender = senderIdentities.length
    ? field({
      name: 'input.senderIdentityId',
      label: t('field.sender'),
      type: 'select',
      value: existing?.senderIdentity?.id || '',
      options: [['', t('field.senderDefault')], ...senderIdentities.map((i) => [i.id, `${i.name} <${i.email}>`])],
    })
    : null;
  const windowChooser = sendingWindow(existing?.sendingWindow);

  const el = form({
    fields: [
      messages.el,
      field({ name: 'input.startsAt', label: t('field.startsAt', { zone }), type: 'datetime-local', required: true, value: existing ? toLocalInput(existing.startsAt) : toLocalInput(new Date().toISOString()) }),
      field({ name: 'input.endsAt', label: t('field.endsAt', { zone }), type: 'datetime-local', value: existing ? toLocalInput(existing.endsAt) : '', hint: t('field.endsAtHint') }),
      field({
        name: 'input.periodicity',
        label: t('field.periodicity'),
        type: 'select',
        value: existing ? existing.periodicity : 'ONCE',
        options: ['ONCE', 'DAILY', 'WEEKLY', 'MONTHLY'].map((p) => [p, t(`periodicity.${p}`)]),
      }),
      audience.el,
      sender,
      windowChooser.el,
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
        senderIdentityId: v['input.senderIdentityId'] || null,
        sendingWindow: windowChooser.value(),
      };
      // An edit sends the audience only when the user changed it.
      if (!id || audience.changed()) input.audience = audience.value();
      if (!input.startsAt) throw { errors: [{ message: t('error.required'), extensions: { field: 'input.startsAt' } }] };
      const data = id
        ? await gql('mutation($id: ID!, $input: MailingInput!) { updateMailing(id: $id, input: $input) { id } }', { id, input })
        : await gql('mutation($input: MailingInput!) { createMailing(input: $input) { id } }', { input });
      app.navigate(`/mailings/${(data.updateMailing || data.createMailing).id}`);
    },
  });
  // Only the form's own fields carry names: the pickers' boxes and search boxes are not sent.
  for (const named of el.querySelectorAll('#picker-search, #client-picker input, #message-search, .audience input, .audience select, .window input')) named.removeAttribute('name');
  return h('div', {}, h('h1', {}, id ? t('mailings.editTitle') : t('mailings.newTitle')),
    messages.none() ? h('p', { class: 'alert' }, t('mailings.noMessages'), ' ', link('/messages', t('nav.messages'))) : null,
    el);
}

/** The sending window: off, or days of the week and hours in the mailing's time zone. */
function sendingWindow(existing) {
  const on = h('input', { type: 'checkbox', id: 'window-on', checked: !!existing });
  const days = [1, 2, 3, 4, 5, 6, 7].map((d) => h('label', { class: 'check' },
    h('input', { type: 'checkbox', value: String(d), 'data-day': true, checked: existing ? existing.days.includes(d) : d <= 5 }), ' ', t(`day.${d}`)));
  const hour = (id, label, value, dataField, min, max) => h('div', { class: 'field' },
    h('label', { for: id }, label),
    h('input', { id, type: 'number', min, max, value: String(value), 'data-field': dataField, 'aria-describedby': `${id}-error` }),
    h('p', { class: 'error', id: `${id}-error`, 'aria-live': 'polite' }));
  const from = hour('window-from', t('field.windowFrom'), existing ? existing.fromHour : 9, 'input.sendingWindow.fromHour', 0, 23);
  const to = hour('window-to', t('field.windowTo'), existing ? existing.toHour : 17, 'input.sendingWindow.toHour', 1, 24);
  const parts = h('div', { hidden: !existing },
    h('fieldset', { class: 'choices', 'data-field': 'input.sendingWindow.days', 'aria-describedby': 'window-days-error' },
      h('legend', {}, t('field.windowDays')), days, h('p', { class: 'error', id: 'window-days-error', 'aria-live': 'polite' })),
    from, to, h('p', { class: 'hint' }, t('field.windowHint')));
  on.addEventListener('change', () => { parts.hidden = !on.checked; });
  return {
    el: h('div', { class: 'window' }, h('div', { class: 'field check' }, on, h('label', { for: 'window-on' }, t('field.window'))), parts),
    value() {
      if (!on.checked) return null;
      return {
        days: [...parts.querySelectorAll('input[data-day]:checked')].map((c) => Number(c.value)),
        fromHour: Number(from.querySelector('input').value),
        toHour: Number(to.querySelector('input').value),
      };
    },
  };
}
