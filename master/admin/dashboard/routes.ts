import { Hono, type Context, type MiddlewareHandler } from 'hono';
import { streamSSE } from 'hono/streaming';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { DepotsyncError } from '../../../src/errors.js';
import { statusFor } from '../../../src/serve/http-errors.js';
import type { ServeEnv } from '../../../src/serve/env.js';
import type { MasterContext } from '../../context.js';
import { recordAudit } from '../../db/audit.js';
import { byName } from '../../db/machines.js';
import { approveMachine, blockMachine } from '../../machines/actions.js';
import type { AddressOf } from '../../server/client-address.js';
import type { AdminService } from '../service.js';
import { listOperators } from '../../db/operators.js';
import { csrfOk, csrfToken, endSession, listSessions, resolveSession } from '../sessions.js';
import { DASHBOARD_CSS, DASHBOARD_JS } from './assets.js';
import {
  readForm,
  readSecretCookie,
  sameOrigin,
  securityHeaders,
  SESSION_COOKIE,
  type DashEnv,
} from './http.js';
import { LiveFeed } from './live.js';
import { loginRoutes } from './login.js';
import { dashboardPage } from './page.js';
import { liveSections, type Viewer } from './sections.js';

/**
 * `/dashboard`: server-rendered, live by server-sent events, every action a POST with
 * the session's CSRF token. Without a valid session every page redirects to the login form (the
 * event stream answers with a `logout` event instead, so the page follows).
 */
export function dashboardRoutes(
  ctx: MasterContext,
  admin: AdminService,
  addressOf: AddressOf,
): Hono<DashEnv> {
  const app = new Hono<DashEnv>();
  const feed = new LiveFeed(ctx.db, admin);
  const log = ctx.log.child({ component: 'master.dashboard' });
  const times = () => admin.sessionTimes;
  app.use('/dashboard', securityHeaders());
  app.use('/dashboard/*', securityHeaders());

  app.get('/dashboard/app.js', (c) =>
    c.body(DASHBOARD_JS, 200, {
      'content-type': 'text/javascript; charset=utf-8',
      'cache-control': 'no-cache',
    }),
  );
  app.get('/dashboard/style.css', (c) =>
    c.body(DASHBOARD_CSS, 200, { 'content-type': 'text/css; charset=utf-8', 'cache-control': 'no-cache' }),
  );
  app.route('/', loginRoutes(ctx, admin, addressOf));

  // The event stream: checks the session on every tick, without counting as activity.
  app.get('/dashboard/events', (c) =>
    streamSSE(
      c,
      async (stream) => {
        const secret = readSecretCookie(c, SESSION_COOKIE);
        let last = '';
        let aborted = false;
        stream.onAbort(() => {
          aborted = true;
        });
        while (!aborted) {
          const r = await resolveSession(ctx.db, secret, { ...times(), touch: false });
          if (!r.ok) {
            await stream.writeSSE({ event: 'logout', data: r.reason });
            return;
          }
          const viewer: Viewer = {
            name: r.session.operator,
            role: r.session.role,
            csrf: csrfToken(secret!),
            sessionId: r.session.id,
          };
          const isAdmin = viewer.role === 'admin';
          const data = {
            ...(await feed.get()),
            sessions: isAdmin ? await listSessions(ctx.db, times()) : undefined,
            operators: isAdmin ? await listOperators(ctx.db) : undefined,
          };
          const body = String(await liveSections(data, viewer));
          if (body !== last) {
            await stream.writeSSE({ event: 'update', data: body });
            last = body;
          }
          await stream.sleep(admin.settings.liveIntervalMs);
        }
      },
      async (err) => {
        // The stream ends (the page reconnects by itself); the reason goes to the log, not to the page.
        log.warn({ err: err.message }, 'dashboard event stream ended by an error');
      },
    ),
  );

  // Everything below needs a session.
  app.use('/dashboard', requireSession(ctx, admin));
  app.use('/dashboard/*', requireSession(ctx, admin));

  const render = async (
    c: Context<DashEnv>,
    flash?: { text: string; bad: boolean },
    status: ContentfulStatusCode = 200,
  ) => {
    const s = c.get('session');
    const viewer: Viewer = { name: s.operator, role: s.role, csrf: csrfToken(s.secret), sessionId: s.id };
    const data = {
      ...(await feed.get()),
      sessions: s.role === 'admin' ? await listSessions(ctx.db, times()) : undefined,
      operators: s.role === 'admin' ? await listOperators(ctx.db) : undefined,
    };
    return c.html(dashboardPage(ctx.config.name, data, viewer, flash), status);
  };
  app.get('/dashboard', async (c) => {
    // A flash only from a fixed set of verbs about a machine that exists: a
    // crafted link cannot put text here.
    const done = c.req.query('done');
    const machine = c.req.query('machine');
    if ((done === 'approve' || done === 'block') && machine && (await byName(ctx.db, machine))) {
      return render(c, { text: `${done === 'approve' ? 'approved' : 'blocked'} ${machine}`, bad: false });
    }
    return render(c);
  });

  // Actions: CSRF first, then role, then the same operation the CLI and the API run.
  const action = (verb: 'approve' | 'block') => async (c: Context<DashEnv>) => {
    const s = c.get('session');
    const name = c.req.param('name') ?? '';
    if (s.role !== 'admin')
      return render(
        c,
        { text: `operator ${s.operator} has role ${s.role}; ${verb} needs role admin`, bad: true },
        403,
      );
    const address = addressOf(c as unknown as Context<ServeEnv>);
    try {
      if (!(await byName(ctx.db, name)))
        throw new DepotsyncError('not-found', `no machine named ${JSON.stringify(name)}`);
      const m =
        verb === 'approve'
          ? await approveMachine(ctx, name, { actor: s.operator, address })
          : await blockMachine(ctx, name, { actor: s.operator, address });
      return c.redirect(`/dashboard?done=${verb}&machine=${encodeURIComponent(m.name)}`, 303);
    } catch (e) {
      if (!(e instanceof DepotsyncError)) throw e;
      return render(c, { text: `${verb} ${name}: ${e.message}`, bad: true }, statusFor(e.code));
    }
  };
  app.post('/dashboard/machines/:name/approve', csrf(), action('approve'));
  app.post('/dashboard/machines/:name/block', csrf(), action('block'));
  app.post('/dashboard/sessions/:id/end', csrf(), async (c) => {
    const s = c.get('session');
    if (s.role !== 'admin')
      return render(
        c,
        { text: `operator ${s.operator} has role ${s.role}; ending sessions needs role admin`, bad: true },
        403,
      );
    const id = Number(c.req.param('id'));
    if (Number.isSafeInteger(id) && (await endSession(ctx.db, id, s.operator, 'ended by admin'))) {
      await recordAudit(ctx.db, {
        actor: s.operator,
        action: 'session.end',
        target: `session:${id}`,
        address: addressOf(c as unknown as Context<ServeEnv>),
      });
    }
    return c.redirect(id === s.id ? '/dashboard/login?ended=1' : '/dashboard', 303);
  });
  return app;
}

/** The session for this request, or a redirect to the login form (the reason kept for the message). */
function requireSession(ctx: MasterContext, admin: AdminService): MiddlewareHandler<DashEnv> {
  return async (c, next) => {
    const secret = readSecretCookie(c, SESSION_COOKIE);
    const r = await resolveSession(ctx.db, secret, { ...admin.sessionTimes, touch: true });
    if (!r.ok)
      return c.redirect(
        r.reason === 'none' || r.reason === 'unknown' ? '/dashboard/login' : '/dashboard/login?ended=1',
        303,
      );
    c.set('session', {
      id: r.session.id,
      secret: secret!,
      operator: r.session.operator,
      role: r.session.role,
    });
    await next();
    return;
  };
}

/**
 * A POST must carry the session's CSRF token in the form (threat: another site making the operator's
 * browser approve a machine). Also refused: a foreign Origin header, and a body that is not a small form.
 */
function csrf(): MiddlewareHandler<DashEnv> {
  return async (c, next) => {
    const form = await readForm(c, 'dashboard action').catch(() => undefined);
    if (!sameOrigin(c) || !form || !csrfOk(c.get('session').secret, form.get('_csrf'))) {
      return c.html(
        "<!doctype html><title>refused</title><p>Refused: the form's security token is missing or wrong. Reload the dashboard and try again.</p>",
        403,
      );
    }
    await next();
    return;
  };
}
