// The sidebar: "Channels" (public, private) and "Direct messages" (dm,
// group), each ranked by affinity, with unread badges; muted channels dimmed.

import { h, clear } from './dom.js';
import { icon } from './icons.js';
import { badgeText } from './format.js';
import { avatar } from './view.js';

export class Sidebar {
  // els: {channels, dms}; hooks: {open(ch)}
  constructor(els, store, hooks) {
    this.els = els;
    this.store = store;
    this.hooks = hooks;
    this.current = null;
    this.scheduled = false;
    store.addEventListener('channels', () => this.schedule());
  }

  // A sync page changes counts many times: paint once
  schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      this.render();
    });
  }

  setCurrent(ch) {
    this.current = ch;
    this.render();
  }

  render() {
    const s = this.store;
    const channels = [];
    const dms = [];
    for (const id of s.order) {
      const c = s.channel(id);
      if (c) (s.isDirect(c) ? dms : channels).push(c);
    }
    this.fill(this.els.channels, channels, 'No channels yet');
    this.fill(this.els.dms, dms, 'No conversations yet');
  }

  fill(ul, list, emptyText) {
    clear(ul);
    if (!list.length) ul.append(h('li', { class: 'empty-row' }, emptyText));
    for (const c of list) ul.append(h('li', {}, this.item(c)));
  }

  item(c) {
    const s = this.store;
    const unread = c.unread || 0;
    const title = s.channelTitle(c);
    let lead;
    if (c.type === 'public') lead = icon('hash', 16);
    else if (c.type === 'private') lead = icon('lock', 16);
    else {
      const others = (c.member_ids || []).filter((id) => id !== s.me.id);
      lead = c.type === 'group'
        ? h('span', { class: 'avatar group', 'aria-hidden': 'true' }, String(others.length + 1))
        : avatar(others[0] ?? s.me.id, title, 20);
    }
    const label = `${s.isDirect(c) ? '' : '#'}${title}${unread ? `, ${unread} unread` : ''}${c.muted ? ', muted' : ''}`;
    return h('button', {
      type: 'button',
      class: `chan-item${unread ? ' unread' : ''}${c.muted ? ' muted' : ''}${c.id === this.current ? ' current' : ''}`,
      dataset: { ch: c.id, type: c.type },
      'aria-current': c.id === this.current ? 'page' : undefined,
      'aria-label': label,
      onclick: () => this.hooks.open(c.id),
    },
    h('span', { class: 'chan-icon' }, lead),
    h('span', { class: 'chan-name' }, title),
    c.muted ? h('span', { class: 'chan-muted', title: 'Muted' }, icon('bellOff', 14)) : null,
    unread ? h('span', { class: 'badge', 'aria-hidden': 'true' }, badgeText(unread)) : null);
  }
}
