"""Encryption of the few secrets that must live in the database (webhook signing secrets)."""

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app


def _fernet():
    # The key is derived from SECRET_KEY, so a new SECRET_KEY makes stored
    # secrets unreadable: the endpoints then need their secrets set again.
    digest = hashlib.sha256(b"backwatch webhook secrets\0" + current_app.config["SECRET_KEY"].encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt_secret(plaintext):
    return _fernet().encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt_secret(token):
    """Return the plaintext, or raise ValueError when SECRET_KEY changed since it was stored."""
    try:
        return _fernet().decrypt(token.encode("ascii")).decode("utf-8")
    except InvalidToken:
        raise ValueError("stored secret cannot be decrypted with the current SECRET_KEY; set it again") from None
