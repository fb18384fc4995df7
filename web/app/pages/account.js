// Register, verify e-mail, log in, forgot and reset password, account settings.

import { gql } from '../api.js';
import { field, form, h, link, table, when } from '../dom.js';
import { t } from '../i18n.js';

function done(title, text, ...more) {
  return h('div', {}, h('h1', {}, title), h('p', { role: 'status' }, text), ...more);
}

export async function register({ app }) {
  const box = h('div', {});
  box.append(h('h1', {}, t('register.title')), form({
    fields: [
      field({ name: 'fullName', label: t('field.fullName'), required: true, autocomplete: 'name' }),
      field({ name: 'email', label: t('field.email'), type: 'email', required: true, autocomplete: 'email' }),
      field({ name: 'password', label: t('field.password'), type: 'password', required: true, autocomplete: 'new-password', hint: t('field.passwordHint') }),
    ],
    submitLabel: t('register.submit'),
    async submit(v) {
      await gql('mutation($e: String!, $p: String!, $n: String!) { register(email: $e, password: $p, fullName: $n) }',
        { e: v.email, p: v.password, n: v.fullName });
      box.replaceChildren(done(t('register.title'), t('register.sent', { email: v.email })));
    },
  }), h('p', {}, link('/login', t('register.haveAccount'))));
  return box;
}

export async function verifyEmail({ query }) {
  try {
    await gql('mutation($t: String!) { verifyEmail(token: $t) }', { t: query.get('token') || '' });
    return done(t('verify.title'), t('verify.ok'), h('p', {}, link('/login', t('nav.login'))));
  } catch (err) {
    return done(t('verify.failedTitle'), err.message, h('p', {}, link('/login', t('verify.resend'))));
  }
}

export async function login({ app, query }) {
  const resend = h('div', {});
  const box = h('div', {},
    h('h1', {}, t('login.title')),
    form({
      fields: [
        field({ name: 'email', label: t('field.email'), type: 'email', required: true, autocomplete: 'username' }),
        field({ name: 'password', label: t('field.password'), type: 'password', required: true, autocomplete: 'current-password' }),
      ],
      submitLabel: t('login.submit'),
      async submit(v) {
        try {
          // The session comes back as an HttpOnly cookie; the token in the answer is not kept.
          await gql('mutation($e: String!, $p: String!) { login(email: $e, password: $p) { user { id } } }',
            { e: v.email, p: v.password });
        } catch (err) {
          if (err.code === 'EMAIL_NOT_VERIFIED') {
            resend.replaceChildren(h('button', {
              type: 'button',
              async onclick() {
                await gql('mutation($e: String!) { resendVerification(email: $e) }', { e: v.email });
                resend.replaceChildren(h('p', { role: 'status' }, t('login.resent')));
              },
            }, t('verify.resend')));
          }
          throw err;
        }
        await app.refreshViewer();
        const next = query.get('next');
        app.navigate(next && next.startsWith('/') && !next.startsWith('//') ? next : '/mailings');
      },
    }),
    resend,
    h('p', {}, link('/forgot-password', t('login.forgot')), ' · ', link('/register', t('nav.register'))));
  return box;
}

export async function forgotPassword() {
  const box = h('div', {});
  box.append(h('h1', {}, t('forgot.title')), h('p', {}, t('forgot.lead')), form({
    fields: [field({ name: 'email', label: t('field.email'), type: 'email', required: true, autocomplete: 'email' })],
    submitLabel: t('forgot.submit'),
    async submit(v) {
      await gql('mutation($e: String!) { requestPasswordReset(email: $e) }', { e: v.email });
      box.replaceChildren(done(t('forgot.title'), t('forgot.sent', { email: v.email })));
    },
  }));
  return box;
}

export async function resetPassword({ query }) {
  const box = h('div', {});
  box.append(h('h1', {}, t('reset.title')), form({
    fields: [
      field({ name: 'newPassword', label: t('field.newPassword'), type: 'password', required: true, autocomplete: 'new-password', hint: t('field.passwordHint') }),
      field({ name: 'token', label: 'token', type: 'hidden', value: query.get('token') || '' }),
    ],
    submitLabel: t('reset.submit'),
    async submit(v) {
      await gql('mutation($t: String!, $p: String!) { resetPassword(token: $t, newPassword: $p) }',
        { t: v.token, p: v.newPassword });
      box.replaceChildren(done(t('reset.title'), t('reset.ok'), h('p', {}, link('/login', t('nav.login')))));
    },
  }));
  // The token field is hidden; its error (an expired link) shows in the form's alert.
  for (const el of box.querySelectorAll('input[type=hidden]')) el.closest('.field').hidden = true;
  return box;
}

/** API keys: list, make (the secret is shown once), revoke. */
async function apiKeys() {
  const box = h('section', { 'aria-labelledby': 'api-keys' });
  const secretBox = h('div', { 'aria-live': 'polite' });
  const listBox = h('div', {});
  async function load() {
    const { apiKeys: keys } = await gql('{ apiKeys { id name scope createdAt lastUsedAt } }');
    listBox.replaceChildren(keys.length
      ? table([t('field.name'), t('apiKeys.scope'), t('apiKeys.created'), t('apiKeys.lastUsed'), ''], keys.map((k) => h('tr', { 'data-key': k.id },
        h('td', {}, k.name),
        h('td', {}, t(`apiKeys.${k.scope}`)),
        h('td', {}, when(k.createdAt)),
        h('td', {}, k.lastUsedAt ? when(k.lastUsedAt) : t('apiKeys.never')),
        h('td', { class: 'actions' }, h('button', {
          type: 'button',
          class: 'danger',
          async onclick() {
            if (!confirm(t('apiKeys.revokeConfirm', { name: k.name }))) return;
            await gql('mutation($id: ID!) { revokeApiKey(id: $id) }', { id: k.id });
            secretBox.replaceChildren();
            await load();
          },
        }, t('apiKeys.revoke'))))), t('apiKeys.title'))
      : h('p', {}, t('apiKeys.none')));
  }
  box.append(
    h('h2', { id: 'api-keys' }, t('apiKeys.title')),
    h('p', {}, t('apiKeys.lead')),
    secretBox,
    form({
      fields: [
        field({ name: 'name', label: t('field.name'), required: true, maxlength: 100 }),
        field({ name: 'scope', label: t('apiKeys.scope'), type: 'select', value: 'READ', options: [['READ', t('apiKeys.READ')], ['WRITE', t('apiKeys.WRITE')]] }),
      ],
      submitLabel: t('apiKeys.create'),
      async submit(v, el) {
        const { createApiKey } = await gql('mutation($n: String!, $s: ApiKeyScope!) { createApiKey(name: $n, scope: $s) { secret apiKey { id } } }',
          { n: v.name, s: v.scope });
        el.reset();
        // Shown once, as text; the page keeps it nowhere else.
        secretBox.replaceChildren(h('p', { class: 'alert' }, t('apiKeys.secretOnce')),
          h('pre', { class: 'secret', id: 'api-key-secret' }, createApiKey.secret));
        await load();
      },
    }),
    listBox);
  await load();
  return box;
}

export async function settings({ app }) {
  const status = h('p', { role: 'status' });
  return h('div', {},
    h('h1', {}, t('settings.title')),
    h('p', {}, app.viewer.fullName, ' · ', app.viewer.email, ' · ', t(`role.${app.viewer.role}`)),
    h('h2', {}, t('settings.changePassword')),
    status,
    form({
      fields: [
        field({ name: 'currentPassword', label: t('field.currentPassword'), type: 'password', required: true, autocomplete: 'current-password' }),
        field({ name: 'newPassword', label: t('field.newPassword'), type: 'password', required: true, autocomplete: 'new-password', hint: t('field.passwordHint') }),
      ],
      submitLabel: t('settings.changePassword'),
      async submit(v, el) {
        await gql('mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }',
          { c: v.currentPassword, n: v.newPassword });
        el.reset();
        status.textContent = t('settings.passwordChanged');
      },
    }),
    await apiKeys(),
    h('h2', {}, t('settings.deleteAccount')),
    h('p', {}, t('settings.deleteLead')),
    form({
      fields: [field({ name: 'password', label: t('field.password'), type: 'password', required: true, autocomplete: 'current-password' })],
      submitLabel: t('settings.deleteAccount'),
      class: 'form danger',
      async submit(v) {
        if (!confirm(t('settings.deleteConfirm'))) return;
        await gql('mutation($p: String!) { deleteAccount(password: $p) }', { p: v.password });
        await app.refreshViewer();
        app.navigate('/');
      },
    }));
}
