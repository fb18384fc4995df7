// Messages: list; create and edit subject, format, layout and body, with a live preview
// of the draft as one client (or a sample client) would get it.
//
// The HTML preview is a sandboxed <iframe> (no allow-scripts, no allow-same-origin) that
// a hidden form posts the draft into: the server answers it under its own strict policy,
// so whatever the user's HTML holds runs nothing and reaches nothing inside the app. The
// subject, the text part and any template error come from `previewMessage`.

import { gql } from '../api.js';
import { errorText, field, form, h, table, when } from '../dom.js';
import { t } from '../i18n.js';

const FIELDS = 'id subject body format textBody layout { id name } createdAt';
const DEBOUNCE_MS = 300;

export async function page() {
  let editing = null;
  const listBox = h('div', {});
  const formBox = h('section', { 'aria-labelledby': 'message-form' });
  const [{ layouts }, { clients }] = await Promise.all([
    gql('{ layouts(first: 100) { nodes { id name } } }'),
    gql('{ clients(first: 100) { nodes { id email fullName } } }'),
  ]);

  async function load() {
    const { messages } = await gql(`{ messages(first: 100) { totalCount nodes { ${FIELDS} } } }`);
    listBox.replaceChildren(messages.nodes.length
      ? table([t('field.subject'), t('field.format'), t('messages.created'), ''], messages.nodes.map((m) => h('tr', {},
        h('td', {}, m.subject),
        h('td', {}, t(`format.${m.format}`), m.layout ? ` · ${m.layout.name}` : ''),
        h('td', {}, when(m.createdAt)),
        h('td', { class: 'actions' },
          h('button', { type: 'button', onclick: () => { editing = m; renderForm(); } }, t('action.edit')),
          h('button', {
            type: 'button',
            class: 'danger',
            async onclick() {
              if (!confirm(t('messages.deleteConfirm'))) return;
              try {
                await gql('mutation($id: ID!) { deleteMessage(id: $id) }', { id: m.id });
                load();
              } catch (err) {
                alert(err.message);
              }
            },
          }, t('action.delete'))))), t('messages.title'))
      : h('p', {}, t('messages.none')));
  }

  function renderForm() {
    const m = editing;
    const format = m ? m.format : 'TEXT';
    const el = form({
      fields: [
        field({ name: 'input.subject', label: t('field.subject'), required: true, value: m ? m.subject : '' }),
        field({
          name: 'input.format', label: t('field.format'), type: 'select', value: format,
          options: ['TEXT', 'MARKDOWN', 'HTML'].map((f) => [f, t(`format.${f}`)]),
        }),
        field({
          name: 'input.layoutId', label: t('field.layout'), type: 'select', value: m && m.layout ? m.layout.id : '',
          options: [['', t('messages.noLayout')], ...layouts.nodes.map((l) => [l.id, l.name])],
        }),
        field({ name: 'input.body', label: t('field.body'), type: 'textarea', required: true, rows: 12, value: m ? m.body : '', hint: t('messages.placeholders') }),
        field({ name: 'input.textBody', label: t('field.textBody'), type: 'textarea', rows: 5, value: m && m.textBody ? m.textBody : '', hint: t('messages.textBodyHint') }),
      ],
      submitLabel: m ? t('action.save') : t('messages.create'),
      async submit(v, formEl) {
        const input = draft(v);
        if (m) await gql('mutation($id: ID!, $input: MessageInput!) { updateMessage(id: $id, input: $input) { id } }', { id: m.id, input });
        else await gql('mutation($input: MessageInput!) { createMessage(input: $input) { id } }', { input });
        editing = null;
        formEl.reset();
        renderForm();
        load();
      },
    });

    // The preview: who it is for, HTML or text, and the frame the draft is posted into.
    const frameName = `preview-${Math.random().toString(36).slice(2)}`;
    const client = h('select', { 'aria-label': t('messages.previewFor') },
      h('option', { value: '' }, t('messages.sampleClient')),
      clients.nodes.map((c) => h('option', { value: c.id }, `${c.fullName} <${c.email}>`)));
    const subject = h('p', { class: 'subject' });
    const problem = h('p', { class: 'alert', role: 'alert' });
    const frame = h('iframe', { name: frameName, sandbox: '', title: t('messages.previewHtml'), class: 'preview-frame' });
    const text = h('pre', { class: 'preview-text', hidden: true });
    const tabs = ['html', 'text'].map((which) => h('button', {
      type: 'button',
      role: 'tab',
      'aria-selected': which === 'html' ? 'true' : 'false',
      onclick() {
        for (const tab of tabs) tab.setAttribute('aria-selected', tab === this ? 'true' : 'false');
        frame.hidden = which !== 'html';
        text.hidden = which !== 'text';
      },
    }, which === 'html' ? t('messages.previewHtml') : t('messages.previewText')));
    const tabList = h('div', { role: 'tablist', class: 'tabs' }, tabs);
    const poster = h('form', { method: 'post', action: '/preview', target: frameName, hidden: true });
    const preview = h('div', { class: 'preview', 'aria-live': 'polite' },
      h('h3', {}, t('messages.preview')), client, subject, problem, tabList, frame, text, poster);

    function draft(v) {
      const rich = v['input.format'] !== 'TEXT';
      return {
        subject: v['input.subject'],
        body: v['input.body'],
        format: v['input.format'],
        textBody: rich && v['input.textBody'].trim() ? v['input.textBody'] : null,
        layoutId: rich && v['input.layoutId'] ? v['input.layoutId'] : null,
      };
    }
    function valuesOf() {
      const out = {};
      for (const input of el.querySelectorAll('[name]')) out[input.name] = input.value;
      return out;
    }
    const richOnly = ['input.layoutId', 'input.textBody'].map((n) => el.querySelector(`[name="${n}"]`).closest('.field'));

    let timer = null;
    let asked = 0;
    async function update() {
      const d = draft(valuesOf());
      const rich = d.format !== 'TEXT';
      for (const box of richOnly) box.hidden = !rich;
      tabList.hidden = !rich;
      if (!rich) { frame.hidden = true; text.hidden = false; } else { frame.hidden = tabs[0].getAttribute('aria-selected') !== 'true'; text.hidden = !frame.hidden; }
      if (!d.subject.trim() || !d.body.trim()) return;
      const mine = ++asked;
      try {
        const { previewMessage } = await gql(
          'query($input: MessageInput!, $c: ID) { previewMessage(input: $input, clientId: $c) { subject html text } }',
          { input: d, c: client.value || null });
        if (mine !== asked) return;
        problem.textContent = '';
        subject.textContent = previewMessage.subject;
        text.textContent = previewMessage.text;
        if (rich) {
          // The frame gets the draft from the server, under the preview's own policy.
          poster.replaceChildren(...Object.entries({ ...d, textBody: d.textBody || '', layoutId: d.layoutId || '', clientId: client.value })
            .map(([name, value]) => h('input', { type: 'hidden', name, value: value == null ? '' : value })));
          poster.submit();
        }
      } catch (err) {
        if (mine === asked) problem.textContent = (err.errors || [err]).map(errorText).join(' ');
      }
    }
    const soon = () => { clearTimeout(timer); timer = setTimeout(update, DEBOUNCE_MS); };
    el.addEventListener('input', soon);
    el.addEventListener('change', soon);
    client.addEventListener('change', soon);
    update();
    formBox.replaceChildren(
      h('h2', { id: 'message-form' }, m ? t('messages.edit') : t('messages.new')),
      h('div', { class: 'split' }, el, preview),
      m ? h('button', { type: 'button', onclick: () => { editing = null; renderForm(); } }, t('action.cancel')) : '');
  }

  renderForm();
  await load();
  return h('div', {}, h('h1', {}, t('messages.title')), listBox, formBox);
}
