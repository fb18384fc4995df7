// Building the page. Every piece of text goes in as a text node, never as HTML, so names,
// comments, blog posts and server replies cannot inject markup.

import { t } from './i18n.js';

/** An element with attributes (`on…` ones become listeners) and children. */
export function h(tag, attrs, ...children) {
  const el = tag.startsWith('svg:')
    ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.setAttribute('class', value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

let ids = 0;

/** A labelled form field with room for its error. `name` is the API's field name. */
export function field({ name, label, type = 'text', value = '', required = false, hint, options, ...rest }) {
  const id = `f${++ids}`;
  const errorId = `${id}-error`;
  let input;
  if (type === 'textarea') {
    input = h('textarea', { id, name, 'data-field': name, required, 'aria-describedby': errorId, ...rest }, value);
  } else if (type === 'select') {
    input = h('select', { id, name, 'data-field': name, required, 'aria-describedby': errorId, ...rest },
      options.map(([v, text]) => h('option', { value: v, selected: v === value }, text)));
  } else if (type === 'checkbox') {
    input = h('input', { id, name, type, 'data-field': name, checked: !!value, 'aria-describedby': errorId, ...rest });
    return h('div', { class: 'field check' }, input, h('label', { for: id }, label),
      h('p', { class: 'error', id: errorId, 'aria-live': 'polite' }));
  } else {
    input = h('input', { id, name, type, value, 'data-field': name, required, 'aria-describedby': errorId, ...rest });
  }
  return h('div', { class: 'field' },
    h('label', { for: id }, label, required ? h('span', { class: 'req', 'aria-hidden': 'true' }, ' *') : null),
    input,
    hint ? h('p', { class: 'hint' }, hint) : null,
    h('p', { class: 'error', id: errorId, 'aria-live': 'polite' }));
}

/** The values of a form's named fields. */
export function values(form) {
  const out = {};
  for (const el of form.querySelectorAll('[name]')) {
    out[el.name] = el.type === 'checkbox' ? el.checked : el.value;
  }
  return out;
}

/**
 * A form that calls `submit(values)`; API errors appear next to the field they name
 * (`extensions.field`), others above the button.
 */
export function form({ fields, submitLabel, submit, class: cls }) {
  const alert = h('p', { class: 'alert', role: 'alert' });
  const button = h('button', { type: 'submit' }, submitLabel);
  const el = h('form', { class: cls || 'form', novalidate: true }, fields, alert, button);
  el.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors(el);
    button.disabled = true;
    try {
      await submit(values(el), el);
    } catch (err) {
      showErrors(el, err);
    } finally {
      button.disabled = false;
    }
  });
  return el;
}

export function clearErrors(formEl) {
  for (const p of formEl.querySelectorAll('.error, .alert')) p.textContent = '';
  for (const input of formEl.querySelectorAll('[aria-invalid]')) input.removeAttribute('aria-invalid');
}

/** Puts each error next to its field, or in the form's alert. */
export function showErrors(formEl, err) {
  const errors = err && err.errors ? err.errors : [{ message: String(err && err.message || err) }];
  const alert = formEl.querySelector('.alert');
  const general = [];
  for (const e of errors) {
    const name = e.extensions && e.extensions.field;
    const input = name && (formEl.querySelector(`[data-field="${CSS.escape(name)}"]`)
      || formEl.querySelector(`[data-field="${CSS.escape(name.replace(/^input\./, ''))}"]`));
    if (input && input.type !== 'hidden') {
      input.setAttribute('aria-invalid', 'true');
      const out = document.getElementById(input.getAttribute('aria-describedby'));
      out.textContent = e.message;
      input.focus();
    } else {
      general.push(errorText(e));
    }
  }
  if (alert) alert.textContent = general.join(' ');
}

/** A user-facing text for an API error. */
export function errorText(e) {
  const code = e.extensions && e.extensions.code;
  if (code === 'RATE_LIMITED') return t('error.rateLimited', { s: e.extensions.retryAfter });
  if (code === 'UNAUTHENTICATED') return t('error.unauthenticated');
  if (code === 'FORBIDDEN') return t('error.forbidden');
  if (code === 'NOT_FOUND') return t('error.notFound');
  if (code === 'EMAIL_NOT_VERIFIED') return t('error.notVerified');
  return e.message;
}

/** A date-time in the browser's zone, with the zone named. */
export function when(iso) {
  if (!iso) return '—';
  return new Date(iso).toLocaleString(document.documentElement.lang, { dateStyle: 'medium', timeStyle: 'short' });
}

export function localZone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
}

/** `yyyy-MM-ddTHH:mm` in local time, as a datetime-local input wants it. */
export function toLocalInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** A table that scrolls sideways on narrow screens. */
export function table(headers, rows, caption) {
  return h('div', { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': caption || headers.join(', ') },
    h('table', {},
      caption ? h('caption', {}, caption) : null,
      h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, rows)));
}

export function link(href, ...children) {
  return h('a', { href, 'data-link': true }, ...children);
}
