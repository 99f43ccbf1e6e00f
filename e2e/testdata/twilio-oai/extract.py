#!/usr/bin/env python3
"""Extracts the response schemas the stand-in serves from Twilio's OpenAPI
spec (twilio/twilio-oai spec/json/twilio_api_v2010.json, MIT, see LICENSE)
into schemas.json beside this file, with every $ref they use.

Usage: extract.py path/to/twilio_api_v2010.json
"""
import json
import sys

ROOTS = [
    "api.v2010.account",
    "api.v2010.account.call",
    "api.v2010.account.recording",
    "api.v2010.account.transcription",
    "api.v2010.account.incoming_phone_number",
    "ListIncomingPhoneNumberResponse",
    "ListCallResponse",
]

spec = json.load(open(sys.argv[1]))
schemas = spec["components"]["schemas"]
out = {}


def walk(node):
    if isinstance(node, dict):
        ref = node.get("$ref")
        if ref and ref.startswith("#/components/schemas/"):
            add(ref.rsplit("/", 1)[1])
        for v in node.values():
            walk(v)
    elif isinstance(node, list):
        for v in node:
            walk(v)


def add(name):
    if name in out:
        return
    out[name] = schemas[name]
    walk(schemas[name])


for r in ROOTS:
    if r in schemas:
        add(r)
    else:
        # List responses are inline in the path's 200 response.
        pass

# List responses: take them from the operations.
paths = spec["paths"]
lists = {
    "ListIncomingPhoneNumberResponse": "/2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers.json",
    "ListCallResponse": "/2010-04-01/Accounts/{AccountSid}/Calls.json",
}
for name, path in lists.items():
    s = paths[path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    out[name] = s
    walk(s)

json.dump(
    {"source": "twilio/twilio-oai spec/json/twilio_api_v2010.json (MIT)", "schemas": out},
    open(sys.argv[0].rsplit("/", 1)[0] + "/schemas.json", "w"),
    indent=1,
    sort_keys=True,
)
print(f"{len(out)} schemas")
