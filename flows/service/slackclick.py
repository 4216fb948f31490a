"""Approve and Reject clicks from Slack, verified: one handler for the HTTP endpoint and Socket Mode.

Slack's signature (``X-Slack-Signature`` over ``v0:<timestamp>:<raw body>``, 5-minute window)
proves only that the click came through Slack. Authorisation is breakglass's: the app and team
must match the inventory, the Slack user must be a roster person among the gate's approvers,
and the digest on the button must be the gate's current one. A click that passes becomes a vote
signed by this installation's attestor key (``flows.attestor``) and goes the way every vote goes
(through Prefect to the runner, which judges it again). Every refusal is audit-logged with the
reason and the ids involved, never the body.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from slack_sdk.signature import SignatureVerifier

from breakglass.flows.effects.notice import APPROVE, REJECT
from breakglass.flows.errors import BreakglassError
from breakglass.flows.gates import attestor, voting
from breakglass.flows.gates import rules as approvals
from breakglass.flows.run import audit
from breakglass.flows.run.home import check_id
from breakglass.flows.service.refusals import RefusalLog
from breakglass.integrations import jsonsafe

if TYPE_CHECKING:
    from breakglass.flows.language.inventory import Inventory


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


class _Clock:
    def __init__(self, now: Callable[[], float]) -> None:
        self.now = now


class ClickHandler:
    def __init__(self, home: Path, inventory: Inventory, api: Callable[[], Any], wake: Callable[[Path, str, str], None],
                 now: Callable[[], float] = time.time) -> None:
        app = inventory.slack_app
        if app is None:
            raise BreakglassError(f"inventory '{inventory.name}' has no slack_app: Slack approvals are not configured")
        secret = os.environ.get(app.signing_secret_env, "")
        if not secret and not (app.app_token_env and os.environ.get(app.app_token_env)):
            raise BreakglassError(f"slack_app: environment variable {app.signing_secret_env} (the signing secret) is not set")
        self.home, self.inventory, self.app, self.api, self.wake = home, inventory, app, api, wake
        # without a signing secret (Socket Mode only) every HTTP click is refused
        self.verifier = SignatureVerifier(secret, clock=_Clock(now)) if secret else None  # type: ignore[arg-type]  # slack-sdk types clock as its Clock class; ours has its now()
        self.account = attestor.key(home)
        self._replies: OrderedDict[str, Answer] = OrderedDict()
        self._sent: dict[tuple[str, str, str, str], str] = {}  # votes handed on, by decision
        self._lock = threading.Lock()
        self.unsigned = RefusalLog(home / "serve", "slack.refused")

    # -- HTTP ------------------------------------------------------------------------------------
    def http(self, body: bytes, headers: dict[str, str]) -> Answer:
        timestamp = headers.get("x-slack-request-timestamp", "")
        signature = headers.get("x-slack-signature", "")
        if not self._valid(body, timestamp, signature):
            return self.refuse_unsigned(401, "bad signature or a timestamp outside 5 minutes", body)
        replay = hashlib.sha256(f"{timestamp}:{signature}".encode()).hexdigest()
        with self._lock:
            if replay in self._replies:  # Slack's retries and replayed bodies: the same answer, nothing new
                return self._replies[replay]
        try:
            payload = jsonsafe.loads(parse_qs(body.decode("utf-8"), strict_parsing=True)["payload"][0], what="payload")
            if not isinstance(payload, dict):
                raise ValueError("not an object")
        except (UnicodeDecodeError, ValueError, KeyError, IndexError):
            answer = self._refuse(400, "malformed payload", {"via": "http"})
        else:
            answer = self.click(payload, via="http")
        with self._lock:
            self._replies[replay] = answer
            while len(self._replies) > 10_000:
                self._replies.popitem(last=False)
        return answer

    def refuse_unsigned(self, status: int, reason: str, body: bytes | None = None) -> Answer:
        """Refused before a signature checked out: counted, one audit line per minute (``flows.refusals``)."""
        self.unsigned.refused("slack", status, reason, hashlib.sha256(body).hexdigest() if body is not None else "unread")
        return Answer(status, {"error": reason})

    def _valid(self, body: bytes, timestamp: str, signature: str) -> bool:
        """slack-sdk's check, made total: it raises on a non-numeric timestamp or a body that is not UTF-8."""
        if self.verifier is None or not timestamp.isascii() or not timestamp.isdigit() or not signature.startswith("v0="):
            return False
        try:
            return self.verifier.is_valid(body, timestamp, signature)
        except (ValueError, UnicodeDecodeError):
            return False

    # -- both paths ------------------------------------------------------------------------------
    def click(self, payload: dict[str, Any], via: str) -> Answer:
        ids: dict[str, str] = {"via": via}
        try:
            app_id, team = payload.get("api_app_id"), (payload.get("team") or {}).get("id")
            user = (payload.get("user") or {}).get("id")
            ids.update(app_id=str(app_id), team=str(team), user=str(user))
            if payload.get("type") != "block_actions":
                return self._refuse(400, "not a block_actions payload", ids)
            if app_id != self.app.app_id or team != self.app.team_id:
                return self._refuse(403, "the click comes from another Slack app or workspace", ids)
            action = (payload.get("actions") or [None])[0]
            if not isinstance(action, dict) or action.get("action_id") not in (APPROVE, REJECT):
                return self._refuse(400, "no Approve or Reject action in the payload", ids)
            value = jsonsafe.loads(action.get("value") or "", max_depth=1, max_bytes=2000, what="the button value")
            if not isinstance(value, dict):
                raise ValueError("the button value is not an object")
            incident, step, digest = str(value["incident"]), str(value["gate"]), str(value["digest"])
        except (ValueError, KeyError, TypeError, AttributeError):
            return self._refuse(400, "malformed payload", ids)
        ids.update(incident=incident, gate=step)
        name = next((n for n, p in self.inventory.roster.people.items() if p.slack and p.slack == user), None)
        if name is None:
            return self._refuse(403, f"Slack user {user} is not on the roster", ids)
        try:
            gate = voting.locate(self.home, incident, step)
        except BreakglassError as exc:
            return self._refuse(403, str(exc), ids)
        if digest != gate.state.digest:
            return self._refuse(403, "the button is for an earlier version of the action; the message shows the current one",
                                ids, incident_dir=gate.incident_dir)
        decision = "reject" if action["action_id"] == REJECT else "approve"
        earlier = [v["decision"] for v in gate.state.votes if v.get("counted") and v["name"] == name]
        with self._lock:
            in_flight = self._sent.get((incident, step, digest, name))
        given = earlier[0] if earlier else in_flight
        if given == decision:
            return Answer(200, {"text": f"Your {decision} is already {'counted' if earlier else 'on its way'}."})
        if given is not None:  # a vote is final: changing it would let one person count twice or undo a quorum
            return self._refuse(409, f"{name} already voted {given} at this gate; a vote cannot be changed. If the action "
                                     "must not happen, say so in the war room and have the run cancelled",
                                {**ids, "decision": decision}, incident_dir=gate.incident_dir)
        vote = voting.make_vote(gate, step, name, reject=decision == "reject", reason=f"Slack ({via})", channel="slack",
                                account=self.account, via=f"slack:{user}", digest=digest)
        refused = voting.precheck(gate, vote)
        if refused is not None:
            return self._refuse(403, refused, ids, incident_dir=gate.incident_dir)
        with self._lock:
            self._sent[(incident, step, digest, name)] = decision
        self.wake(gate.handle.dir, approvals.input_key(vote), vote.model_dump_json())  # a run in this process acts now
        voting.submit(self.api(), gate, vote)  # and every runner, here or elsewhere, finds it in Prefect
        return Answer(200, {"text": f"{decision.capitalize()} recorded for {name}."})

    def _refuse(self, status: int, reason: str, ids: dict[str, str], incident_dir: Path | None = None) -> Answer:
        where = incident_dir
        if where is None and ids.get("incident"):
            try:
                candidate = self.home / "incidents" / check_id(ids["incident"])
            except BreakglassError:  # not even a valid id: never a path
                candidate = None
            where = candidate if candidate is not None and (candidate / "incident.json").exists() else None
        audit.append(where or self.home / "serve", "slack.refused", status=status, reason=reason, **ids)
        return Answer(status, {"error": reason})


def socket_mode(handler: ClickHandler, app_token: str, base_url: str | None) -> Any:
    """Socket Mode: the same clicks over a WebSocket that `serve` opens to Slack (no inbound endpoint).

    Each interactive envelope is acknowledged first (Slack wants it within 3 s), then handled like
    an HTTP click. Slack's own connection is authenticated by the app-level token, so there is no
    request signature to check; app, team, roster and digest are checked the same way.
    """
    from slack_sdk import WebClient
    from slack_sdk.socket_mode import SocketModeClient
    from slack_sdk.socket_mode.response import SocketModeResponse

    options: dict[str, Any] = {"token": app_token}
    if base_url:
        options["base_url"] = base_url.rstrip("/") + "/"
    client = SocketModeClient(app_token=app_token, web_client=WebClient(**options))

    def listener(sock: Any, request: Any) -> None:
        if request.type != "interactive":
            sock.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))
            return
        sock.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))
        payload = request.payload if isinstance(request.payload, dict) else {}
        handler.click(payload, via="socket")

    client.socket_mode_request_listeners.append(listener)
    client.connect()
    return client
