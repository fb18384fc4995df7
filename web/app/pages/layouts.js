// Layouts: HTML around messages ({{ content }} is where a message goes); list, create,
// edit, delete (refused while a message uses one).

import { gql } from '../api.js';
import { field, form, h, table, when } from '../dom.js';
import { t } from '../i18n.js';

const STARTER = `<!doctype html>
<html>
<head>
<style>
  body { font-family: system-ui, sans-serif; background: #f4f4f5; }
  .card { max-width: 600px; margin: 24px auto; background: #fff; padding: 24px; border-radius: 8px; }
</style>
</head>
<body>
<div class="card">
{{ content }}
</div>
</body>
</html>
`;

export async function page() {
  let editing = null;
  const listBox = h('div', {});
  const formBox = h('section', { 'aria-labelledby': 'layout-form' });

  async function load() {
    const { layouts } = await gql('{ layouts(first: 100) { totalCount nodes { id name html createdAt } } }');
    listBox.replaceChildren(layouts.nodes.length
      ? table([t('field.name'), t('messages.created'), ''], layouts.nodes.map((l) => h('tr', {},
        h('td', {}, l.name),
        h('td', {}, when(l.createdAt)),
        h('td', { class: 'actions' },
          h('button', { type: 'button', onclick: () => { editing = l; renderForm(); } }, t('action.edit')),
          h('button', {
            type: 'button',
            class: 'danger',
            async onclick() {
              if (!confirm(t('layouts.deleteConfirm'))) return;
              try {
                await gql('mutation($id: ID!) { deleteLayout(id: $id) }', { id: l.id });
                load();
              } catch (err) {
                alert(err.message);
              }
            },
          }, t('action.delete'))))), t('layouts.title'))
      : h('p', {}, t('layouts.none')));
  }

  function renderForm() {
    const l = editing;
    const el = form({
      fields: [
        field({ name: 'input.name', label: t('field.name'), required: true, value: l ? l.name : '' }),
        field({ name: 'input.html', label: t('field.html'), type: 'textarea', required: true, rows: 16, value: l ? l.html : STARTER, hint: t('layouts.hint') }),
      ],
      submitLabel: l ? t('action.save') : t('layouts.create'),
      async submit(v, formEl) {
        const input = { name: v['input.name'], html: v['input.html'] };
        if (l) await gql('mutation($id: ID!, $input: LayoutInput!) { updateLayout(id: $id, input: $input) { id } }', { id: l.id, input });
        else await gql('mutation($input: LayoutInput!) { createLayout(input: $input) { id } }', { input });
        editing = null;
        formEl.reset();
        renderForm();
        load();
      },
    });
    formBox.replaceChildren(
      h('h2', { id: 'layout-form' }, l ? t('layouts.edit') : t('layouts.new')),
      el,
      l ? h('button', { type: 'button', onclick: () => { editing = null; renderForm(); } }, t('action.cancel')) : '');
  }

  renderForm();
  await load();
  return h('div', {}, h('h1', {}, t('layouts.title')), listBox, formBox);
}
