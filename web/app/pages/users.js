// Users (managers and admins): block and unblock; admins also set roles.

import { gql } from '../api.js';
import { h, table, when } from '../dom.js';
import { t } from '../i18n.js';

export async function page({ app }) {
  const box = h('div', { 'aria-live': 'polite' });
  const status = h('p', { role: 'status' });
  async function load() {
    const { users } = await gql('{ users(first: 100) { totalCount nodes { id email fullName role isActive emailVerified createdAt } } }');
    box.replaceChildren(table(
      [t('field.fullName'), t('field.email'), t('users.role'), t('users.active'), t('users.since'), ''],
      users.nodes.map((u) => {
        const self = u.id === app.viewer.id;
        let role = t(`role.${u.role}`);
        if (app.can('admin') && !self) {
          const select = h('select', { 'aria-label': t('users.roleOf', { name: u.fullName }) },
            ['USER', 'MANAGER', 'ADMIN'].map((r) => h('option', { value: r, selected: r === u.role }, t(`role.${r}`))));
          select.addEventListener('change', async () => {
            try {
              await gql('mutation($id: ID!, $r: Role!) { setUserRole(id: $id, role: $r) { id } }', { id: u.id, r: select.value });
              status.textContent = t('users.saved');
            } catch (err) {
              status.textContent = err.message;
              load();
            }
          });
          role = select;
        }
        const toggle = self ? null : h('button', {
          type: 'button',
          class: u.isActive ? 'danger' : '',
          async onclick() {
            try {
              await gql('mutation($id: ID!, $a: Boolean!) { setUserActive(id: $id, active: $a) { id } }', { id: u.id, a: !u.isActive });
              load();
            } catch (err) {
              status.textContent = err.message;
            }
          },
        }, u.isActive ? t('users.block') : t('users.unblock'));
        return h('tr', {}, h('td', {}, u.fullName), h('td', {}, u.email), h('td', {}, role),
          h('td', {}, u.isActive ? t('users.yes') : t('users.blocked')), h('td', {}, when(u.createdAt)), h('td', { class: 'actions' }, toggle));
      }), t('users.title')));
  }
  await load();
  return h('div', {}, h('h1', {}, t('users.title')), status, box);
}
