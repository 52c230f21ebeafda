"""E-mails: rendered from Jinja templates kept in the repository, sent through Airflow's SMTP provider.

A mail named `<name>` is three templates in include/templates/mail: `<name>.subject.j2` (one line),
`<name>.txt.j2` (plain text) and `<name>.html.j2` (HTML, autoescaped). Adding a mail is adding three files:
`render("<name>", **context)` finds them. Templates receive only what the caller passes (counts, dates,
FINESS, file names — never patient data) plus the filters below (French dates and numbers).

No Airflow import at module level: the SMTP hook is imported when a mail is sent.
"""
from __future__ import annotations

import logging
from datetime import date, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from functools import lru_cache
from pathlib import Path

from rpu import resources

log = logging.getLogger(__name__)

TEMPLATES_DIR = resources.path("templates", "mail")
PARTS = ("subject", "txt", "html")


class MailTemplateError(LookupError):
    """A mail has no (complete) set of templates."""


def _as_date(value):
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value) if "T" in value or " " in value else date.fromisoformat(value)
        except ValueError:
            return value
    return value


def date_fr(value, with_time: bool = False) -> str:
    """`2026-03-01` → `01/03/2026` (a datetime with its time when asked); anything else unchanged."""
    value = _as_date(value)
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        if not with_time:
            return f"{value:%d/%m/%Y}"
        return f"{value:%d/%m/%Y %H:%M}" + (f" ({value.tzname()})" if value.tzinfo else "")
    if isinstance(value, date):
        return f"{value:%d/%m/%Y}"
    return str(value)


def number_fr(value) -> str:
    """12345 → `12 345` (no-break space as the thousands separator, as in French)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return "" if value is None else str(value)
    return f"{value:,}".replace(",", "\u00a0")


def plural(n, singular: str, plural_form: str | None = None) -> str:
    """French plural: 0 and 1 take the singular."""
    return singular if (n or 0) <= 1 else (plural_form or singular + "s")


@lru_cache(maxsize=None)
def _environments(directory: str):
    """One environment for text parts (no escaping) and one for HTML (autoescape), over the same folder."""
    import jinja2

    loader = jinja2.FileSystemLoader(directory)
    common = dict(loader=loader, undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                  trim_blocks=True, lstrip_blocks=True)
    envs = {"text": jinja2.Environment(autoescape=False, **common),
            "html": jinja2.Environment(autoescape=True, **common)}
    for env in envs.values():
        env.filters.update(date_fr=date_fr, number_fr=number_fr)
        env.globals.update(plural=plural)
    return envs


def templates(directory: Path | None = None) -> list[str]:
    """The names of the mails that have all three templates."""
    directory = Path(directory or TEMPLATES_DIR)
    names = {p.name[: -len(".subject.j2")] for p in directory.glob("*.subject.j2")}
    return sorted(n for n in names if all((directory / f"{n}.{part}.j2").exists() for part in PARTS))


def render(name: str, /, *, templates_dir: Path | None = None, **context) -> tuple[str, str, str]:
    """(subject, text, html) of the mail `name`, rendered with `context`.

    The subject is one line (newlines folded, whitespace collapsed); in the HTML part every value is escaped.
    A variable the template uses but the context lacks is an error, not an empty string. `templates_dir`
    replaces include/templates/mail (tests)."""
    import jinja2

    directory = Path(templates_dir or TEMPLATES_DIR)
    missing = [part for part in PARTS if not (directory / f"{name}.{part}.j2").exists()]
    if missing:
        raise MailTemplateError(f"mail {name!r}: no template {', '.join(f'{name}.{p}.j2' for p in missing)} "
                                f"in {directory} (known mails: {', '.join(templates(directory)) or 'none'})")
    envs = _environments(str(directory))
    try:
        subject = envs["text"].get_template(f"{name}.subject.j2").render(**context)
        text = envs["text"].get_template(f"{name}.txt.j2").render(**context)
        html = envs["html"].get_template(f"{name}.html.j2").render(**context)
    except jinja2.UndefinedError as exc:
        raise MailTemplateError(f"mail {name!r}: {exc}") from exc
    return " ".join(subject.split()), text, html


def build_message(from_email: str, to: list[str], subject: str, text: str, html: str) -> EmailMessage:
    """multipart/alternative: the plain text first, the HTML last (the part mail readers prefer)."""
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = from_email
    msg["To"] = ", ".join(to)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=from_email.rpartition("@")[2] or None)
    msg.set_content(text, subtype="plain", charset="utf-8")
    msg.add_alternative(html, subtype="html", charset="utf-8")
    return msg


def send(conn_id: str, to: list[str], subject: str, text: str, html: str) -> dict[str, tuple[int, str]]:
    """Send one mail through the Airflow SMTP connection `conn_id` (its `from_email` extra is the sender);
    returns the addresses the server refused, with its reply code and message ({} when all accepted it).

    A partial refusal is not a success: the caller decides what is owed again (rpu.outbox: 4xx retried, 5xx
    refused for good). An unreachable server, a refused login or a refused sender raise.
    The provider's `send_email_smtp` builds an HTML-only message; a text + HTML alternative is built here and
    handed to the client the hook opened and authenticated (TLS, login, OAuth2 as the connection says)."""
    import smtplib

    from airflow.providers.smtp.hooks.smtp import SmtpHook

    to = [a for a in to if a]
    if not to:
        raise ValueError("no recipient address")
    with SmtpHook(smtp_conn_id=conn_id) as hook:
        from_email = hook.from_email
        if not from_email:
            raise ValueError(f"SMTP connection {conn_id!r} has no `from_email` extra: set the sender address there")
        client = getattr(hook, "_smtp_client", None)
        if client is None:   # the provider changed its internals: fail loudly rather than send nothing
            raise RuntimeError(f"SmtpHook({conn_id!r}) opened no SMTP client")
        msg = build_message(from_email, to, subject, text, html)
        try:
            refused = client.send_message(msg, from_addr=from_email, to_addrs=to)
        except smtplib.SMTPRecipientsRefused as exc:   # every address refused: nothing was sent
            refused = exc.recipients
    refused = {a: (int(code), reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply))
               for a, (code, reply) in refused.items()}
    accepted = [a for a in to if a not in refused]
    if accepted:
        log.info("mail %r accepted for %s", subject, ", ".join(accepted))
    for a, (code, reply) in refused.items():
        log.warning("mail %r refused for %s: %s %s", subject, a, code, reply)
    return refused
