// Sending (admins): the SMTP servers deliveries go through, by priority, with their shared
// rate limits and whether a circuit breaker is open; the sender identities users may send
// as, with the servers that carry each and who may use it. Each is added or edited in the
// form below its table. Credentials and DKIM keys go in, never come back.

import { gql } from '../api.js';
import { field, form, h, table } from '../dom.js';
import { t } from '../i18n.js';

const SERVERS = `{ smtpServers { id name host priority maxConnections builtin hasCredentials breakerOpen
  limits { perSecond perMinute perHour perDay } } }`;
const IDENTITIES = `{ senderIdentities { id name email replyTo dkimDomain dkimSelector allowEveryone allowedUserIds
  smtpServers { id name } } }`;
const USERS = '{ users(first: 100) { nodes { id email fullName role } } }';
const WINDOWS = ['perSecond', 'perMinute', 'perHour', 'perDay'];

const number = (v) => (v === '' || v == null ? null : Number(v));

/** Checkboxes named by `data-choice`, one per item, in a fieldset that shows field errors. */
function choices(id, legend, dataField) {
  const box = h('fieldset', { class: 'choices', id, 'data-field': dataField, 'aria-describedby': `${id}-error` });
  return {
    el: box,
    set(items, checked = []) {
      box.replaceChildren(h('legend', {}, legend),
        ...items.map(([value, label]) => h('label', { class: 'check' },
          h('input', { type: 'checkbox', value, 'data-choice': true, checked: checked.includes(value) }), ' ', label)),
        h('p', { class: 'error', id: `${id}-error`, 'aria-live': 'polite' }));
    },
    check(values) {
      for (const c of box.querySelectorAll('input[data-choice]')) c.checked = values.includes(c.value);
    },
    value: () => [...box.querySelectorAll('input[data-choice]:checked')].map((c) => c.value),
  };
}

/** Sets the named inputs of `formEl` (checkboxes from booleans). */
function fill(formEl, values) {
  for (const [name, value] of Object.entries(values)) {
    const input = formEl.querySelector(`[name="${CSS.escape(name)}"]`);
    if (!input) continue;
    if (input.type === 'checkbox') input.checked = !!value;
    else input.value = value == null ? '' : String(value);
  }
}

export async function page() {
  const status = h('p', { role: 'status' });
  const serversBox = h('div', { 'aria-live': 'polite' });
  const identitiesBox = h('div', { 'aria-live': 'polite' });
  const serverChoices = choices('server-choices', t('sending.carriedBy'), 'input.smtpServerIds');
  const userChoices = choices('user-choices', t('sending.allowedUsers'), 'input.allowedUserIds');
  const { users } = await gql(USERS);
  userChoices.set(users.nodes.filter((u) => u.role !== 'ADMIN').map((u) => [u.id, `${u.fullName} <${u.email}>`]));
  // The server or identity the forms edit (null: they add).
  let editingServer = null;
  let editingIdentity = null;

  async function remove(mutation, id, label) {
    try {
      await gql(`mutation($id: ID!) { ${mutation}(id: $id) }`, { id });
      status.textContent = t('sending.deleted', { name: label });
      await load();
    } catch (err) {
      status.textContent = err.errors ? err.errors.map((e) => e.message).join(' ') : err.message;
    }
  }

  const button = (label, aria, onclick) => h('button', { type: 'button', 'aria-label': aria, onclick }, label);

  async function load() {
    const [{ smtpServers }, { senderIdentities }] = await Promise.all([gql(SERVERS), gql(IDENTITIES)]);
    const limits = (l) => WINDOWS.filter((w) => l[w] != null).map((w) => t(`sending.${w}`, { n: l[w] })).join(', ') || t('sending.noLimit');
    serversBox.replaceChildren(table(
      [t('sending.name'), t('sending.host'), t('sending.priority'), t('sending.connections'), t('sending.limits'), t('sending.state'), ''],
      smtpServers.map((s) => h('tr', {},
        h('td', {}, s.name, s.builtin ? h('span', { class: 'hint' }, ' ', t('sending.builtin')) : null),
        h('td', {}, s.host, s.hasCredentials ? h('span', { class: 'hint' }, ' ', t('sending.withCredentials')) : null),
        h('td', {}, String(s.priority)),
        h('td', {}, String(s.maxConnections)),
        h('td', {}, limits(s.limits)),
        h('td', {}, h('span', { class: `badge ${s.breakerOpen ? 'unknown' : 'success'}` }, t(s.breakerOpen ? 'sending.breakerOpen' : 'sending.ok'))),
        h('td', { class: 'actions' },
          button(t('action.edit'), t('sending.editOf', { name: s.name }), () => editServer(s)),
          s.builtin ? '' : button(t('action.delete'), t('sending.deleteOf', { name: s.name }), () => remove('deleteSmtpServer', s.id, s.name))))),
      t('sending.servers')));
    serverChoices.set(smtpServers.map((s) => [s.id, s.name]));
    identitiesBox.replaceChildren(senderIdentities.length
      ? table([t('sending.identity'), t('sending.replyTo'), 'DKIM', t('sending.carriedBy'), t('sending.who'), ''],
        senderIdentities.map((i) => h('tr', {},
          h('td', {}, `${i.name} <${i.email}>`),
          h('td', {}, i.replyTo || '—'),
          h('td', {}, i.dkimDomain ? `${i.dkimSelector}._domainkey.${i.dkimDomain}` : '—'),
          h('td', {}, i.smtpServers.map((s) => s.name).join(', ') || '—'),
          h('td', {}, i.allowEveryone ? t('sending.everyone') : t('sending.usersCount', { n: i.allowedUserIds.length })),
          h('td', { class: 'actions' },
            button(t('action.edit'), t('sending.editOf', { name: i.name }), () => editIdentity(i)),
            button(t('action.delete'), t('sending.deleteOf', { name: i.name }), () => remove('deleteSenderIdentity', i.id, i.name))))),
        t('sending.identities'))
      : h('p', {}, t('sending.noIdentities')));
  }

  const serverHeading = h('h3', { id: 'server-form' }, t('sending.addServer'));
  const serverForm = form({
    fields: [
      field({ name: 'input.name', label: t('sending.name'), required: true }),
      field({ name: 'input.url', label: t('sending.url'), hint: t('sending.urlHint'), autocomplete: 'off' }),
      field({ name: 'input.priority', label: t('sending.priority'), type: 'number', value: '100', hint: t('sending.priorityHint') }),
      field({ name: 'input.maxConnections', label: t('sending.connections'), type: 'number', value: '8' }),
      ...WINDOWS.map((w) => field({ name: `input.limits.${w}`, label: t(`sending.limit.${w}`), type: 'number', min: 1 })),
    ],
    submitLabel: t('sending.addServer'),
    async submit(v, el) {
      const limits = Object.fromEntries(WINDOWS.map((w) => [w, number(v[`input.limits.${w}`])]));
      const input = { name: v['input.name'], url: v['input.url'] || null, priority: number(v['input.priority']), maxConnections: number(v['input.maxConnections']), limits };
      if (editingServer) {
        await gql('mutation($id: ID!, $i: SmtpServerInput!) { updateSmtpServer(id: $id, input: $i) { name } }', { id: editingServer.id, i: input });
      } else {
        await gql('mutation($i: SmtpServerInput!) { createSmtpServer(input: $i) { name } }', { i: input });
      }
      status.textContent = t(editingServer ? 'sending.saved' : 'sending.serverAdded', { name: v['input.name'] });
      editServer(null);
      el.reset();
      await load();
    },
  });
  function editServer(s) {
    editingServer = s;
    serverHeading.textContent = s ? t('sending.editOf', { name: s.name }) : t('sending.addServer');
    serverForm.querySelector('button[type="submit"]').textContent = s ? t('sending.saveServer') : t('sending.addServer');
    const url = serverForm.querySelector('[name="input.url"]');
    url.disabled = !!(s && s.builtin);
    url.placeholder = s ? t('sending.urlKeep') : '';
    if (!s) return;
    fill(serverForm, {
      'input.name': s.name, 'input.url': '', 'input.priority': s.priority, 'input.maxConnections': s.maxConnections,
      ...Object.fromEntries(WINDOWS.map((w) => [`input.limits.${w}`, s.limits[w]])),
    });
    serverForm.querySelector('[name="input.name"]').focus();
  }

  const identityHeading = h('h3', { id: 'identity-form' }, t('sending.addIdentity'));
  const identityForm = form({
    fields: [
      field({ name: 'input.name', label: t('sending.fromName'), required: true }),
      field({ name: 'input.email', label: t('sending.fromAddress'), type: 'email', required: true }),
      field({ name: 'input.replyTo', label: t('sending.replyTo'), type: 'email' }),
      serverChoices.el,
      field({ name: 'input.allowEveryone', label: t('sending.allowEveryone'), type: 'checkbox' }),
      userChoices.el,
      field({ name: 'input.dkimDomain', label: t('sending.dkimDomain') }),
      field({ name: 'input.dkimSelector', label: t('sending.dkimSelector') }),
      field({ name: 'input.dkimPrivateKey', label: t('sending.dkimKey'), type: 'textarea', rows: 4, hint: t('sending.dkimKeyHint') }),
    ],
    submitLabel: t('sending.addIdentity'),
    async submit(v, el) {
      const input = {
        name: v['input.name'],
        email: v['input.email'],
        replyTo: v['input.replyTo'] || null,
        smtpServerIds: serverChoices.value(),
        allowEveryone: v['input.allowEveryone'],
        allowedUserIds: userChoices.value(),
      };
      // DKIM: all three to set it; left empty on an edit, it stays as it is.
      if (v['input.dkimDomain'] || v['input.dkimSelector'] || v['input.dkimPrivateKey'] || !editingIdentity) {
        Object.assign(input, {
          dkimDomain: v['input.dkimDomain'] || null,
          dkimSelector: v['input.dkimSelector'] || null,
          dkimPrivateKey: v['input.dkimPrivateKey'] || null,
        });
      }
      if (editingIdentity) {
        await gql('mutation($id: ID!, $i: SenderIdentityInput!) { updateSenderIdentity(id: $id, input: $i) { name } }', { id: editingIdentity.id, i: input });
      } else {
        await gql('mutation($i: SenderIdentityInput!) { createSenderIdentity(input: $i) { name } }', { i: input });
      }
      status.textContent = t(editingIdentity ? 'sending.saved' : 'sending.identityAdded', { name: v['input.name'] });
      editIdentity(null);
      el.reset();
      userChoices.check([]);
      await load();
    },
  });
  function editIdentity(i) {
    editingIdentity = i;
    identityHeading.textContent = i ? t('sending.editOf', { name: i.name }) : t('sending.addIdentity');
    identityForm.querySelector('button[type="submit"]').textContent = i ? t('sending.saveIdentity') : t('sending.addIdentity');
    if (!i) return;
    fill(identityForm, {
      'input.name': i.name, 'input.email': i.email, 'input.replyTo': i.replyTo, 'input.allowEveryone': i.allowEveryone,
      'input.dkimDomain': '', 'input.dkimSelector': '', 'input.dkimPrivateKey': '',
    });
    serverChoices.check(i.smtpServers.map((s) => s.id));
    userChoices.check(i.allowedUserIds);
    identityForm.querySelector('[name="input.name"]').focus();
  }

  await load();
  return h('div', {},
    h('h1', {}, t('sending.title')),
    h('p', {}, t('sending.lead')),
    status,
    h('section', { 'aria-labelledby': 'smtp-servers' },
      h('h2', { id: 'smtp-servers' }, t('sending.servers')), serversBox, serverHeading, serverForm),
    h('section', { 'aria-labelledby': 'sender-identities' },
      h('h2', { id: 'sender-identities' }, t('sending.identities')), identitiesBox, identityHeading, identityForm));
}
