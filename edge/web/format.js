// Formatting of names, times and counts.

export function userName(user, fallbackId) {
  if (!user) return `user ${fallbackId ?? '?'}`;
  return user.display_name || user.handle;
}

export function initials(name) {
  const parts = String(name).trim().split(/\s+/).filter(Boolean);
  const first = [...(parts[0] || '?')][0];
  const second = parts.length > 1 ? [...parts[parts.length - 1]][0] : '';
  return (first + second).toUpperCase();
}

// A stable hue per user id for avatars
export function hue(id) {
  let x = Number(id) || 0;
  x = ((x * 2654435761) >>> 0) % 360;
  return x;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'long', month: 'long', day: 'numeric' });
const dayYearFmt = new Intl.DateTimeFormat(undefined, { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });

export const formatTime = (ts) => timeFmt.format(new Date(ts));
export const formatFull = (ts) => fullFmt.format(new Date(ts));

export function dayKey(ts) {
  const d = new Date(ts);
  return `${d.getFullYear()}-${d.getMonth() + 1}-${d.getDate()}`;
}

export function formatDay(ts, now = Date.now()) {
  const key = dayKey(ts);
  if (key === dayKey(now)) return 'Today';
  if (key === dayKey(now - 86400e3)) return 'Yesterday';
  const sameYear = new Date(ts).getFullYear() === new Date(now).getFullYear();
  return (sameYear ? dayFmt : dayYearFmt).format(new Date(ts));
}

export function badgeText(n) {
  return n >= 1000 ? '999+' : String(n);
}
