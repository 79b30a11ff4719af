// Desktop notifications (for events the server marked notify: true, while
// the tab is hidden) and the unread total in the document title.

import { userName, badgeText } from './format.js';

export class Notifier {
  // hooks: {open(ch)}
  constructor(store, hooks) {
    this.store = store;
    this.hooks = hooks;
    this.place = '';
    store.addEventListener('channels', () => this.updateTitle());
  }

  supported() {
    return 'Notification' in window;
  }

  // Permission can only be asked on a user gesture: the caller is a click
  needsPermission() {
    return this.supported() && Notification.permission === 'default';
  }

  async askPermission() {
    if (!this.supported()) return 'denied';
    return Notification.requestPermission();
  }

  notify(msg, channel) {
    const s = this.store;
    if (document.visibilityState !== 'hidden') return;
    if (!this.supported() || Notification.permission !== 'granted') return;
    if (channel?.muted) return; // the server does not ask, but a stale flag must not ring either
    const author = userName(s.user(msg.author), msg.author);
    const title = !channel || s.isDirect(channel) ? author : `${author} in #${channel.name}`;
    try {
      const n = new Notification(title, { body: msg.body.slice(0, 200), tag: `chorus-${msg.ch}` });
      n.addEventListener('click', () => {
        window.focus();
        this.hooks.open(msg.ch);
        n.close();
      });
    } catch { /* some platforms only allow notifications from a service worker */ }
  }

  setPlace(text) {
    this.place = text;
    this.updateTitle();
  }

  updateTitle() {
    const n = this.store.unreadTotal();
    const parts = [];
    if (this.place) parts.push(this.place);
    parts.push('Chorus');
    document.title = `${n ? `(${badgeText(n)}) ` : ''}${parts.join(' – ')}`;
  }
}
