"""The reference app for bench/hook_intake.py: the hook's route, with no work.

It reads the body and returns 202 with a JSON body shaped like the real
hook's, so the ratio hook/bare isolates what Backwatch adds per request.
Run it with `gunicorn bench.bare_app:app` from the repository root.
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.post("/hooks/<token>")
def completion_hook(token):
    request.get_data()
    return jsonify({"run_id": 0, "duplicate": False}), 202
