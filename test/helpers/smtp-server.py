"""A real SMTP server for the alert e-mail tests (aiosmtpd, Debian python3-aiosmtpd), on 127.0.0.1.

  smtp-server.py --out DIR [--cert CERT --key KEY] [--user U --password P]

With --cert/--key it offers STARTTLS and requires it before MAIL and AUTH; without, it offers no TLS and
accepts AUTH in cleartext (so a client that would send the password in clear could be seen doing it).
Every AUTH attempt goes to DIR/auth.jsonl and every message to DIR/messages.jsonl, each with whether the
session was encrypted. Prints "ready PORT" once it accepts connections; stops on SIGTERM.
"""
import argparse, json, signal, socket, ssl, sys, threading
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

p = argparse.ArgumentParser()
p.add_argument('--out', required=True)
p.add_argument('--cert')
p.add_argument('--key')
p.add_argument('--user', default='alerts')
p.add_argument('--password', default='secret')
a = p.parse_args()

def record(name, obj):
    with open(f'{a.out}/{name}', 'a') as f:
        f.write(json.dumps(obj) + '\n')

class Handler:
    async def handle_DATA(self, server, session, envelope):
        record('messages.jsonl', {
            'from': envelope.mail_from, 'to': envelope.rcpt_tos, 'tls': session.ssl is not None,
            'user': session.authenticated and a.user, 'data': envelope.content.decode('utf8', 'replace'),
        })
        return '250 OK'

def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == a.user \
        and auth_data.password.decode() == a.password
    record('auth.jsonl', {'mechanism': mechanism, 'tls': session.ssl is not None, 'ok': ok,
                          'login': auth_data.login.decode() if isinstance(auth_data, LoginPassword) else None})
    return AuthResult(success=ok, handled=False)

with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]

params = dict(authenticator=authenticator, auth_required=True)
if a.cert:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(a.cert, a.key)
    params.update(tls_context=ctx, require_starttls=True, auth_require_tls=True)
else:
    params.update(auth_require_tls=False)

controller = Controller(Handler(), hostname='127.0.0.1', port=port, **params)
controller.start()
print(f'ready {port}', flush=True)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
signal.signal(signal.SIGINT, lambda *_: stop.set())
stop.wait()
controller.stop()
