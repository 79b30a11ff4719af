// Modal dialogs on the native <dialog> element: focus stays inside, Escape
// closes, focus returns to where it was. Each dialog is built when opened
// and removed when closed.

import { h, clear } from './dom.js';
import { userName } from './format.js';
import { avatar } from './view.js';

function openDialog(title, build, { wide = false } = {}) {
  const returnTo = document.activeElement;
  const body = h('div', { class: 'dlg-body' });
  const heading = h('h2', { id: `dlg-${Date.now()}` }, title);
  const dlg = h('dialog', { class: `dlg${wide ? ' wide' : ''}`, 'aria-labelledby': heading.id },
    h('div', { class: 'dlg-head' }, heading,
      h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Close', onclick: () => dlg.close() }, '×')),
    body);
  // close(then): then() runs once the dialog is gone and focus is back
  let afterClose = null;
  const close = (then) => {
    afterClose = typeof then === 'function' ? then : null;
    dlg.close();
  };
  const first = build(body, close); // the element to focus first
  dlg.addEventListener('close', () => {
    dlg.remove();
    if (returnTo?.isConnected) returnTo.focus();
    afterClose?.();
  });
  dlg.addEventListener('click', (e) => { if (e.target === dlg) dlg.close(); }); // backdrop
  document.body.append(dlg);
  dlg.showModal();
  first?.focus();
  return dlg;
}

function errorLine() {
  return h('p', { class: 'form-error', role: 'alert' });
}

// create(name, isPrivate) -> Promise; rejects with an error to show
export function createChannelDialog(create) {
  openDialog('Create a channel', (body, close) => {
    const name = h('input', {
      name: 'name', required: true, maxlength: 80, pattern: '[a-z0-9_\\-]+', autocomplete: 'off',
      placeholder: 'e.g. plan-budget', 'aria-describedby': 'chan-name-hint',
    });
    const priv = h('input', { type: 'checkbox', name: 'private' });
    const err = errorLine();
    name.addEventListener('input', () => {
      const v = name.value.toLowerCase().replace(/\s+/g, '-');
      if (v !== name.value) name.value = v;
    });
    const form = h('form', { class: 'stack' },
      h('label', {}, 'Name', name),
      h('p', { id: 'chan-name-hint', class: 'hint' }, 'Lower-case letters, digits, - and _.'),
      h('label', { class: 'check' }, priv, ' Make private — only invited people can see it'),
      err,
      h('div', { class: 'dlg-actions' },
        h('button', { type: 'button', class: 'btn', onclick: () => close() }, 'Cancel'),
        h('button', { type: 'submit', class: 'btn primary' }, 'Create')));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      err.textContent = '';
      try {
        close(await create(name.value, priv.checked));
      } catch (ex) {
        err.textContent = ex.code === 'name_taken' ? 'That name is already taken.'
          : ex.code === 'invalid_args' ? 'Use 1 to 80 lower-case letters, digits, - or _.' : ex.message;
      }
    });
    body.append(form);
    return name;
  });
}

// load() -> Promise<[{id, name, members, joined}]>; join(id), open(id)
export function browseDialog(load, join, open) {
  openDialog('Browse channels', (body, close) => {
    const filter = h('input', { type: 'search', placeholder: 'Search channels', 'aria-label': 'Search channels' });
    const list = h('ul', { class: 'pick-list' }, h('li', { class: 'empty-row' }, 'Loading…'));
    const err = errorLine();
    let all = [];
    const render = () => {
      clear(list);
      const q = filter.value.trim().toLowerCase();
      const shown = all.filter((c) => c.name.includes(q));
      if (!shown.length) list.append(h('li', { class: 'empty-row' }, 'No channel matches.'));
      for (const c of shown) {
        const action = c.joined
          ? h('button', { type: 'button', class: 'btn', onclick: () => close(() => open(c.id)) }, 'Open')
          : h('button', {
            type: 'button', class: 'btn primary',
            onclick: async () => {
              try {
                close(await join(c.id));
              } catch (ex) { err.textContent = ex.message; }
            },
          }, 'Join');
        list.append(h('li', { class: 'pick-row' },
          h('span', { class: 'pick-name' }, `#${c.name}`),
          h('span', { class: 'muted-text' }, `${c.members} member${c.members === 1 ? '' : 's'}${c.joined ? ' · joined' : ''}`),
          action));
      }
    };
    filter.addEventListener('input', render);
    body.append(filter, err, list);
    load().then((channels) => {
      all = channels.sort((a, b) => a.name.localeCompare(b.name));
      render();
    }, (ex) => { err.textContent = ex.message; });
    return filter;
  }, { wide: true });
}

// users: [user] but me; start(ids) -> Promise
export function dmDialog(users, start) {
  openDialog('Direct message', (body, close) => {
    const filter = h('input', { type: 'search', placeholder: 'Find people', 'aria-label': 'Find people' });
    const list = h('ul', { class: 'pick-list' });
    const err = errorLine();
    const chosen = new Set();
    const go = h('button', { type: 'submit', class: 'btn primary', disabled: true }, 'Open conversation');
    const render = () => {
      clear(list);
      const q = filter.value.trim().toLowerCase();
      for (const u of users) {
        if (q && !u.handle.includes(q) && !(u.display_name || '').toLowerCase().includes(q)) continue;
        const box = h('input', { type: 'checkbox', value: u.id, checked: chosen.has(u.id) });
        box.addEventListener('change', () => {
          if (box.checked) chosen.add(u.id); else chosen.delete(u.id);
          go.disabled = !chosen.size || chosen.size > 8;
        });
        list.append(h('li', { class: 'pick-row' },
          h('label', { class: 'check' }, box, avatar(u.id, userName(u), 24),
            h('span', { class: 'pick-name' }, userName(u)), h('span', { class: 'muted-text' }, `@${u.handle}`))));
      }
    };
    const form = h('form', { class: 'stack' }, filter, list,
      h('p', { class: 'hint' }, 'Pick one person, or up to 8 for a group conversation.'), err,
      h('div', { class: 'dlg-actions' }, h('button', { type: 'button', class: 'btn', onclick: () => close() }, 'Cancel'), go));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      try {
        close(await start([...chosen]));
      } catch (ex) { err.textContent = ex.message; }
    });
    filter.addEventListener('input', render);
    render();
    body.append(form);
    return filter;
  }, { wide: true });
}

// channel settings: save(changes) -> Promise<channel>; leave() -> Promise
export function settingsDialog(title, channel, canLeave, save, leave) {
  openDialog(`Notifications for ${title}`, (body, close) => {
    const muted = h('input', { type: 'checkbox', name: 'muted', checked: !!channel.muted });
    const always = h('input', { type: 'checkbox', name: 'notify_always', checked: !!channel.notify_always });
    const err = errorLine();
    const apply = async (changes, box) => {
      err.textContent = '';
      try {
        await save(changes);
      } catch (ex) {
        box.checked = !box.checked;
        err.textContent = ex.message;
      }
    };
    muted.addEventListener('change', () => apply({ muted: muted.checked }, muted));
    always.addEventListener('change', () => apply({ notify_always: always.checked }, always));
    body.append(h('div', { class: 'stack' },
      h('label', { class: 'check' }, muted, h('span', {}, h('strong', {}, 'Mute'),
        h('br'), h('span', { class: 'muted-text' }, 'No desktop notifications; its unread messages are not counted in the tab title.'))),
      h('label', { class: 'check' }, always, h('span', {}, h('strong', {}, 'Notify me about every message'),
        h('br'), h('span', { class: 'muted-text' }, 'Not only when you are mentioned.'))),
      err,
      h('div', { class: 'dlg-actions' },
        canLeave ? h('button', {
          type: 'button', class: 'btn danger',
          onclick: async () => {
            try {
              close(await leave());
            } catch (ex) { err.textContent = ex.message; }
          },
        }, 'Leave channel') : null,
        h('button', { type: 'button', class: 'btn primary', onclick: () => close() }, 'Done'))));
    return muted;
  });
}

export function confirmDialog(title, text, okLabel) {
  return new Promise((resolve) => {
    let answer = false;
    const dlg = openDialog(title, (body, close) => {
      const ok = h('button', { type: 'button', class: 'btn danger', onclick: () => { answer = true; close(); } }, okLabel);
      body.append(h('p', {}, text), h('div', { class: 'dlg-actions' },
        h('button', { type: 'button', class: 'btn', onclick: () => close() }, 'Cancel'), ok));
      return ok;
    });
    dlg.addEventListener('close', () => resolve(answer));
  });
}

// The quick switcher (Ctrl+K): conversations ranked by affinity, filtered
// as you type; arrows move, Enter opens. items: [{id, label, kind, unread}]
export function switcherDialog(items, open) {
  openDialog('Jump to a conversation', (body, close) => {
    const input = h('input', {
      type: 'search', placeholder: 'Channel or person', 'aria-label': 'Channel or person',
      role: 'combobox', 'aria-controls': 'switcher-list', 'aria-expanded': 'true', autocomplete: 'off',
    });
    const list = h('ul', { id: 'switcher-list', class: 'pick-list switcher', role: 'listbox' });
    let shown = [];
    let active = 0;
    const render = () => {
      const q = input.value.trim().toLowerCase().replace(/^#/, '');
      shown = items.filter((i) => i.label.toLowerCase().includes(q)).slice(0, 12);
      active = Math.min(active, Math.max(0, shown.length - 1));
      clear(list);
      if (!shown.length) list.append(h('li', { class: 'empty-row' }, 'Nothing matches.'));
      shown.forEach((item, i) => {
        list.append(h('li', {
          id: `switch-${item.id}`, role: 'option', class: 'pick-row switch-row', 'aria-selected': String(i === active),
          onclick: () => close(() => open(item.id)),
        }, h('span', { class: 'pick-name' }, item.kind === 'direct' ? item.label : `#${item.label}`),
        item.unread ? h('span', { class: 'badge' }, String(item.unread)) : null));
      });
      if (shown.length) input.setAttribute('aria-activedescendant', `switch-${shown[active].id}`);
    };
    input.addEventListener('input', () => { active = 0; render(); });
    input.addEventListener('keydown', (e) => {
      if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
        e.preventDefault();
        if (shown.length) active = (active + (e.key === 'ArrowDown' ? 1 : shown.length - 1)) % shown.length;
        render();
      } else if (e.key === 'Enter') {
        e.preventDefault();
        const item = shown[active];
        if (item) close(() => open(item.id));
      }
    });
    body.append(input, list);
    render();
    return input;
  }, { wide: true });
}
