// Messages: list; create and edit subject and body, with a preview.

import { gql } from '../api.js';
import { field, form, h, table, when } from '../dom.js';
import { t } from '../i18n.js';

const SAMPLE = { full_name: 'Ann Example', email: 'ann@example.com', unsubscribe_url: 'https://…/unsubscribe' };

/** The body as a client would read it, placeholders filled with a sample client. */
function fill(text) {
  return text.replace(/\{\{\s*(full_name|email|unsubscribe_url)\s*\}\}/g, (_, name) => SAMPLE[name]);
}

export async function page() {
  let editing = null;
  const listBox = h('div', {});
  const formBox = h('section', { 'aria-labelledby': 'message-form' });

  async function load() {
    const { messages } = await gql('{ messages(first: 100) { totalCount nodes { id subject body createdAt } } }');
    listBox.replaceChildren(messages.nodes.length
      ? table([t('field.subject'), t('messages.created'), ''], messages.nodes.map((m) => h('tr', {},
        h('td', {}, m.subject),
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
    const preview = h('div', { class: 'preview', 'aria-live': 'polite' });
    const el = form({
      fields: [
        field({ name: 'input.subject', label: t('field.subject'), required: true, value: m ? m.subject : '' }),
        field({ name: 'input.body', label: t('field.body'), type: 'textarea', required: true, rows: 10, value: m ? m.body : '', hint: t('messages.placeholders') }),
      ],
      submitLabel: m ? t('action.save') : t('messages.create'),
      async submit(v, formEl) {
        const input = { subject: v['input.subject'], body: v['input.body'] };
        if (m) await gql('mutation($id: ID!, $input: MessageInput!) { updateMessage(id: $id, input: $input) { id } }', { id: m.id, input });
        else await gql('mutation($input: MessageInput!) { createMessage(input: $input) { id } }', { input });
        editing = null;
        formEl.reset();
        renderForm();
        load();
      },
    });
    const update = () => {
      const subject = el.querySelector('[name="input.subject"]').value;
      const body = el.querySelector('[name="input.body"]').value;
      preview.replaceChildren(h('h3', {}, t('messages.preview')), h('p', { class: 'subject' }, fill(subject)), h('pre', {}, fill(body)));
    };
    el.addEventListener('input', update);
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
