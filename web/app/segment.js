// The segment builder: conditions on built-in fields and attributes, all or any of them.
// The clients page filters with it and the mailing editor makes audiences with it; the API
// checks every condition and names the one at fault (`<prefix>.conditions.N.field`).

import { h } from './dom.js';
import { t } from './i18n.js';

const BUILT_IN = ['email', 'fullName', 'comment', 'createdAt'];
const OPS = ['EQ', 'NE', 'CONTAINS', 'EXISTS', 'GT', 'LT'];
let builders = 0;

/**
 * `keys`: the attribute keys to suggest; `initial`: a Segment as the API returns it;
 * `prefix`: the API's name for the segment (errors land next to their condition);
 * `onChange()`: called after every edit. Returns { el, value() } where value() is a
 * SegmentInput, or null with no condition.
 */
export function segmentBuilder({ keys = [], initial = null, prefix = 'segment', onChange = () => {} }) {
  const n = ++builders;
  let match = (initial && initial.match) || 'ALL';
  const rows = initial ? initial.conditions.map((c) => ({ field: c.field, op: c.op, value: c.value || '' })) : [];
  const listId = `segment-fields-${n}`;
  const suggestions = h('datalist', { id: listId },
    [...BUILT_IN, ...keys.map((k) => `attributes.${k}`)].map((f) => h('option', { value: f })));
  const list = h('ol', { class: 'conditions' });
  const matchSelect = h('select', { 'aria-label': t('segment.match'), 'data-segment-match': true },
    ['ALL', 'ANY'].map((m) => h('option', { value: m, selected: m === match }, t(`segment.${m}`))));
  matchSelect.addEventListener('change', () => { match = matchSelect.value; onChange(); });

  function control(tag, attrs, name, i) {
    const errorId = `segment-${n}-${i}-${name}-error`;
    return [h(tag, { ...attrs, 'data-field': `${prefix}.conditions.${i}.${name}`, 'aria-describedby': errorId }),
      h('span', { class: 'error', id: errorId, 'aria-live': 'polite' })];
  }

  function render() {
    list.replaceChildren(...rows.map((row, i) => {
      const [fieldInput, fieldError] = control('input', {
        list: listId, value: row.field, 'aria-label': t('segment.field', { n: i + 1 }), placeholder: 'attributes.plan',
      }, 'field', i);
      fieldInput.addEventListener('input', () => { row.field = fieldInput.value.trim(); onChange(); });
      const [opSelect] = control('select', { 'aria-label': t('segment.op', { n: i + 1 }) }, 'op', i);
      opSelect.append(...OPS.map((op) => h('option', { value: op, selected: op === row.op }, t(`segment.op.${op}`))));
      const [valueInput, valueError] = control('input', {
        value: row.value, 'aria-label': t('segment.value', { n: i + 1 }), hidden: row.op === 'EXISTS',
      }, 'value', i);
      opSelect.addEventListener('change', () => {
        row.op = opSelect.value;
        valueInput.hidden = row.op === 'EXISTS';
        onChange();
      });
      valueInput.addEventListener('input', () => { row.value = valueInput.value; onChange(); });
      const remove = h('button', {
        type: 'button',
        'aria-label': t('segment.remove', { n: i + 1 }),
        onclick() { rows.splice(i, 1); render(); onChange(); },
      }, '×');
      return h('li', { class: 'condition' }, fieldInput, opSelect, valueInput, remove, fieldError, valueError);
    }));
  }

  const add = h('button', {
    type: 'button',
    onclick() {
      rows.push({ field: keys.length ? `attributes.${keys[0]}` : 'email', op: 'EQ', value: '' });
      render();
      onChange();
      list.lastElementChild.querySelector('input').focus();
    },
  }, t('segment.add'));
  render();
  return {
    el: h('div', { class: 'segment' }, h('div', { class: 'row' }, h('span', {}, t('segment.lead')), matchSelect), list, add, suggestions),
    value() {
      if (!rows.length) return null;
      return { match, conditions: rows.map((r) => ({ field: r.field, op: r.op, value: r.op === 'EXISTS' ? null : r.value })) };
    },
  };
}
