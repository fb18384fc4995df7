import { gql } from '../api.js';
import { h, link, when } from '../dom.js';
import { t } from '../i18n.js';

export async function page({ app }) {
  const { homeStats: s } = await gql(
    '{ homeStats { mailingsTotal mailingsActive uniqueClients randomPosts(count: 3) { id title authorName publishedAt } } }',
  );
  return h('div', { class: 'home' },
    h('h1', {}, t('home.title')),
    h('p', { class: 'lead' }, t('home.lead')),
    app.viewer
      ? h('p', {}, link('/mailings', t('home.toMailings')))
      : h('p', {}, link('/register', t('home.start')), ' · ', link('/login', t('nav.login'))),
    h('section', { 'aria-labelledby': 'numbers' },
      h('h2', { id: 'numbers' }, t('home.numbers')),
      h('dl', { class: 'numbers' },
        h('div', {}, h('dt', {}, t('home.mailingsTotal')), h('dd', { 'data-stat': 'mailingsTotal' }, s.mailingsTotal)),
        h('div', {}, h('dt', {}, t('home.mailingsActive')), h('dd', { 'data-stat': 'mailingsActive' }, s.mailingsActive)),
        h('div', {}, h('dt', {}, t('home.uniqueClients')), h('dd', { 'data-stat': 'uniqueClients' }, s.uniqueClients)))),
    h('section', { 'aria-labelledby': 'posts' },
      h('h2', { id: 'posts' }, t('home.posts')),
      s.randomPosts.length
        ? h('ul', { class: 'cards' }, s.randomPosts.map((p) => h('li', { class: 'card' },
          h('h3', {}, link(`/blog/${p.id}`, p.title)),
          h('p', { class: 'meta' }, t('blog.by', { name: p.authorName }), ' · ', when(p.publishedAt)))))
        : h('p', {}, t('blog.none'))));
}
