"""MailNotifier: a mail per finished build that matches its modes, sent by SMTP off the reactor thread.

Modes (any of them; a build matching one is mailed):

``all``        every build;
``failing``    builds that failed;
``passing``    builds that succeeded;
``warnings``   builds that ended with warnings;
``exception``  builds that ended in an exception;
``cancelled``  builds that were cancelled;
``problem``    a failed build whose builder's previous build did not fail;
``change``     a build whose result differs from the builder's previous build's (success <-> failure).

The subject names the builder, the result and the revision; the body adds the failing step, the
build's page in the web UI and the source stamps.  smtplib runs in a thread (never on the
reactor), with STARTTLS when ``use_tls`` and a login when ``smtp_user`` is set.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from twisted.internet import threads

from master.reporters.base import FINISH, BuildInfo, GiveUp, Reporter, Retry
from master.results import CANCELLED, EXCEPTION, FAILURE, SUCCESS, WARNINGS, result_name

MODES = ("all", "failing", "passing", "warnings", "exception", "cancelled", "problem", "change")
SMTP_TIMEOUT = 30.0


def _address(key: str, value: Any) -> str:
    if not isinstance(value, str) or "@" not in value or any(c.isspace() for c in value.strip()):
        raise ValueError(f"{key}: expected a mail address like ci@example.org, got {value!r}")
    return value.strip()


class MailNotifier(Reporter):
    """One mail per finished build matching *mode*, from *fromaddr* to *extraRecipients*."""

    wants_start = False
    wants_steps = True
    wants_previous = True

    def __init__(
        self, fromaddr: str, mode: str | Sequence[str] = ("failing", "passing", "warnings"),
        extraRecipients: Sequence[str] = (), smtp_host: str = "localhost", smtp_port: int = 25,  # noqa: N803
        smtp_user: str | None = None, smtp_password: str | None = None, use_tls: bool = False,
        tls_ca_file: str | None = None, **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.fromaddr = fromaddr
        self.mode = (mode,) if isinstance(mode, str) else tuple(mode)
        self.extraRecipients = list(extraRecipients)  # noqa: N815 (Buildbot's name)
        self.smtp_host = smtp_host
        self.smtp_port = smtp_port
        self.smtp_user = smtp_user
        self.smtp_password = smtp_password
        self.use_tls = use_tls
        self.tls_ca_file = tls_ca_file

    def check(self) -> None:
        """Addresses, modes and the SMTP settings are usable."""
        super().check()
        _address("fromaddr", self.fromaddr)
        if not self.extraRecipients:
            raise ValueError("extraRecipients: no recipient: list at least one mail address")
        for index, address in enumerate(self.extraRecipients):
            _address(f"extraRecipients[{index}]", address)
        unknown = [m for m in self.mode if m not in MODES]
        if unknown or not self.mode:
            raise ValueError(f"mode: unknown mode(s) {unknown or self.mode!r} (known: {', '.join(MODES)})")
        if not isinstance(self.smtp_host, str) or not self.smtp_host or any(c.isspace() for c in self.smtp_host):
            raise ValueError(f"smtp_host: expected a host name, got {self.smtp_host!r}")
        if isinstance(self.smtp_port, bool) or not isinstance(self.smtp_port, int) or not 0 < self.smtp_port < 65536:
            raise ValueError(f"smtp_port: expected a port number, got {self.smtp_port!r}")
        if (self.smtp_user is None) != (self.smtp_password is None):
            raise ValueError("smtp_user and smtp_password: give both or neither")

    def matches(self, info: BuildInfo) -> bool:
        """Whether the finished build is mailed under the modes."""
        results, previous = info.results, info.previous_results
        wanted = {
            "all": True,
            "failing": results == FAILURE,
            "passing": results == SUCCESS,
            "warnings": results == WARNINGS,
            "exception": results == EXCEPTION,
            "cancelled": results == CANCELLED,
            "problem": results == FAILURE and previous != FAILURE,
            "change": previous is not None and results in (SUCCESS, FAILURE) and previous in (SUCCESS, FAILURE)
            and results != previous,
        }
        return any(wanted[mode] for mode in self.mode)

    async def make_report(self, info: BuildInfo, state: str) -> dict[str, Any] | None:
        """The mail (subject, body, recipients), when the build matches the modes."""
        if state != FINISH or not self.matches(info):
            return None
        builder = info.builder.get("name", "?")
        revision = info.revision or "(no revision)"
        subject = f"ci-master: {builder} build #{info.build['number']} {info.result_name} on {revision[:12]}"
        lines = [
            f"Builder:  {builder}",
            f"Build:    #{info.build['number']}",
            f"Result:   {info.result_name}",
            f"Revision: {revision}",
        ]
        if info.failing_step:
            lines.append(f"Failing step: {info.failing_step}")
        lines.append(f"Build page: {info.url}")
        if info.build.get("state_string"):
            lines.append(f"State: {info.build['state_string']}")
        for stamp in info.sourcestamps:
            lines.append(f"Source: {stamp.get('repository') or '-'} branch {stamp.get('branch') or '-'}"
                         f" revision {stamp.get('revision') or '-'}")
        steps = [f"  {s['name']}: {_result(s.get('results'))}" for s in info.steps]
        if steps:
            lines += ["", "Steps:", *steps]
        return {"to": self.extraRecipients, "subject": subject, "body": "\n".join(lines) + "\n"}

    async def deliver(self, report: dict[str, Any]) -> None:
        """Send the mail in a thread."""
        message = EmailMessage()
        message["From"] = self.fromaddr
        message["To"] = ", ".join(report["to"])
        message["Subject"] = report["subject"]
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain=self.fromaddr.rpartition("@")[2] or None)
        message.set_content(report["body"])
        await threads.deferToThread(self._send, message, report["to"])

    def _send(self, message: EmailMessage, recipients: list[str]) -> None:
        where = f"SMTP {self.smtp_host}:{self.smtp_port}"
        try:
            with smtplib.SMTP(self.smtp_host, self.smtp_port, timeout=SMTP_TIMEOUT) as smtp:
                if self.use_tls:
                    smtp.starttls(context=ssl.create_default_context(cafile=self.tls_ca_file))
                if self.smtp_user is not None:
                    smtp.login(self.smtp_user, self.smtp_password or "")
                smtp.send_message(message, from_addr=self.fromaddr, to_addrs=recipients)
        except smtplib.SMTPAuthenticationError as e:
            raise GiveUp(f"{where}: login refused ({e.smtp_code} {_text(e.smtp_error)})") from None
        except smtplib.SMTPNotSupportedError as e:
            raise GiveUp(f"{where}: {e}") from None
        except smtplib.SMTPRecipientsRefused as e:
            raise GiveUp(f"{where}: recipients refused: {e.recipients}") from None
        except smtplib.SMTPResponseException as e:
            failure = Retry if 400 <= e.smtp_code < 500 else GiveUp
            raise failure(f"{where}: {e.smtp_code} {_text(e.smtp_error)}") from None
        except ssl.SSLCertVerificationError as e:
            raise GiveUp(f"{where}: the server's certificate is not trusted ({e.verify_message})") from None
        except (smtplib.SMTPException, OSError) as e:
            raise Retry(f"{where}: {type(e).__name__}: {e}") from None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _result(results: int | None) -> str:
    return result_name(results, unset="not run")
