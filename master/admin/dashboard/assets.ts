/**
 * The dashboard's only script and stylesheet, served as files from `/dashboard/` so the Content Security
 * Policy can forbid inline script and style entirely (a second wall behind HTML escaping: even a value
 * that escaped escaping could not run). No build step: plain ES2020 and CSS.
 *
 * The script: live updates by server-sent events (`/dashboard/events`) replace the live sections with
 * server-rendered (escaped) HTML; `<time>` elements are shown as "3 min ago" (textContent only); a
 * `logout` event (session ended, idle or expired) goes to the login page.
 */
export const DASHBOARD_JS = `'use strict';
(function () {
  var live = document.getElementById('live');
  var state = document.getElementById('conn');
  function rel(iso) {
    var s = Math.round((Date.now() - Date.parse(iso)) / 1000);
    if (!isFinite(s)) return iso;
    if (s < 5) return 'just now';
    if (s < 60) return s + ' s ago';
    var m = Math.floor(s / 60);
    if (m < 60) return m + ' min ago';
    var h = Math.floor(m / 60);
    if (h < 48) return h + ' h ' + (m % 60) + ' min ago';
    return Math.floor(h / 24) + ' days ago';
  }
  function times() {
    var ts = document.querySelectorAll('time[datetime]');
    for (var i = 0; i < ts.length; i++) ts[i].textContent = rel(ts[i].getAttribute('datetime'));
  }
  times();
  setInterval(times, 5000);
  if (!live || !window.EventSource) return;
  var es = new EventSource('/dashboard/events');
  es.addEventListener('update', function (e) {
    live.innerHTML = e.data;
    times();
    document.body.setAttribute('data-updated', String(Date.now()));
  });
  es.addEventListener('logout', function () {
    es.close();
    location.assign('/dashboard/login?ended=1');
  });
  es.onopen = function () { if (state) { state.textContent = 'live'; state.className = 'live'; } };
  es.onerror = function () { if (state) { state.textContent = 'reconnecting…'; state.className = 'off'; } };
})();
`;

export const DASHBOARD_CSS = `
:root { --ok: #1b7f3b; --warn: #a15c00; --bad: #b3261e; --fg: #1d1d1f; --muted: #666; --bg: #f6f7f9; --card: #fff; --line: #e2e4e8; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: center; justify-content: space-between; padding: .6rem 1rem; background: #20232a; color: #fff; }
header h1 { font-size: 1.05rem; margin: 0; }
header form { display: inline; }
header button { background: transparent; color: #fff; border: 1px solid #888; }
main { padding: .5rem 1rem 2rem; max-width: 1200px; margin: 0 auto; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: .6rem .8rem; margin: .8rem 0; }
h2 { font-size: 1rem; margin: .2rem 0 .6rem; }
h2 small, small { color: var(--muted); font-weight: normal; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(110px, 1fr)); gap: .5rem; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: .5rem; text-align: center; }
.card b { display: block; font-size: 1.6rem; }
.card.ok b { color: var(--ok); } .card.warn b { color: var(--warn); } .card.bad b { color: var(--bad); }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; }
table { border-collapse: collapse; width: 100%; min-width: 480px; }
th, td { text-align: left; padding: .3rem .45rem; border-bottom: 1px solid var(--line); vertical-align: top; overflow-wrap: anywhere; }
th { font-size: .8rem; color: var(--muted); font-weight: 600; }
.badge { border-radius: 10px; padding: 0 .5rem; font-size: .8rem; border: 1px solid currentColor; white-space: nowrap; }
.badge.current { color: var(--ok); } .badge.lagging { color: var(--warn); }
.badge.failing, .badge.silent { color: var(--bad); } .badge.blocked, .badge.never-reported { color: var(--muted); }
.err, tr.err td { color: var(--bad); } tr.warn td { color: var(--warn); }
tr.detail td { font-size: .85rem; border-bottom-style: dashed; }
ul.alerts { list-style: none; margin: 0; padding: 0; }
ul.alerts li { padding: .35rem .5rem; border-left: 4px solid var(--warn); margin: .3rem 0; background: #fff8ec; overflow-wrap: anywhere; }
ul.alerts li.error { border-color: var(--bad); background: #fdeeee; }
.quiet { color: var(--muted); margin: .2rem 0; }
td.actions form { display: inline; }
button { font: inherit; padding: .35rem .8rem; border-radius: 6px; border: 1px solid #999; background: #fff; cursor: pointer; min-height: 2.2rem; }
button.approve { border-color: var(--ok); color: var(--ok); } button.block { border-color: var(--bad); color: var(--bad); }
#conn { font-size: .8rem; } #conn.live { color: #7ee787; } #conn.off { color: #ffb86c; }
.login { max-width: 380px; margin: 10vh auto; background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 1rem 1.2rem; }
.login label { display: block; margin: .6rem 0 .2rem; font-weight: 600; }
.login input { width: 100%; font: inherit; padding: .45rem; border: 1px solid #aaa; border-radius: 6px; }
.login button { margin-top: 1rem; width: 100%; }
.notice { padding: .5rem; border-radius: 6px; background: #fdeeee; color: var(--bad); overflow-wrap: anywhere; }
.flash { padding: .5rem .8rem; border-radius: 6px; background: #eef6ee; margin: .6rem 0; overflow-wrap: anywhere; }
.flash.bad { background: #fdeeee; color: var(--bad); }
@media (max-width: 600px) { main { padding: .3rem .4rem 2rem; } section { padding: .5rem; } table { min-width: 420px; } header h1 { font-size: .95rem; } }
`;
