// Suppressions: the addresses no run mails (hard bounces, soft bounces in a row,
// complaints, or added by hand), searchable and filtered by reason; add one, lift one.

import { gql } from '../api.js';
import { field, form, h, table, when } from '../dom.js';
import { t } from '../i18n.js';

const LIST = `query($after: String, $reason: SuppressionReason, $search: String) {
  suppressions(first: 50, after: $after, reason: $reason, search: $search) {
    totalCount pageInfo { hasNextPage endCursor }
    nodes { email reason since delivery { bounce { diagnostic } mailing { id } } }
  }
}`;
const REASONS = ['HARD_BOUNCE', 'SOFT_BOUNCES', 'COMPLAINT', 'MANUAL'];

export async function page() {
  let cursors = [null];
  const status = h('p', { role: 'status' });
  const box = h('div', { 'aria-live': 'polite' });
  const search = h('input', { id: 'suppression-search', type: 'search' });
  const reason = h('select', { id: 'suppression-reason' },
    h('option', { value: '' }, t('suppressions.anyReason')),
    REASONS.map((r) => h('option', { value: r }, t(`reason.${r}`))));
  let timer;
  search.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => { cursors = [null]; load(); }, 250);
  });
  reason.addEventListener('change', () => { cursors = [null]; load(); });

  async function lift(email) {
    try {
      await gql('mutation($e: String!) { unsuppress(email: $e) }', { e: email });
      status.textContent = t('suppressions.lifted', { email });
      load();
    } catch (err) {
      status.textContent = err.message;
    }
  }

  async function load() {
    const { suppressions: list } = await gql(LIST, {
      after: cursors[cursors.length - 1],
      reason: reason.value || null,
      search: search.value.trim() || null,
    });
    const rows = list.nodes.map((s) => h('tr', {},
      h('td', {}, s.email),
      h('td', {}, h('span', { class: `badge ${s.reason.toLowerCase()}` }, t(`reason.${s.reason}`))),
      h('td', {}, when(s.since)),
      h('td', {}, s.delivery
        ? [s.delivery.bounce?.diagnostic || '', ' ', h('a', { href: `/mailings/${s.delivery.mailing.id}`, 'data-link': true }, t('suppressions.mailing'))]
        : ''),
      h('td', { class: 'actions' },
        h('button', { type: 'button', 'aria-label': t('suppressions.liftOf', { email: s.email }), onclick: () => lift(s.email) }, t('suppressions.lift')))));
    box.replaceChildren(
      h('p', {}, t('suppressions.count', { n: list.totalCount })),
      rows.length
        ? table([t('field.email'), t('suppressions.reason'), t('suppressions.since'), t('suppressions.cause'), ''], rows, t('suppressions.title'))
        : h('p', {}, t('suppressions.none')),
      h('div', { class: 'pager' },
        h('button', { type: 'button', disabled: cursors.length < 2, onclick: () => { cursors.pop(); load(); } }, t('page.previous')),
        h('button', {
          type: 'button',
          disabled: !list.pageInfo.hasNextPage,
          onclick: () => { cursors.push(list.pageInfo.endCursor); load(); },
        }, t('page.next'))));
  }

  await load();
  return h('div', {},
    h('h1', {}, t('suppressions.title')),
    h('p', {}, t('suppressions.lead')),
    h('div', { class: 'filters' },
      h('div', { class: 'field' }, h('label', { for: 'suppression-search' }, t('suppressions.search')), search),
      h('div', { class: 'field' }, h('label', { for: 'suppression-reason' }, t('suppressions.reason')), reason)),
    status,
    box,
    h('section', { 'aria-labelledby': 'suppress-form' },
      h('h2', { id: 'suppress-form' }, t('suppressions.add')),
      form({
        fields: [field({ name: 'email', label: t('suppressions.address'), type: 'email', required: true })],
        submitLabel: t('suppressions.suppress'),
        async submit(v, el) {
          await gql('mutation($e: String!) { suppress(email: $e) { email } }', { e: v.email });
          el.reset();
          status.textContent = t('suppressions.added', { email: v.email });
          cursors = [null];
          load();
        },
      })));
}
