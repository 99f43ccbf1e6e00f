"""A real SMTP server for notifyd's tests (aiosmtpd, Debian python3-aiosmtpd).

usage: smtp_sink.py PORT OUTDIR [USER:PASSWORD]

Saves every accepted message as OUTDIR/<n>.eml (written to a temp name, then
renamed, so a reader never sees half a file) and the envelope recipients plus
the authenticated login in OUTDIR/<n>.env. With USER:PASSWORD, AUTH is
required. With SINK_TLS=starttls or SINK_TLS=tls plus SINK_CERT and SINK_KEY
(PEM files), the server demands STARTTLS, or speaks TLS from the first byte.
"""
import os
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

port = int(sys.argv[1])
out = sys.argv[2]
creds = sys.argv[3].encode().split(b":", 1) if len(sys.argv) > 3 else None


class Sink:
    def __init__(self):
        self.n = 0

    async def handle_DATA(self, server, session, envelope):
        self.n += 1
        base = os.path.join(out, "%06d-%d" % (self.n, time.time_ns()))
        with open(base + ".tmp", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        login = session.auth_data.decode() if isinstance(session.auth_data, bytes) else ""
        with open(base + ".env", "w") as f:
            f.write("rcpt=%s\nlogin=%s\n" % (",".join(envelope.rcpt_tos), login))
        os.rename(base + ".tmp", base + ".eml")
        return "250 2.0.0 Ok: queued as %d" % self.n


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = creds is not None and auth_data.login == creds[0] and auth_data.password == creds[1]
    if ok:
        return AuthResult(success=True, auth_data=auth_data.login)
    # handled=False: let aiosmtpd answer 535 (it defaults to "already answered").
    return AuthResult(success=False, handled=False)


kwargs = {}
if creds:
    kwargs = dict(auth_required=True, auth_require_tls=False, authenticator=authenticator)
mode = os.environ.get("SINK_TLS", "")
if mode:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(os.environ["SINK_CERT"], os.environ["SINK_KEY"])
    if mode == "tls":
        kwargs["ssl_context"] = ctx
    else:
        kwargs.update(tls_context=ctx, require_starttls=True)
controller = Controller(Sink(), hostname="127.0.0.1", port=port, **kwargs)
controller.start()
print("ready", flush=True)
try:
    while True:
        time.sleep(3600)
except KeyboardInterrupt:
    pass
finally:
    controller.stop()
