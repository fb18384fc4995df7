// Texts: one file per language in i18n/; the choice is kept in localStorage.

import en from './i18n/en.js';
import ru from './i18n/ru.js';

export const languages = { en, ru };

let current = localStorage.getItem('mailwarm.lang')
  || ((navigator.language || '').toLowerCase().startsWith('ru') ? 'ru' : 'en');
if (!languages[current]) current = 'en';
document.documentElement.lang = current;

export function lang() {
  return current;
}

export function setLang(name) {
  current = languages[name] ? name : 'en';
  localStorage.setItem('mailwarm.lang', current);
  document.documentElement.lang = current;
}

/** The text for `key`, with `{name}` placeholders filled from `vars`. */
export function t(key, vars = {}) {
  let text = languages[current][key] ?? en[key] ?? key;
  for (const [name, value] of Object.entries(vars)) text = text.replaceAll(`{${name}}`, String(value));
  return text;
}
