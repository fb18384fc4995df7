// One mailing: its runs, the live progress of the current run, the attempt log (both
// updated through subscriptions, without reloading), retries, a test send, and a chart of
// the last 30 days.

import { gql, subscribe } from '../api.js';
import { field, form, h, link, localZone, table, when } from '../dom.js';
import { t } from '../i18n.js';
import { controls, statusText } from './mailings.js';

const QUERY = `query($id: ID!) { mailing(id: $id) {
  id status paused periodicity timeZone startsAt endsAt nextRunAt
  message { id subject }
  owner { fullName }
  senderIdentity { name email }
  sendingWindow { days fromHour toHour }
  stats { recipients sent failed unknown pending cancelled attempts lastAttemptAt }
  runs(first: 20) { nodes { id runAt status total sent failed unknown pending cancelled } }
  attempts(first: 50) { nodes { id email attemptedAt status serverResponse smtpServer { name } } }
} }`;

function attemptRow(a) {
  return h('tr', { 'data-attempt': a.id },
    h('td', {}, when(a.attemptedAt)),
    h('td', {}, a.email),
    h('td', {}, h('span', { class: `badge ${a.status.toLowerCase()}` }, t(`attempt.${a.status}`))),
    h('td', {}, a.smtpServer ? a.smtpServer.name : ''),
    h('td', { class: 'reply' }, a.serverResponse || ''));
}

function progressText(p) {
  return t('mailing.progress', { ...p, runAt: when(p.runAt) });
}

/** Bars of deliveries sent per day, with the numbers also as a table for screen readers. */
function chart(days) {
  const max = Math.max(1, ...days.map((d) => d.sent + d.failed));
  const width = 600;
  const height = 160;
  const bar = width / days.length;
  const svg = h('svg:svg', { viewBox: `0 0 ${width} ${height + 20}`, class: 'chart', role: 'img', 'aria-label': t('mailing.chartLabel') },
    days.map((d, i) => {
      const sentH = (d.sent / max) * height;
      const failedH = (d.failed / max) * height;
      return h('svg:g', {},
        h('svg:title', {}, `${d.day}: ${t('mailing.chartDay', d)}`),
        h('svg:rect', { x: i * bar + 1, y: height - sentH, width: bar - 2, height: sentH, class: 'sent' }),
        h('svg:rect', { x: i * bar + 1, y: height - sentH - failedH, width: bar - 2, height: failedH, class: 'failed' }),
        i % 5 === 0 ? h('svg:text', { x: i * bar, y: height + 15, class: 'axis' }, d.day.slice(5)) : null);
    }));
  const details = h('details', {}, h('summary', {}, t('mailing.chartTable')),
    table([t('mailing.day'), t('mailing.sent'), t('mailing.failed'), t('mailing.attempts')],
      days.map((d) => h('tr', {}, h('td', {}, d.day), h('td', {}, d.sent), h('td', {}, d.failed), h('td', {}, d.attempts)))));
  return h('div', {}, svg, h('p', { class: 'legend' }, h('span', { class: 'key sent' }), t('mailing.sent'), ' ', h('span', { class: 'key failed' }), t('mailing.failed')), details);
}

export async function page({ app, params }) {
  const id = params[0];
  const { mailing: m } = await gql(QUERY, { id });
  if (!m) throw new Error(t('error.notFound'));
  const now = new Date();
  const from = new Date(now.getTime() - 29 * 86400000);
  from.setHours(0, 0, 0, 0);
  const { dailyStats } = await gql(
    'query($from: DateTime!, $to: DateTime!, $id: ID, $z: String) { dailyStats(from: $from, to: $to, mailingId: $id, timeZone: $z) { day attempts succeeded failed sent } }',
    { from: from.toISOString(), to: new Date(now.getTime() + 60000).toISOString(), id, z: localZone() });

  const reload = () => app.navigate(location.pathname, { replace: true });
  const progress = h('p', { id: 'progress', role: 'status', 'aria-live': 'polite' },
    m.runs.nodes.find((r) => r.status === 'RUNNING')
      ? progressText({ ...m.runs.nodes.find((r) => r.status === 'RUNNING') })
      : t('mailing.noCurrentRun'));
  const attemptsBody = h('tbody', {}, m.attempts.nodes.map(attemptRow));
  const attemptsTable = h('div', { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': t('mailing.log') },
    h('table', { id: 'attempt-log' },
      h('thead', {}, h('tr', {}, [t('mailing.when'), t('field.email'), t('mailing.status'), t('attempts.server'), t('mailing.reply')].map((x) => h('th', { scope: 'col' }, x)))),
      attemptsBody));
  const retryStatus = h('p', { role: 'status' });

  // Live: attempts and progress from whichever instance sends.
  app.onLeave(subscribe('subscription($id: ID) { attempts(mailingId: $id) { id email attemptedAt status serverResponse smtpServer { name } } }',
    { id }, (data) => {
      if (!attemptsBody.querySelector(`[data-attempt="${CSS.escape(data.attempts.id)}"]`)) {
        attemptsBody.prepend(attemptRow(data.attempts));
      }
      refreshCounts();
    }));
  app.onLeave(subscribe('subscription($id: ID!) { mailingProgress(mailingId: $id) { mailingId runAt total sent failed unknown pending } }',
    { id }, (data) => {
      progress.textContent = progressText(data.mailingProgress);
      refreshCounts();
    }));

  const retry = (statuses, label) => h('button', {
    type: 'button',
    async onclick() {
      try {
        const { retryDeliveries: n } = await gql('mutation($id: ID!, $s: [DeliveryStatus!]!) { retryDeliveries(mailingId: $id, statuses: $s) }', { id, s: statuses });
        retryStatus.textContent = t('mailing.retried', { n });
      } catch (err) {
        retryStatus.textContent = err.message;
      }
    },
  }, label);

  const testResult = h('p', { role: 'status' });
  const testForm = form({
    fields: [field({ name: 'email', label: t('mailing.testTo'), type: 'email', required: true, value: app.viewer.email })],
    submitLabel: t('mailing.testSend'),
    async submit(v) {
      const { sendTestMessage: r } = await gql('mutation($m: ID!, $e: String!) { sendTestMessage(messageId: $m, email: $e) { accepted serverResponse } }',
        { m: m.message.id, e: v.email });
      testResult.textContent = `${r.accepted ? t('mailing.testAccepted') : t('mailing.testRefused')} ${r.serverResponse || ''}`;
    },
  });

  // The counts and runs follow the live events too (one query, at most every half second).
  const numbers = h('dl', { class: 'numbers small' });
  const meta = h('p', { class: 'meta' });
  const showMeta = (x) => meta.replaceChildren(statusText(x), ' · ', t(`periodicity.${m.periodicity}`), ' · ',
    t('mailing.window', { start: when(m.startsAt), end: m.endsAt ? when(m.endsAt) : t('mailing.noEnd') }), ' · ',
    t('mailing.nextRun', { when: when(x.nextRunAt) }), ' · ', t('mailing.zone', { zone: m.timeZone }),
    ...(m.senderIdentity ? [' · ', t('mailing.sentAs', { from: `${m.senderIdentity.name} <${m.senderIdentity.email}>` })] : []),
    ...(m.sendingWindow ? [' · ', t('mailing.sendingWindow', {
      days: m.sendingWindow.days.map((d) => t(`day.${d}`)).join(' '), from: m.sendingWindow.fromHour, to: m.sendingWindow.toHour,
    })] : []));
  showMeta(m);
  const runsBox = h('div', {});
  const showCounts = (mailing) => {
    numbers.replaceChildren(...['recipients', 'sent', 'failed', 'unknown', 'pending', 'cancelled', 'attempts'].map((k) =>
      h('div', {}, h('dt', {}, t(`mailing.${k}`)), h('dd', { 'data-stat': k }, mailing.stats[k]))));
    runsBox.replaceChildren(mailing.runs.nodes.length
      ? table([t('mailing.runAt'), t('mailing.status'), t('mailing.total'), t('mailing.sent'), t('mailing.failed'), t('mailing.unknown'), t('mailing.pending'), t('mailing.cancelled')],
        mailing.runs.nodes.map((r) => h('tr', {}, h('td', {}, when(r.runAt)), h('td', {}, t(`run.${r.status}`)),
          h('td', {}, r.total), h('td', {}, r.sent), h('td', {}, r.failed), h('td', {}, r.unknown), h('td', {}, r.pending), h('td', {}, r.cancelled))))
      : h('p', {}, t('mailing.noRuns')));
  };
  showCounts(m);
  let pending = null;
  const refreshCounts = () => {
    if (pending) return;
    pending = setTimeout(async () => {
      pending = null;
      try {
        const { mailing } = await gql(`query($id: ID!) { mailing(id: $id) { status paused nextRunAt
          stats { recipients sent failed unknown pending cancelled attempts lastAttemptAt }
          runs(first: 20) { nodes { id runAt status total sent failed unknown pending cancelled } } } }`, { id });
        if (mailing) {
          showCounts(mailing);
          showMeta(mailing);
        }
      } catch {
        // The next event tries again.
      }
    }, 500);
  };
  app.onLeave(() => clearTimeout(pending));

  return h('div', {},
    h('h1', {}, m.message.subject),
    meta,
    h('div', { class: 'row actions' },
      m.status !== 'COMPLETED' ? link(`/mailings/${m.id}/edit`, t('action.edit')) : null,
      controls(m, reload)),
    numbers,
    h('section', { 'aria-labelledby': 'current' }, h('h2', { id: 'current' }, t('mailing.current')), progress),
    h('section', { 'aria-labelledby': 'runs' }, h('h2', { id: 'runs' }, t('mailing.runs')), runsBox),
    h('section', { 'aria-labelledby': 'log' },
      h('h2', { id: 'log' }, t('mailing.log')),
      h('div', { class: 'row' }, retry(['FAILED'], t('mailing.retryFailed')), retry(['UNKNOWN'], t('mailing.retryUnknown'))),
      retryStatus,
      attemptsTable),
    h('section', { 'aria-labelledby': 'chart' }, h('h2', { id: 'chart' }, t('mailing.chart')), chart(dailyStats)),
    h('section', { 'aria-labelledby': 'test' }, h('h2', { id: 'test' }, t('mailing.test')), testForm, testResult));
}
