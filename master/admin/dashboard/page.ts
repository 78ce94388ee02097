import { html } from 'hono/html';
import { liveSections, type LiveData, type Viewer } from './sections.js';

/** Whole pages: the dashboard (header + live sections) and the login form. */
type Html = ReturnType<typeof html>;

function shell(title: string, body: Html): Html {
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin"><title>${title}</title><link rel="stylesheet" href="/dashboard/style.css"></head>
<body>${body}</body></html>`;
}

export function dashboardPage(
  masterName: string,
  d: LiveData,
  v: Viewer,
  flash?: { text: string; bad: boolean },
): Html {
  return shell(
    `depotsync · ${masterName}`,
    html`<header><h1>depotsync · ${masterName}</h1><div><span id="conn">connecting…</span> · <span class="who">${v.name} (${v.role})</span>
      <form method="post" action="/dashboard/logout"><input type="hidden" name="_csrf" value="${v.csrf}"><button type="submit">log out</button></form></div></header>
    <main>${flash ? html`<p class="flash ${flash.bad ? 'bad' : ''}" role="status">${flash.text}</p>` : ''}<div id="live">${liveSections(d, v)}</div></main>
    <script src="/dashboard/app.js"></script>`,
  );
}

export function loginPage(
  masterName: string,
  opts: { csrf: string; message?: string; name?: string; directory?: boolean },
): Html {
  return shell(
    `depotsync · log in`,
    html`<form class="login" method="post" action="/dashboard/login" autocomplete="off">
      <h1>depotsync · ${masterName}</h1>
      ${opts.message ? html`<p class="notice" role="alert">${opts.message}</p>` : ''}
      <input type="hidden" name="_csrf" value="${opts.csrf}">
      <label for="operator">Operator</label><input id="operator" name="operator" required maxlength="64" value="${opts.name ?? ''}" autocapitalize="none">
      <label for="token">${opts.directory ? 'Token or directory password' : 'Token'}</label><input id="token" name="token" type="password" required maxlength="200">
      <label for="code">Authenticator code <small>(if enabled)</small></label><input id="code" name="code" inputmode="numeric" pattern="[0-9]{6}" maxlength="6">
      <button type="submit">Log in</button>
    </form>`,
  );
}
