"""Email over SMTP (stdlib smtplib): STARTTLS whenever the server offers it, a stable Message-ID
derived from the idempotency key, and no CR/LF from data ever reaching a header."""

from __future__ import annotations

import email.policy
import hashlib
import re
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate

from breakglass.integrations.notify.base import ChannelRules, Message, Permanent, Transient

_QUEUE_ID = re.compile(r"queued as ([A-Za-z0-9]+)", re.I)
_ADDRESS = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+$")


def valid_address(value: str) -> bool:
    return bool(_ADDRESS.fullmatch(value))


RULES = ChannelRules(kind="email", needs=("host", "sender"), valid_to=valid_address, to_is="an email address")


def header_safe(value: str) -> str:
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())


def message_id(key: str, domain: str) -> str:
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


class EmailTransport:
    kind = "email"

    def __init__(self, host: str, port: int, sender: str, *, username: str | None = None, password: str | None = None,
                 starttls: str = "auto", timeout: float = 15) -> None:
        self.host, self.port, self.sender = host, port, sender
        self._username, self._password = username, password
        self.starttls, self.timeout = starttls, timeout

    def __repr__(self) -> str:
        return f"EmailTransport({self.host}:{self.port})"

    def build(self, to: str, message: Message) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = ", ".join(a.strip() for a in to.split(","))
        msg["Subject"] = header_safe(message.subject)
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = message_id(message.key, self.sender.split("@")[-1])
        msg["X-Breakglass-Idempotency-Key"] = header_safe(message.key)
        msg.set_content(message.text)
        for name, content in message.attachments.items():
            maintype, subtype = ("text", "csv") if name.endswith(".csv") else ("application", "json")
            msg.add_attachment(content, maintype=maintype, subtype=subtype, filename=header_safe(name))
        return msg

    def send(self, to: str, message: Message) -> str:
        recipients = [a.strip() for a in to.split(",") if a.strip()]
        bad = [a for a in recipients if not valid_address(a)]
        if bad or not recipients:
            raise Permanent(f"email: invalid address(es) {bad or to!r}")
        msg = self.build(to, message)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                smtp.ehlo()
                if self.starttls == "always" or (self.starttls == "auto" and smtp.has_extn("starttls")):
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.ehlo()
                if self._username and self._password:
                    smtp.login(self._username, self._password)
                code, answer = smtp.mail(self.sender)
                if code >= 400:
                    raise smtplib.SMTPSenderRefused(code, answer, self.sender)
                for rcpt in recipients:
                    code, answer = smtp.rcpt(rcpt)
                    if code >= 400:
                        raise smtplib.SMTPRecipientsRefused({rcpt: (code, answer)})
                code, answer = smtp.data(msg.as_bytes(policy=email.policy.SMTP))  # CRLF line ends, as RFC 5321 requires
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPAuthenticationError) as exc:
            raise Permanent(f"email: refused ({type(exc).__name__})") from None
        except smtplib.SMTPResponseException as exc:
            raise (Transient if exc.smtp_code < 500 else Permanent)(f"email: SMTP {exc.smtp_code}") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise Transient(f"email: {type(exc).__name__}") from None
        if code >= 400:
            raise (Transient if code < 500 else Permanent)(f"email: SMTP {code} after DATA")
        text = answer.decode(errors="replace") if isinstance(answer, bytes) else str(answer)
        queued = _QUEUE_ID.search(text)
        return queued.group(1) if queued else msg["Message-ID"]

    def find(self, to: str, message: Message) -> str | None:
        return None  # SMTP cannot be asked; a re-send keeps the same Message-ID so receivers can drop it
