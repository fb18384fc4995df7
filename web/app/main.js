// The single page: a header with navigation, and the page the path names. Links with
// data-link change the page without reloading; the back button works.

import { gql, resetSubscriptions } from './api.js';
import { h, link } from './dom.js';
import { languages, lang, setLang, t } from './i18n.js';
import * as account from './pages/account.js';
import * as blog from './pages/blog.js';
import * as clients from './pages/clients.js';
import * as home from './pages/home.js';
import * as layouts from './pages/layouts.js';
import * as mailing from './pages/mailing.js';
import * as mailings from './pages/mailings.js';
import * as messages from './pages/messages.js';
import * as sending from './pages/sending.js';
import * as suppressions from './pages/suppressions.js';
import * as users from './pages/users.js';

// [path pattern, page, who may see it: null (anyone), 'user', 'manager', 'admin']
const routes = [
  [/^\/$/, home.page, null],
  [/^\/register$/, account.register, null],
  [/^\/verify-email$/, account.verifyEmail, null],
  [/^\/login$/, account.login, null],
  [/^\/forgot-password$/, account.forgotPassword, null],
  [/^\/reset-password$/, account.resetPassword, null],
  [/^\/settings$/, account.settings, 'user'],
  [/^\/clients$/, clients.page, 'user'],
  [/^\/suppressions$/, suppressions.page, 'user'],
  [/^\/messages$/, messages.page, 'user'],
  [/^\/layouts$/, layouts.page, 'user'],
  [/^\/mailings$/, mailings.active, 'user'],
  [/^\/mailings\/completed$/, mailings.completed, 'user'],
  [/^\/mailings\/new$/, mailings.editor, 'user'],
  [/^\/mailings\/([^/]+)\/edit$/, mailings.editor, 'user'],
  [/^\/mailings\/([^/]+)$/, mailing.page, 'user'],
  [/^\/blog$/, blog.list, null],
  [/^\/blog\/new$/, blog.editor, 'admin'],
  [/^\/blog\/([^/]+)\/edit$/, blog.editor, 'admin'],
  [/^\/blog\/([^/]+)$/, blog.post, null],
  [/^\/users$/, users.page, 'manager'],
  [/^\/sending$/, sending.page, 'admin'],
];

const rank = { USER: 1, MANAGER: 2, ADMIN: 3 };
const needs = { user: 1, manager: 2, admin: 3 };

const app = {
  viewer: null,
  cleanups: [],
  navigate(path, { replace = false } = {}) {
    if (replace) history.replaceState(null, '', path);
    else history.pushState(null, '', path);
    render();
  },
  onLeave(fn) {
    app.cleanups.push(fn);
  },
  async refreshViewer() {
    try {
      app.viewer = (await gql('{ me { id email fullName role } }')).me;
    } catch {
      app.viewer = null;
    }
    resetSubscriptions();
    renderHeader();
  },
  can(role) {
    return app.viewer && rank[app.viewer.role] >= needs[role];
  },
};

function renderHeader() {
  const top = document.getElementById('top');
  const v = app.viewer;
  const nav = [link('/', t('nav.home')), link('/blog', t('nav.blog'))];
  if (v) {
    nav.push(link('/mailings', t('nav.mailings')), link('/mailings/completed', t('nav.completed')),
      link('/clients', t('nav.clients')), link('/suppressions', t('nav.suppressions')), link('/messages', t('nav.messages')), link('/layouts', t('nav.layouts')));
    if (app.can('manager')) nav.push(link('/users', t('nav.users')));
    if (app.can('admin')) nav.push(link('/sending', t('nav.sending')));
  }
  const language = h('select', { id: 'lang', 'aria-label': t('nav.language') },
    Object.keys(languages).map((code) => h('option', { value: code, selected: code === lang() }, languages[code]['lang.name'])));
  language.addEventListener('change', () => {
    setLang(language.value);
    renderHeader();
    render();
  });
  const session = v
    ? [link('/settings', v.fullName), h('button', { type: 'button', class: 'link', onclick: logout }, t('nav.logout'))]
    : [link('/login', t('nav.login')), link('/register', t('nav.register'))];
  top.replaceChildren(h('div', { class: 'bar' },
    h('a', { href: '/', 'data-link': true, class: 'brand' }, 'mailwarm'),
    h('nav', { 'aria-label': t('nav.main') }, nav),
    h('div', { class: 'session' }, session, h('label', { for: 'lang', class: 'sr-only' }, t('nav.language')), language)));
  markCurrent();
}

async function logout() {
  try {
    await gql('mutation { logout }');
  } catch {
    // Already signed out.
  }
  await app.refreshViewer();
  app.navigate('/');
}

function markCurrent() {
  for (const a of document.querySelectorAll('#top nav a')) {
    if (a.getAttribute('href') === location.pathname) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

async function render() {
  for (const fn of app.cleanups.splice(0)) fn();
  const main = document.getElementById('main');
  const path = location.pathname;
  const found = routes.find(([pattern]) => pattern.test(path));
  markCurrent();
  if (!found) {
    main.replaceChildren(h('h1', {}, t('error.notFoundTitle')), h('p', {}, link('/', t('nav.home'))));
    return;
  }
  const [pattern, page, role] = found;
  if (role && !app.viewer) {
    app.navigate(`/login?next=${encodeURIComponent(path + location.search)}`, { replace: true });
    return;
  }
  if (role && !app.can(role)) {
    main.replaceChildren(h('h1', {}, t('error.forbiddenTitle')), h('p', {}, t('error.forbidden')));
    return;
  }
  const params = path.match(pattern).slice(1).map(decodeURIComponent);
  const query = new URLSearchParams(location.search);
  try {
    const content = await page({ app, params, query });
    if (location.pathname !== path) return; // navigated away meanwhile
    main.replaceChildren(content);
  } catch (err) {
    main.replaceChildren(h('h1', {}, t('error.title')), h('p', { role: 'alert' }, err.message || String(err)));
  }
  const heading = main.querySelector('h1');
  document.title = heading ? `${heading.textContent} · mailwarm` : 'mailwarm';
  if (render.count++ > 0) main.focus();
}
render.count = 0;

document.addEventListener('click', (event) => {
  const a = event.target.closest && event.target.closest('a[data-link]');
  if (!a || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  event.preventDefault();
  app.navigate(a.getAttribute('href'));
});
window.addEventListener('popstate', render);

await app.refreshViewer();
render();
