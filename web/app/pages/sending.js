// Sending (admins): the SMTP servers deliveries go through, by priority, with their shared
// rate limits and whether a circuit breaker is open; the sender identities users may send
// as, with the servers that carry each. Credentials and DKIM keys go in, never come back.

import { gql } from '../api.js';
import { field, form, h, table } from '../dom.js';
import { t } from '../i18n.js';

const SERVERS = `{ smtpServers { id name host priority maxConnections builtin hasCredentials breakerOpen
  limits { perSecond perMinute perHour perDay } } }`;
const IDENTITIES = `{ senderIdentities { id name email replyTo dkimDomain dkimSelector allowEveryone smtpServers { id name } } }`;
const WINDOWS = ['perSecond', 'perMinute', 'perHour', 'perDay'];

const number = (v) => (v === '' || v == null ? null : Number(v));

export async function page() {
  const status = h('p', { role: 'status' });
  const serversBox = h('div', { 'aria-live': 'polite' });
  const identitiesBox = h('div', { 'aria-live': 'polite' });
  const serverChoices = h('fieldset', { class: 'choices', 'data-field': 'input.smtpServerIds', 'aria-describedby': 'server-choices-error' });
  let servers = [];

  async function remove(mutation, id, label) {
    try {
      await gql(`mutation($id: ID!) { ${mutation}(id: $id) }`, { id });
      status.textContent = t('sending.deleted', { name: label });
      await load();
    } catch (err) {
      status.textContent = err.errors ? err.errors.map((e) => e.message).join(' ') : err.message;
    }
  }

  async function load() {
    const [{ smtpServers }, { senderIdentities }] = await Promise.all([gql(SERVERS), gql(IDENTITIES)]);
    servers = smtpServers;
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
        h('td', { class: 'actions' }, s.builtin ? '' : h('button', {
          type: 'button', 'aria-label': t('sending.deleteOf', { name: s.name }), onclick: () => remove('deleteSmtpServer', s.id, s.name),
        }, t('action.delete'))))),
      t('sending.servers')));
    serverChoices.replaceChildren(h('legend', {}, t('sending.carriedBy')),
      ...smtpServers.map((s) => h('label', { class: 'check' }, h('input', { type: 'checkbox', value: s.id, 'data-server': true }), ' ', s.name)),
      h('p', { class: 'error', id: 'server-choices-error', 'aria-live': 'polite' }));
    identitiesBox.replaceChildren(senderIdentities.length
      ? table([t('sending.identity'), t('sending.replyTo'), 'DKIM', t('sending.carriedBy'), t('sending.who'), ''],
        senderIdentities.map((i) => h('tr', {},
          h('td', {}, `${i.name} <${i.email}>`),
          h('td', {}, i.replyTo || '—'),
          h('td', {}, i.dkimDomain ? `${i.dkimSelector}._domainkey.${i.dkimDomain}` : '—'),
          h('td', {}, i.smtpServers.map((s) => s.name).join(', ') || '—'),
          h('td', {}, t(i.allowEveryone ? 'sending.everyone' : 'sending.chosenUsers')),
          h('td', { class: 'actions' }, h('button', {
            type: 'button', 'aria-label': t('sending.deleteOf', { name: i.name }), onclick: () => remove('deleteSenderIdentity', i.id, i.name),
          }, t('action.delete'))))),
        t('sending.identities'))
      : h('p', {}, t('sending.noIdentities')));
  }

  const serverForm = form({
    fields: [
      field({ name: 'input.name', label: t('sending.name'), required: true }),
      field({ name: 'input.url', label: t('sending.url'), required: true, hint: t('sending.urlHint'), autocomplete: 'off' }),
      field({ name: 'input.priority', label: t('sending.priority'), type: 'number', value: '100', hint: t('sending.priorityHint') }),
      field({ name: 'input.maxConnections', label: t('sending.connections'), type: 'number', value: '8' }),
      ...WINDOWS.map((w) => field({ name: `input.limits.${w}`, label: t(`sending.limit.${w}`), type: 'number', min: 1 })),
    ],
    submitLabel: t('sending.addServer'),
    async submit(v, el) {
      const limits = Object.fromEntries(WINDOWS.map((w) => [w, number(v[`input.limits.${w}`])]));
      await gql('mutation($i: SmtpServerInput!) { createSmtpServer(input: $i) { name } }', {
        i: { name: v['input.name'], url: v['input.url'], priority: number(v['input.priority']), maxConnections: number(v['input.maxConnections']), limits },
      });
      el.reset();
      status.textContent = t('sending.serverAdded', { name: v['input.name'] });
      await load();
    },
  });

  const identityForm = form({
    fields: [
      field({ name: 'input.name', label: t('sending.fromName'), required: true }),
      field({ name: 'input.email', label: t('sending.fromAddress'), type: 'email', required: true }),
      field({ name: 'input.replyTo', label: t('sending.replyTo'), type: 'email' }),
      serverChoices,
      field({ name: 'input.allowEveryone', label: t('sending.allowEveryone'), type: 'checkbox' }),
      field({ name: 'input.dkimDomain', label: t('sending.dkimDomain') }),
      field({ name: 'input.dkimSelector', label: t('sending.dkimSelector') }),
      field({ name: 'input.dkimPrivateKey', label: t('sending.dkimKey'), type: 'textarea', rows: 4, hint: t('sending.dkimKeyHint') }),
    ],
    submitLabel: t('sending.addIdentity'),
    async submit(v, el) {
      const chosen = [...serverChoices.querySelectorAll('input[data-server]:checked')].map((c) => c.value);
      await gql('mutation($i: SenderIdentityInput!) { createSenderIdentity(input: $i) { name } }', {
        i: {
          name: v['input.name'],
          email: v['input.email'],
          replyTo: v['input.replyTo'] || null,
          smtpServerIds: chosen,
          allowEveryone: v['input.allowEveryone'],
          dkimDomain: v['input.dkimDomain'] || null,
          dkimSelector: v['input.dkimSelector'] || null,
          dkimPrivateKey: v['input.dkimPrivateKey'] || null,
        },
      });
      el.reset();
      status.textContent = t('sending.identityAdded', { name: v['input.name'] });
      await load();
    },
  });

  await load();
  return h('div', {},
    h('h1', {}, t('sending.title')),
    h('p', {}, t('sending.lead')),
    status,
    h('section', { 'aria-labelledby': 'smtp-servers' },
      h('h2', { id: 'smtp-servers' }, t('sending.servers')), serversBox,
      h('h3', {}, t('sending.addServer')), serverForm),
    h('section', { 'aria-labelledby': 'sender-identities' },
      h('h2', { id: 'sender-identities' }, t('sending.identities')), identitiesBox,
      h('h3', {}, t('sending.addIdentity')), identityForm));
}
