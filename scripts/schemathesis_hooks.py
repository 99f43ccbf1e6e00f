"""Schemathesis hooks for the external-API pass of scripts/schemathesis.sh.

The external API (/api/external/*) takes `Authorization: Bearer <api key>`.
The key comes from the API itself: POST /api/api-keys with the session of
the user who owns it (GOSIP_KEY_OWNER_COOKIE). webd allows 120 requests a
minute per key, so a fresh key replaces the current one every 100 requests
(and the old one is revoked, keeping under the 20 active keys a user may
have); otherwise most of the run would only ever see 429. Schemathesis asks
for a new key (get) at the start and whenever an answer is 401.
"""

import os
import threading

import requests
import schemathesis

BASE = os.environ["GOSIP_URL"]
OWNER = {
    "Cookie": os.environ["GOSIP_KEY_OWNER_COOKIE"],
    "X-Requested-With": "schemathesis",
}
PER_KEY = 100


@schemathesis.auth()
class ApiKeyMadeThroughTheApi:
    def __init__(self):
        self.lock = threading.Lock()
        self.key = None
        self.key_id = None
        self.used = 0
        self.made = 0

    def _new_key(self):
        old = self.key_id
        r = requests.post(
            f"{BASE}/api/api-keys",
            json={"name": f"schemathesis {self.made}"},
            headers=OWNER,
            timeout=10,
        )
        r.raise_for_status()
        body = r.json()
        self.key, self.key_id = body["key"], body["api_key"]["id"]
        self.used = 0
        self.made += 1
        if old is not None:
            requests.delete(f"{BASE}/api/api-keys/{old}", headers=OWNER, timeout=10)

    def get(self, case, ctx):
        with self.lock:
            self._new_key()
            return self.key

    def set(self, case, data, ctx):
        with self.lock:
            self.used += 1
            if self.key is None or self.used > PER_KEY:
                self._new_key()
            key = self.key
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {key}"
