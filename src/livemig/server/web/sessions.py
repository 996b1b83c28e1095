"""Console sessions: the API token is typed once into the login form; after that a random
session id in an HttpOnly, SameSite=Strict cookie, and a per-session CSRF token that every form
and every htmx request carries. Sessions live in the server's memory (a restarted server asks
for the token again) and end after a day without use."""

from __future__ import annotations

import hmac
import secrets
import threading
from dataclasses import dataclass

COOKIE = "livemig_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
#: Seconds a session may go unused.
IDLE_LIMIT = 24 * 3600.0
#: Sessions kept at most (the oldest go first).
MAX_SESSIONS = 1000


@dataclass
class Session:
    csrf: str
    last_used: float


class Sessions:
    def __init__(self, token: str) -> None:
        self._token = token
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def token_ok(self, given: str) -> bool:
        return hmac.compare_digest(given.strip().encode(), self._token.encode())

    def open(self, now: float) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        session = Session(secrets.token_urlsafe(32), now)
        with self._lock:
            self._sessions[sid] = session
            if len(self._sessions) > MAX_SESSIONS:
                oldest = min(self._sessions, key=lambda k: self._sessions[k].last_used)
                del self._sessions[oldest]
        return sid, session

    def get(self, sid: str | None, now: float) -> Session | None:
        if not sid:
            return None
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                return None
            if now - session.last_used > IDLE_LIMIT:
                del self._sessions[sid]
                return None
            session.last_used = now
            return session

    def close(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)

    @staticmethod
    def csrf_ok(session: Session, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), session.csrf.encode())
