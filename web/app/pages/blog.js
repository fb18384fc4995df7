// The blog: list, post (counts a view), and for admins the editor and drafts.

import { gql } from '../api.js';
import { field, form, h, link, when } from '../dom.js';
import { t } from '../i18n.js';

export async function list({ app }) {
  const { blogPosts } = await gql('{ blogPosts(first: 50) { nodes { id title authorName published publishedAt createdAt views } } }');
  return h('div', {},
    h('h1', {}, t('blog.title')),
    app.can('admin') ? h('p', {}, link('/blog/new', t('blog.new'))) : null,
    blogPosts.nodes.length
      ? h('ul', { class: 'cards' }, blogPosts.nodes.map((p) => h('li', { class: 'card' },
        h('h2', {}, link(`/blog/${p.id}`, p.title)),
        h('p', { class: 'meta' }, t('blog.by', { name: p.authorName }), ' · ',
          p.published ? when(p.publishedAt) : h('strong', {}, t('blog.draft')), ' · ', t('blog.views', { n: p.views })))))
      : h('p', {}, t('blog.none')));
}

export async function post({ app, params }) {
  const { blogPost: p } = await gql('query($id: ID!) { blogPost(id: $id) { id title body imageUrl authorName published publishedAt views } }', { id: params[0] });
  if (!p) throw new Error(t('error.notFound'));
  return h('article', {},
    h('h1', {}, p.title),
    h('p', { class: 'meta' }, t('blog.by', { name: p.authorName }), ' · ',
      p.published ? when(p.publishedAt) : t('blog.draft'), ' · ', h('span', { id: 'views' }, t('blog.views', { n: p.views }))),
    p.imageUrl ? h('img', { src: p.imageUrl, alt: '', class: 'cover' }) : null,
    // Markdown shown as text: never parsed as HTML.
    h('div', { class: 'post-body' }, p.body),
    app.can('admin')
      ? h('p', { class: 'row' }, link(`/blog/${p.id}/edit`, t('action.edit')), h('button', {
        type: 'button',
        class: 'danger',
        async onclick() {
          if (!confirm(t('blog.deleteConfirm'))) return;
          await gql('mutation($id: ID!) { deleteBlogPost(id: $id) }', { id: p.id });
          app.navigate('/blog');
        },
      }, t('action.delete')))
      : null,
    h('p', {}, link('/blog', t('blog.back'))));
}

export async function editor({ app, params }) {
  const id = params[0];
  const p = id
    ? (await gql('query($id: ID!) { blogPost(id: $id) { id title body imageUrl published } }', { id })).blogPost
    : null;
  return h('div', {},
    h('h1', {}, id ? t('blog.edit') : t('blog.new')),
    form({
      fields: [
        field({ name: 'input.title', label: t('field.title'), required: true, value: p ? p.title : '' }),
        field({ name: 'input.body', label: t('field.postBody'), type: 'textarea', rows: 14, required: true, value: p ? p.body : '' }),
        field({ name: 'input.imageUrl', label: t('field.imageUrl'), type: 'url', value: p && p.imageUrl ? p.imageUrl : '' }),
        field({ name: 'input.published', label: t('field.published'), type: 'checkbox', value: p ? p.published : false }),
      ],
      submitLabel: t('action.save'),
      async submit(v) {
        const input = { title: v['input.title'], body: v['input.body'], imageUrl: v['input.imageUrl'] || null, published: v['input.published'] };
        const data = id
          ? await gql('mutation($id: ID!, $i: BlogPostInput!) { updateBlogPost(id: $id, input: $i) { id } }', { id, i: input })
          : await gql('mutation($i: BlogPostInput!) { createBlogPost(input: $i) { id } }', { i: input });
        app.navigate(`/blog/${(data.updateBlogPost || data.createBlogPost).id}`);
      },
    }));
}
