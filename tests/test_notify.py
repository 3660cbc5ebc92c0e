"""Alert delivery against real local servers: a Telegram Bot API stand-in and aiosmtpd SMTP servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import calendar
import itertools
import logging
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from sqlite_utils import Database

from tests.loopback import HOST, free_port
from tests.smtp_servers import Cert, RecordingHandler, StuckSMTP, make_cert, password_authenticator, start_smtp
from tests.telegram_server import TelegramStandIn
from watcher.notify import outbox
from watcher.notify.base import Message, PermanentFailure, TemporaryFailure
from watcher.notify.email import EmailChannel
from watcher.notify.outbox import OutboxRow, depth, due, enqueue, ensure_schema
from watcher.notify.relay import Relay, RelayReport
from watcher.notify.telegram import TelegramChannel

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "123456:SECRET-bot-token-AbCdEf"
PASSWORD = "s3cret-smtp-Pa55word"
SENDER, RECIPIENT = "watcher@example.org", "me@example.org"


class FakeClock:
    """A clock the test moves by hand, so backoff schedules are checked without waiting."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += seconds


@pytest.fixture(autouse=True)
def _no_secret_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every test: nothing logged, at any level by any logger, contains the bot token or the SMTP password."""
    caplog.set_level(logging.DEBUG)
    yield
    for record in caplog.records:
        text = record.getMessage()
        assert TOKEN not in text and PASSWORD not in text, record.name


@pytest.fixture
def telegram() -> Iterator[TelegramStandIn]:
    """The Telegram stand-in, knowing chats 42 and 43."""
    server = TelegramStandIn(TOKEN, chats=("42", "43")).start()
    yield server
    server.stop()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A fresh SQLite file with the outbox table."""
    path = tmp_path / "watcher.db"
    with Database(path) as db:
        ensure_schema(db)
    return path


@pytest.fixture
def db(db_path: Path) -> Iterator[Database]:
    """A connection to that file."""
    with Database(db_path) as database:
        yield database


@pytest.fixture
def smtp() -> Iterator[Callable[..., Controller]]:
    """Start aiosmtpd servers on demand; all are stopped after the test."""
    started: list[Controller] = []

    def start(handler: RecordingHandler, **kwargs: object) -> Controller:
        controller = start_smtp(handler, **kwargs)
        started.append(controller)
        return controller

    yield start
    for controller in started:
        controller.stop()


@pytest.fixture(scope="session")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    """One self-signed certificate for the session."""
    return make_cert(tmp_path_factory.mktemp("tls"))


def tg(server: TelegramStandIn, chat_id: str = "42", **kwargs: object) -> TelegramChannel:
    """A TelegramChannel on the stand-in, unpaced unless the test says otherwise."""
    kwargs = {"min_interval": 0.0, "timeout": 5.0, **kwargs}
    return TelegramChannel(TOKEN, chat_id, base_url=server.base_url, **kwargs)  # type: ignore[arg-type]


def mailer(server: Controller, **kwargs: object) -> EmailChannel:
    """An EmailChannel on that server, plain SMTP unless the test says otherwise."""
    kwargs = {"security": "none", "timeout": 5.0, **kwargs}
    return EmailChannel(HOST, server.port, SENDER, [RECIPIENT], **kwargs)  # type: ignore[arg-type]


def alert(n: int = 1) -> Message:
    """A test alert with id alert-<n>."""
    return Message(f"alert-{n}", f"alice: health 1.0{n} (critical)", f"Account alice on ethereum.\nHealth 1.0{n}.")


def put(
    db: Database, msg: Message, channel: str, now: float, position: str | None = None, level: str | None = None
) -> int:
    """Enqueue and commit, as the alert engine does with its state change (Store.commit passes position and level)."""
    with db.conn:
        return enqueue(db, msg, channel, now, position=position, severity=outbox.severity_rank(level))


def update(position: str, level: str, n: int) -> Message:
    """Alert number `n` about `position` at `level`, with an id like the alert engine's."""
    return Message(f"{position}:e1:{level}:{n}", f"{position}: {level}", f"{position} is {level} (update {n}).")


def refs(texts: list[str]) -> list[str]:
    """The ref line of each text received."""
    return [text.rsplit("ref: ", 1)[1] for text in texts]


def rows(db: Database) -> list[OutboxRow]:
    """Every outbox row, by id."""
    ids = [row_id for (row_id,) in db.conn.execute("SELECT id FROM outbox ORDER BY id")]
    found = [outbox.get(db, row_id) for row_id in ids]
    return [row for row in found if row is not None]


async def drain(relay: Relay, db: Database, timeout: float = 10.0, interval: float = 0.05) -> None:
    """Run the relay's run_forever until the outbox is empty, then stop it."""
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run_forever(stop, interval))
    deadline = time.monotonic() + timeout
    while depth(db) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, 5)


def run_child(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `script` in a fresh Python process (the token comes through the environment, as in production)."""
    env = {**os.environ, "TG_TOKEN": TOKEN}
    done = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert TOKEN not in done.stdout + done.stderr
    return done


# --- Telegram ---------------------------------------------------------------------------------------------------------


def test_telegram_429_waits_retry_after_then_delivers_once(telegram: TelegramStandIn, db: Database) -> None:
    """429 with parameters.retry_after=1: the row waits 1 s (not the 0.05 s backoff), then goes out exactly once."""
    telegram.answer_next(429, retry_after=1)
    msg = alert()

    async def scenario() -> tuple[RelayReport, RelayReport, OutboxRow | None]:
        channel = tg(telegram)
        try:
            relay = Relay(db, {"telegram": channel}, retry_initial=0.05)
            row_id = put(db, msg, "telegram", time.time())
            first = await relay.run_once()
            after_429 = outbox.get(db, row_id)
            # Not due yet: nothing is sent and no attempt is spent.
            second = await relay.run_once()
            await drain(relay, db)
            return first, second, after_429
        finally:
            await channel.close()

    first, second, after_429 = asyncio.run(scenario())
    assert first == RelayReport(retried=1)
    assert second == RelayReport()
    assert after_429 is not None and after_429.status == "pending" and after_429.attempts == 1
    assert after_429.next_attempt_at is not None and after_429.next_attempt_at - after_429.created_at >= 1.0
    assert after_429.last_error == "telegram: HTTP 429: Too Many Requests: retry after 1"
    assert [r.status for r in telegram.requests] == [429, 200]
    assert telegram.requests[1].at - telegram.requests[0].at >= 0.95
    assert len(telegram.received) == 1
    assert telegram.received[0].text == f"{msg.text}\n\nref: {msg.alert_id}"
    [row] = rows(db)
    assert (row.status, row.attempts, row.delivered_at is not None) == ("delivered", 2, True)


def test_telegram_429_retry_after_header_and_flood_wait(telegram: TelegramStandIn) -> None:
    """Retry-After header alone is used too; during the wait the channel refuses without asking Telegram again."""
    telegram.answer_next(429, retry_after=7, header_only=True)

    async def scenario() -> tuple[TemporaryFailure, TemporaryFailure]:
        channel = tg(telegram)
        try:
            with pytest.raises(TemporaryFailure) as first:
                await channel.send(alert())
            with pytest.raises(TemporaryFailure) as second:
                await channel.send(alert(2))
            return first.value, second.value
        finally:
            await channel.close()

    first, second = asyncio.run(scenario())
    assert first.retry_after == 7.0
    assert second.retry_after is not None and 6.0 < second.retry_after <= 7.0
    assert len(telegram.requests) == 1 and telegram.received == []


def test_telegram_paces_about_one_message_per_second_per_chat(telegram: TelegramStandIn, db: Database) -> None:
    """Three alerts for one chat arrive ≥ 0.9 s apart, in order; another chat's alert is not held behind them."""
    now = time.time() - 1.0
    for n in (1, 2, 3):
        put(db, alert(n), "telegram", now + n * 1e-3)
    put(db, alert(9), "ops", now + 1e-2)

    async def scenario() -> RelayReport:
        main, ops = tg(telegram, "42", min_interval=1.0), tg(telegram, "43", min_interval=1.0)
        try:
            return await Relay(db, {"telegram": main, "ops": ops}).run_once()
        finally:
            await main.close()
            await ops.close()

    started = time.monotonic()
    report = asyncio.run(scenario())
    elapsed = time.monotonic() - started
    assert report == RelayReport(delivered=4)
    chat = [r for r in telegram.received if r.chat_id == "42"]
    assert [r.text.rsplit("ref: ", 1)[1] for r in chat] == ["alert-1", "alert-2", "alert-3"]
    gaps = [b.at - a.at for a, b in itertools.pairwise(chat)]
    assert all(gap >= 0.9 for gap in gaps), gaps
    [other] = [r for r in telegram.received if r.chat_id == "43"]
    assert other.at - chat[0].at < 0.5
    assert 1.8 <= elapsed < 5
    assert depth(db) == 0


def test_telegram_400_falls_back_to_email(
    telegram: TelegramStandIn, db: Database, smtp: Callable[..., Controller]
) -> None:
    """Telegram refuses (400 chat not found): the row fails with Telegram's description and e-mail delivers it."""
    handler = RecordingHandler()
    server = smtp(handler)
    telegram.answer_next(400, description="Bad Request: chat not found")
    clock, msg = FakeClock(), alert()
    row_id = put(db, msg, "telegram", clock())

    async def scenario() -> tuple[RelayReport, RelayReport]:
        channel = tg(telegram)
        try:
            relay = Relay(
                db, {"telegram": channel, "email": mailer(server)}, fallback={"telegram": "email"}, clock=clock
            )
            return await relay.run_once(), await relay.run_once()
        finally:
            await channel.close()

    first, second = asyncio.run(scenario())
    assert first == RelayReport(failed=1, fell_back=1)
    assert second == RelayReport(delivered=1)
    failed, fallback = rows(db)
    assert (failed.id, failed.status, failed.attempts) == (row_id, "failed", 1)
    assert failed.last_error == "telegram: HTTP 400: Bad Request: chat not found"
    assert (fallback.channel, fallback.fallback_of, fallback.status, fallback.alert_id) == (
        "email",
        row_id,
        "delivered",
        msg.alert_id,
    )
    assert telegram.received == []
    [mail] = handler.mails
    assert mail.message["Subject"] == msg.subject and mail.rcpt_tos == [RECIPIENT]
    assert mail.body.rstrip("\n").splitlines()[-1] == f"ref: {msg.alert_id}"


def test_temporary_failures_back_off_never_give_up_and_copy_to_the_fallback(
    telegram: TelegramStandIn, db: Database, smtp: Callable[..., Controller]
) -> None:
    """500s: retried after 1 s, then 1.5 s (capped) forever; the 3rd failure copies to e-mail, Telegram keeps trying."""
    handler = RecordingHandler()
    server = smtp(handler)
    telegram.answer_next(500, count=5, description="Internal Server Error")
    clock = FakeClock()
    start = clock()
    row_id = put(db, alert(), "telegram", start)

    async def scenario() -> list[tuple[RelayReport, float | None]]:
        channel = tg(telegram)
        channels = {"telegram": channel, "email": mailer(server)}
        relay = Relay(
            db,
            channels,
            fallback={"telegram": "email"},
            fallback_after=3,
            retry_initial=1.0,
            retry_max=1.5,
            clock=clock,
        )
        steps = []
        try:
            for advance in (0.0, 1.0, 1.5, 0.0, 1.5, 1.5, 1.5):
                clock.advance(advance)
                report = await relay.run_once()
                row = outbox.get(db, row_id)
                steps.append((report, row.next_attempt_at if row else None))
        finally:
            await channel.close()
        return steps

    steps = asyncio.run(scenario())
    assert steps == [
        (RelayReport(retried=1), start + 1.0),
        (RelayReport(retried=1), start + 2.5),
        # The copy is delivered in the same pass: the e-mail drain runs beside the Telegram one.
        (RelayReport(retried=1, fell_back=1, delivered=1), start + 4.0),
        (RelayReport(), start + 4.0),  # resting: Telegram is not asked again before its backoff ends
        (RelayReport(retried=1), start + 5.5),
        (RelayReport(retried=1), start + 7.0),
        (RelayReport(delivered=1), start + 7.0),
    ]
    original, by_mail = rows(db)
    assert (original.status, original.attempts) == ("delivered", 6)
    assert (by_mail.channel, by_mail.status, by_mail.fallback_of) == ("email", "delivered", row_id)
    assert [r.status for r in telegram.requests] == [500] * 5 + [200]
    assert len(handler.mails) == 1 and len(telegram.received) == 1
    assert telegram.received[0].text.endswith("ref: alert-1")
    assert handler.mails[0].body.rstrip("\n").endswith("ref: alert-1")


def test_telegram_long_text_is_cut_but_keeps_its_ref(telegram: TelegramStandIn) -> None:
    """Telegram's 4096-character limit: the text is cut, the ref line survives."""

    async def scenario() -> None:
        channel = tg(telegram)
        try:
            await channel.send(Message("alert-long", "s", "x" * 5000))
        finally:
            await channel.close()

    asyncio.run(scenario())
    [received] = telegram.received
    assert len(received.text) == 4096 and received.text.endswith("…\n\nref: alert-long")


# --- SMTP -------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("phase", ["RCPT", "DATA"])
def test_smtp_451_then_success_delivers_once(db: Database, smtp: Callable[..., Controller], phase: str) -> None:
    """A greylisting 451 (at RCPT or DATA): retried after retry_initial, delivered once, with subject, body and ref."""
    handler = RecordingHandler(refuse="451 4.7.1 Greylisted, try again later", phase=phase, times=1)
    server = smtp(handler)
    clock, msg = FakeClock(), alert()
    row_id = put(db, msg, "email", clock())
    relay = Relay(db, {"email": mailer(server)}, retry_initial=30.0, clock=clock)

    first = asyncio.run(relay.run_once())
    retrying = outbox.get(db, row_id)
    early = asyncio.run(relay.run_once())
    clock.advance(30.0)
    last = asyncio.run(relay.run_once())

    assert (first, early, last) == (RelayReport(retried=1), RelayReport(), RelayReport(delivered=1))
    assert retrying is not None and retrying.next_attempt_at == retrying.created_at + 30.0
    assert retrying.last_error is not None and "451 4.7.1 Greylisted, try again later" in retrying.last_error
    assert handler.refused == 1
    [mail] = handler.mails
    assert mail.mail_from == SENDER and mail.rcpt_tos == [RECIPIENT]
    assert mail.message["Subject"] == msg.subject
    assert mail.message["X-Margin-Watcher-Ref"] == msg.alert_id
    assert mail.body.rstrip("\n") == f"{msg.text}\n\nref: {msg.alert_id}"
    [row] = rows(db)
    assert (row.status, row.attempts, row.delivered_at) == ("delivered", 2, clock())


def test_smtp_550_fails_and_telegram_fallback_delivers(
    telegram: TelegramStandIn, db: Database, smtp: Callable[..., Controller]
) -> None:
    """550 at RCPT is permanent: the e-mail row fails at once with the server's reply, Telegram delivers the alert."""
    handler = RecordingHandler(refuse="550 5.1.1 <me@example.org>: mailbox unavailable")
    server = smtp(handler)
    clock, msg = FakeClock(), alert()
    row_id = put(db, msg, "email", clock())

    async def scenario() -> tuple[RelayReport, RelayReport]:
        channel = tg(telegram)
        try:
            relay = Relay(
                db, {"email": mailer(server), "telegram": channel}, fallback={"email": "telegram"}, clock=clock
            )
            return await relay.run_once(), await relay.run_once()
        finally:
            await channel.close()

    first, second = asyncio.run(scenario())
    assert (first, second) == (RelayReport(failed=1, fell_back=1), RelayReport(delivered=1))
    failed, fallback = rows(db)
    assert (failed.id, failed.status, failed.attempts) == (row_id, "failed", 1)
    assert failed.last_error == (
        "email: recipients refused: me@example.org: 550 5.1.1 <me@example.org>: mailbox unavailable"
    )
    assert (fallback.channel, fallback.status, fallback.fallback_of) == ("telegram", "delivered", row_id)
    assert handler.mails == [] and handler.refused == 1
    [received] = telegram.received
    assert received.text == f"{msg.text}\n\nref: {msg.alert_id}"


def test_a_failed_fallback_does_not_fall_back_again(
    telegram: TelegramStandIn, db: Database, smtp: Callable[..., Controller]
) -> None:
    """Each channel is the other's fallback and both refuse: two failed rows, no ping-pong."""
    server = smtp(RecordingHandler(refuse="550 5.7.1 Relaying denied"))
    telegram.answer_next(403, description="Forbidden: bot was blocked by the user")
    clock = FakeClock()
    put(db, alert(), "email", clock())

    async def scenario() -> list[RelayReport]:
        channel = tg(telegram)
        try:
            relay = Relay(
                db,
                {"email": mailer(server), "telegram": channel},
                fallback={"email": "telegram", "telegram": "email"},
                clock=clock,
            )
            return [await relay.run_once() for _ in range(3)]
        finally:
            await channel.close()

    reports = asyncio.run(scenario())
    assert reports == [RelayReport(failed=1, fell_back=1), RelayReport(failed=1), RelayReport()]
    assert [(r.channel, r.status) for r in rows(db)] == [("email", "failed"), ("telegram", "failed")]
    assert rows(db)[1].last_error == "telegram: HTTP 403: Forbidden: bot was blocked by the user"


def test_smtp_starttls_with_auth(smtp: Callable[..., Controller], cert: Cert) -> None:
    """STARTTLS (self-signed certificate, verified against it) then AUTH: the server saw TLS and a logged-in client."""
    handler = RecordingHandler()
    server = smtp(
        handler,
        tls_context=cert.server_context(),
        require_starttls=True,
        authenticator=password_authenticator("watcher", PASSWORD),
        auth_required=True,
    )
    good = mailer(server, security="starttls", ssl_context=cert.client_context(), username="watcher", password=PASSWORD)
    asyncio.run(good.send(alert()))
    [mail] = handler.mails
    assert mail.tls and mail.authenticated

    failures = {
        "wrong password": mailer(
            server, security="starttls", ssl_context=cert.client_context(), username="watcher", password=PASSWORD + "x"
        ),
        "no login": mailer(server, security="starttls", ssl_context=cert.client_context()),
        "plain": mailer(server, security="none", username="watcher", password=PASSWORD),
        "plain, no login": mailer(server, security="none"),
        "untrusted certificate": mailer(server, security="starttls", username="watcher", password=PASSWORD),
    }
    messages = {}
    for case, channel in failures.items():
        with pytest.raises(PermanentFailure) as caught:
            asyncio.run(channel.send(alert(2)))
        messages[case] = str(caught.value)
        assert PASSWORD not in str(caught.value) and PASSWORD not in repr(channel)
    assert messages["wrong password"] == "email: 535 5.7.8 Authentication credentials invalid"
    assert messages["no login"] == "email: 530 5.7.0 Authentication required"
    assert messages["plain"] == "email: the server offers no AUTH on this connection (security='none'?)"
    assert messages["plain, no login"] == "email: 530 Must issue a STARTTLS command first"
    assert messages["untrusted certificate"].startswith("email: TLS certificate not trusted")
    assert len(handler.mails) == 1


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_smtp_implicit_tls(smtp: Callable[..., Controller], cert: Cert) -> None:
    """security="ssl": TLS from the first byte (SMTPS), then AUTH and delivery."""
    handler = RecordingHandler()
    # aiosmtpd only counts STARTTLS as TLS for AUTH, hence auth_require_tls=False on this already encrypted port.
    server = smtp(
        handler,
        ssl_context=cert.server_context(),
        authenticator=password_authenticator("watcher", PASSWORD),
        auth_required=True,
        auth_require_tls=False,
    )
    channel = mailer(server, security="ssl", ssl_context=cert.client_context(), username="watcher", password=PASSWORD)
    asyncio.run(channel.send(alert()))
    [mail] = handler.mails
    assert mail.tls and mail.authenticated
    assert mail.body.rstrip("\n").endswith("ref: alert-1")


# --- the outbox and crashes -------------------------------------------------------------------------------------------


def test_enqueue_joins_the_callers_transaction(db: Database, db_path: Path) -> None:
    """enqueue never commits: its row commits or rolls back with the caller's alert change."""
    db.table("alerts").create({"account": str, "level": str}, pk="account")
    db.table("alerts").insert({"account": "alice", "level": "ok"})

    with pytest.raises(RuntimeError), db.conn:
        db.conn.execute("UPDATE alerts SET level = 'critical' WHERE account = 'alice'")
        enqueue(db, alert(), "telegram", 1.0)
        raise RuntimeError("the alert engine failed before committing")
    assert depth(db) == 0 and db.table("alerts").get("alice")["level"] == "ok"

    enqueue(db, alert(), "telegram", 1.0)
    assert db.conn.in_transaction
    with Database(db_path) as other:
        assert depth(other) == 0
        db.conn.commit()
        assert depth(other) == 1

    if hasattr(db, "atomic"):  # sqlite-utils 4: its own write methods join a transaction that atomic() opened
        with pytest.raises(RuntimeError), db.atomic():
            db.table("alerts").update("alice", {"level": "warn"})
            enqueue(db, alert(2), "telegram", 2.0)
            raise RuntimeError("rolled back")
        assert depth(db) == 1 and db.table("alerts").get("alice")["level"] == "ok"


def test_due_depth_and_order(db: Database) -> None:
    """due: pending rows with next_attempt_at <= now, oldest first, up to limit; depth counts pending rows."""
    ids = [put(db, alert(n), "telegram", created) for n, created in ((1, 30.0), (2, 10.0), (3, 20.0), (4, 5.0))]
    with db.conn:
        outbox.mark_retry(db, ids[3], 40.0, 60.0, "later")
        outbox.mark_delivered(db, ids[2], 41.0)
    assert [r.alert_id for r in due(db, 50.0)] == ["alert-2", "alert-1"]
    assert [r.alert_id for r in due(db, 50.0, limit=1)] == ["alert-2"]
    assert [r.alert_id for r in due(db, 100.0)] == ["alert-4", "alert-2", "alert-1"]
    assert depth(db) == 3
    assert outbox.next_due_at(db) == 10.0


def test_unknown_channel_fails_clearly(db: Database) -> None:
    """A row for a channel that is not configured fails at once, saying so; a fallback to nowhere is refused."""
    put(db, alert(), "sms", 1.0)
    report = asyncio.run(Relay(db, {}, clock=lambda: 2.0).run_once())
    assert report == RelayReport(failed=1)
    [row] = rows(db)
    assert (row.status, row.attempts, row.last_error) == ("failed", 0, "no channel named 'sms' is configured")
    with pytest.raises(ValueError, match="not a configured channel"):
        Relay(db, {}, fallback={"telegram": "email"})


def test_run_forever_sleeps_until_the_next_due_row_and_wakes_on_demand(telegram: TelegramStandIn, db: Database) -> None:
    """interval=30 s, yet a row due in 0.3 s is sent at ~0.3 s; wake() sends a new row at once; stop ends it at once."""

    async def scenario() -> tuple[float, float, float]:
        channel = tg(telegram)
        relay = Relay(db, {"telegram": channel})
        stop = asyncio.Event()
        started = time.monotonic()
        with db.conn:
            enqueue(db, alert(1), "telegram", time.time())
            db.conn.execute("UPDATE outbox SET next_attempt_at = ?", (time.time() + 0.3,))
        task = asyncio.create_task(relay.run_forever(stop, interval=30.0))
        while len(telegram.received) < 1:
            await asyncio.sleep(0.01)
        first = telegram.received[0].at - started
        await asyncio.sleep(0.1)
        put(db, alert(2), "telegram", time.time())
        woken = time.monotonic()
        relay.wake()
        while len(telegram.received) < 2:
            await asyncio.sleep(0.01)
        second = telegram.received[1].at - woken
        stopping = time.monotonic()
        stop.set()
        await asyncio.wait_for(task, 5)
        await channel.close()
        return first, second, time.monotonic() - stopping

    first, second, stopped = asyncio.run(scenario())
    assert 0.25 <= first < 1.0
    assert second < 0.5
    assert stopped < 0.5
    assert depth(db) == 0


CHILD_ALERT_ENGINE = r"""
import os, sys, time
import sqlite_utils
from watcher.notify.base import Message
from watcher.notify.outbox import enqueue

db = sqlite_utils.Database(sys.argv[1])
with db.conn:
    db.conn.execute("UPDATE alerts SET level = 'critical' WHERE account = 'alice'")
    enqueue(db, Message("alert-7", "alice: critical", "Health 1.04."), "telegram", time.time())
    if sys.argv[2] == "before-commit":
        os._exit(1)
os._exit(1)  # committed, and dead before any relay could send it
"""


@pytest.mark.parametrize("crash", ["after-commit", "before-commit"])
def test_crash_around_the_alert_commit(telegram: TelegramStandIn, db: Database, db_path: Path, crash: str) -> None:
    """The alert engine dies (os._exit) after its commit: a restarted relay delivers; before it: nothing was written."""
    db.table("alerts").create({"account": str, "level": str}, pk="account")
    db.table("alerts").insert({"account": "alice", "level": "ok"})
    assert run_child(CHILD_ALERT_ENGINE, str(db_path), crash).returncode == 1

    async def restart() -> RelayReport:
        channel = tg(telegram)
        try:
            with Database(db_path) as fresh:
                return await Relay(fresh, {"telegram": channel}).run_once()
        finally:
            await channel.close()

    report = asyncio.run(restart())
    if crash == "before-commit":
        assert report == RelayReport() and rows(db) == [] and telegram.received == []
        assert db.table("alerts").get("alice")["level"] == "ok"
        return
    assert report == RelayReport(delivered=1)
    assert db.table("alerts").get("alice")["level"] == "critical"
    [received] = telegram.received
    assert received.text == "Health 1.04.\n\nref: alert-7"
    [row] = rows(db)
    assert (row.status, row.attempts) == ("delivered", 1)


CHILD_RELAY_DIES_AFTER_SEND = r"""
import asyncio, os, sys
import sqlite_utils
from watcher.notify import relay
from watcher.notify.telegram import TelegramChannel

def die(*args, **kwargs):
    # Telegram has accepted the message; the process dies before the row is marked delivered.
    os._exit(1)

relay.mark_delivered = die

async def main():
    db = sqlite_utils.Database(sys.argv[1])
    channel = TelegramChannel(os.environ["TG_TOKEN"], "42", base_url=sys.argv[2], min_interval=0)
    await relay.Relay(db, {"telegram": channel}).run_once()

asyncio.run(main())
sys.exit(3)
"""


def test_crash_between_send_and_mark_resends_exactly_once(
    telegram: TelegramStandIn, db: Database, db_path: Path
) -> None:
    """The relay dies (os._exit) after Telegram accepted, before marking: the restart re-sends once, same ref line."""
    msg = alert()
    row_id = put(db, msg, "telegram", time.time())
    assert run_child(CHILD_RELAY_DIES_AFTER_SEND, str(db_path), telegram.base_url).returncode == 1
    assert len(telegram.received) == 1
    crashed = outbox.get(db, row_id)
    assert crashed is not None and (crashed.status, crashed.attempts) == ("pending", 0)

    async def restart() -> RelayReport:
        channel = tg(telegram)
        try:
            with Database(db_path) as fresh:
                return await Relay(fresh, {"telegram": channel}).run_once()
        finally:
            await channel.close()

    assert asyncio.run(restart()) == RelayReport(delivered=1)
    assert asyncio.run(restart()) == RelayReport()
    texts = [r.text for r in telegram.received]
    assert texts == [f"{msg.text}\n\nref: {msg.alert_id}"] * 2
    [row] = rows(db)
    assert (row.status, row.attempts) == ("delivered", 1)


# --- secrets ----------------------------------------------------------------------------------------------------------


def _secret_free(exc: BaseException, *secrets: str) -> None:
    """No secret in the exception's repr nor in its formatted traceback (chained exceptions included)."""
    shown = "".join(traceback.format_exception(exc)) + repr(exc)
    for secret in secrets:
        assert secret not in shown


def test_secrets_stay_out_of_errors_rows_and_logs(
    telegram: TelegramStandIn, db: Database, smtp: Callable[..., Controller], cert: Cert
) -> None:
    """Token and password: not in exceptions (nor tracebacks), reprs, outbox.last_error or logs, whatever fails."""
    wrong_token = "654321:ANOTHER-secret-token"
    auth_server = smtp(
        RecordingHandler(),
        tls_context=cert.server_context(),
        require_starttls=True,
        authenticator=password_authenticator("watcher", "the-right-one"),
    )
    dead = free_port()
    cases: dict[str, tuple[object, type[Exception], str]] = {
        "bad token": (
            TelegramChannel(wrong_token, "42", base_url=telegram.base_url, min_interval=0),
            PermanentFailure,
            "telegram: HTTP 401: Unauthorized",
        ),
        "refused": (
            TelegramChannel(TOKEN, "42", base_url=f"http://{HOST}:{dead}", min_interval=0),
            TemporaryFailure,
            "telegram: connection failed (ClientConnectorError)",
        ),
        "timeout": (
            TelegramChannel(TOKEN, "42", base_url=telegram.base_url, min_interval=0, timeout=0.2),
            TemporaryFailure,
            "telegram: request timed out",
        ),
        "bad url": (
            TelegramChannel(TOKEN, "42", base_url="http://[::1", min_interval=0),
            PermanentFailure,
            "telegram: invalid base_url",
        ),
        "smtp password": (
            mailer(
                auth_server, security="starttls", ssl_context=cert.client_context(), username="w", password=PASSWORD
            ),
            PermanentFailure,
            "email: 535 5.7.8 Authentication credentials invalid",
        ),
        "smtp refused": (
            EmailChannel(HOST, dead, SENDER, [RECIPIENT], username="w", password=PASSWORD, timeout=2),
            TemporaryFailure,
            "email: connection failed (ConnectionRefusedError)",
        ),
    }
    secrets = (TOKEN, wrong_token, PASSWORD)

    async def scenario() -> None:
        # One relay for all: a row retried later stays pending, and its channel must still be known.
        relay = Relay(db, {f"ch-{case}": channel for case, (channel, _, _) in cases.items()})  # type: ignore[misc]
        for case, (channel, kind, text) in cases.items():
            telegram.delay = 0.5 if case == "timeout" else 0.0
            with pytest.raises(kind) as caught:
                await channel.send(alert())  # type: ignore[attr-defined]
            assert str(caught.value) == text, case
            _secret_free(caught.value, *secrets)
            assert not any(secret in repr(channel) for secret in secrets)
            # The same through the relay, so the error lands in the outbox and the log.
            name = f"ch-{case}"
            put(db, alert(), name, time.time())
            report = await relay.run_once()
            # A temporary failure is retried (never given up), a permanent one fails the row; the channels that
            # failed before rest, so this pass is about this case alone.
            expected = RelayReport(retried=1) if kind is TemporaryFailure else RelayReport(failed=1)
            assert report == expected, case
        for channel, _, _ in cases.values():
            if isinstance(channel, TelegramChannel):
                await channel.close()

    asyncio.run(scenario())
    errors = [row.last_error or "" for row in rows(db)]
    assert len(errors) == len(cases) and all(errors)
    assert not any(secret in error for error in errors for secret in secrets)


# --- outages: never give up, keep order, fold -------------------------------------------------------------------------


async def deliver_until(relay: Relay, done: Callable[[], bool], timeout: float = 15.0) -> None:
    """Run the relay's run_forever until `done()` holds (or `timeout`), then stop it."""
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run_forever(stop, interval=1.0))
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)  # and nothing more arrives after it
    stop.set()
    await asyncio.wait_for(task, 5)


#: Queued at the start of an outage, then during it: (position, level).
BEFORE = [("p1", "warn"), ("p2", "critical"), ("p3", "liquidatable"), ("p4", "warn")]
DURING = [("p5", "critical"), ("p6", "warn")]
#: Worst level first, then oldest first.
IN_ORDER = ["p3", "p2", "p5", "p1", "p4", "p6"]


def test_outage_ten_times_retry_max_loses_nothing_keeps_order_and_spaces_attempts(
    telegram: TelegramStandIn, db: Database
) -> None:
    """Telegram answers 502 for 2 s (10 x retry_max): every alert arrives once, in order; tries back off to the cap."""
    ids = {pos: update(pos, level, 1) for pos, level in BEFORE + DURING}
    levels = dict(BEFORE + DURING)

    async def scenario() -> float:
        channel = tg(telegram)
        relay = Relay(db, {"telegram": channel}, retry_initial=0.05, retry_max=0.2)
        telegram.down(2.0, status=502)
        outage_end = time.monotonic() + 2.0
        for pos, _ in BEFORE:
            put(db, ids[pos], "telegram", time.time(), pos, levels[pos])
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run_forever(stop, interval=1.0))
        for pause, (pos, _) in zip((0.5, 0.7), DURING, strict=True):
            await asyncio.sleep(pause)
            put(db, ids[pos], "telegram", time.time(), pos, levels[pos])
            relay.wake()  # as the daemon does after a commit: it must not make the resting channel try again
        deadline = time.monotonic() + 10
        while len(telegram.received) < len(ids) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.wait_for(task, 5)
        await channel.close()
        return outage_end

    outage_end = asyncio.run(scenario())
    assert refs([r.text for r in telegram.received]) == [ids[pos].alert_id for pos in IN_ORDER]
    statuses = [r.status for r in telegram.requests]
    failed = statuses.count(502)
    # One request per backoff step, not one per queued alert: about 2 s / 0.2 s plus the first short steps.
    assert 8 <= failed <= 14 and statuses == [502] * failed + [200] * len(ids), statuses
    times = [r.at for r in telegram.requests[: failed + 1]]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    expected = [min(0.2, 0.05 * 2**k) for k in range(len(gaps))]
    print("\nattempt gaps (s):", " ".join(f"{g:.3f}" for g in gaps))
    assert all(e - 0.01 <= g <= e + 0.25 for g, e in zip(gaps, expected, strict=True)), (gaps, expected)
    first_delivery = telegram.received[0].at
    print(f"first delivery {first_delivery - outage_end:.3f} s after the outage ended")
    assert first_delivery - outage_end <= 0.2 + 0.25
    assert depth(db) == 0 and {r.status for r in rows(db)} == {"delivered"}
    [head] = [r for r in rows(db) if r.position == "p3"]
    assert head.attempts == failed + 1


def test_refused_connections_fall_back_to_email_and_telegram_still_delivers_every_alert(
    telegram: TelegramStandIn, db: Database, smtp: Callable[..., Controller]
) -> None:
    """Telegram refuses connections for 1.5 s; after 3 failures e-mail gets a copy of each alert during the outage,
    and Telegram still delivers every one, once, in order, after it (a duplicate with the same ref, nothing lost)."""
    handler = RecordingHandler()
    server = smtp(handler)
    ids = {pos: update(pos, level, 1) for pos, level in BEFORE + DURING}
    levels = dict(BEFORE + DURING)

    async def scenario() -> float:
        channel = tg(telegram)
        relay = Relay(
            db,
            {"telegram": channel, "email": mailer(server)},
            fallback={"telegram": "email"},
            retry_initial=0.05,
            retry_max=0.2,
            fallback_after=3,
        )
        telegram.refuse(1.5)
        outage_end = time.monotonic() + 1.5
        for pos, _ in BEFORE:
            put(db, ids[pos], "telegram", time.time(), pos, levels[pos])
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run_forever(stop, interval=1.0))
        for pause, (pos, _) in zip((0.5, 0.3), DURING, strict=True):
            await asyncio.sleep(pause)
            put(db, ids[pos], "telegram", time.time(), pos, levels[pos])
            relay.wake()
        deadline = time.monotonic() + 10
        while len(telegram.received) < len(ids) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.wait_for(task, 5)
        await channel.close()
        return outage_end

    outage_end = asyncio.run(scenario())
    expected = [ids[pos].alert_id for pos in IN_ORDER]
    assert refs([r.text for r in telegram.received]) == expected
    mailed = [mail.message["X-Margin-Watcher-Ref"] for mail in handler.mails]
    assert sorted(mailed) == sorted(expected)  # one copy each
    assert all(mail.at < outage_end for mail in handler.mails)  # the copies went out during the outage
    assert all(r.status == "delivered" for r in rows(db)) and depth(db) == 0


FOLD_AT = float(calendar.timegm((2026, 12, 2, 12, 3, 0)))


def test_updates_queued_during_an_outage_fold_into_the_newest_naming_the_worst(
    telegram: TelegramStandIn, db: Database
) -> None:
    """warn, then liquidatable, then critical for one position while Telegram fails: one message, the newest state,
    with a line saying 2 updates were folded and the worst was LIQUIDATABLE; the older rows are superseded."""
    telegram.answer_next(502, count=2)
    clock = FakeClock(FOLD_AT - 0.3)
    warn = update("aave:alice", "warn", 1)
    liquidatable = update("aave:alice", "liquidatable", 2)
    critical = update("aave:alice", "critical", 3)

    async def scenario() -> list[RelayReport]:
        channel = tg(telegram)
        relay = Relay(db, {"telegram": channel}, retry_initial=1.0, retry_max=5.0, clock=clock)
        reports = []
        try:
            put(db, warn, "telegram", clock(), "aave:alice", "warn")
            reports.append(await relay.run_once())  # 502: the channel rests 1 s
            clock.advance(0.3)
            put(db, liquidatable, "telegram", clock(), "aave:alice", "liquidatable")
            clock.advance(0.3)
            put(db, critical, "telegram", clock(), "aave:alice", "critical")
            reports.append(await relay.run_once())  # still resting: nothing is tried
            clock.advance(0.4)
            reports.append(await relay.run_once())  # 502 again: 2 s
            clock.advance(2.0)
            reports.append(await relay.run_once())
        finally:
            await channel.close()
        return reports

    reports = asyncio.run(scenario())
    assert reports == [
        RelayReport(retried=1),
        RelayReport(),
        RelayReport(retried=1),
        RelayReport(delivered=1, superseded=2),
    ]
    [received] = telegram.received
    assert received.text == (
        f"{critical.text}\n\n"
        "(2 earlier updates for this position were folded while delivery was failing; "
        "the worst: LIQUIDATABLE at 2026-12-02 12:03 UTC)\n"
        f"ref: {critical.alert_id}"
    )
    assert [(r.alert_id, r.status) for r in rows(db)] == [
        (warn.alert_id, "superseded"),
        (liquidatable.alert_id, "superseded"),
        (critical.alert_id, "delivered"),
    ]
    assert depth(db) == 0


def test_after_an_outage_worse_levels_go_first_and_positions_keep_their_order(
    telegram: TelegramStandIn, db: Database
) -> None:
    """Queued during an outage: A warn, B critical, C warn, a degraded chain; after it: B, the chain, A, C."""
    telegram.answer_next(502)
    clock = FakeClock()
    plan = [("aave:a", "warn"), ("aave:b", "critical"), ("aave:c", "warn"), ("chain:base", "unknown")]
    messages = [update(pos, level, n) for n, (pos, level) in enumerate(plan)]

    async def scenario() -> list[RelayReport]:
        channel = tg(telegram)
        relay = Relay(db, {"telegram": channel}, retry_initial=1.0, clock=clock)
        try:
            for msg, (pos, level) in zip(messages, plan, strict=True):
                put(db, msg, "telegram", clock(), pos, level)
                clock.advance(0.1)
            first = await relay.run_once()
            clock.advance(1.0)
            return [first, await relay.run_once()]
        finally:
            await channel.close()

    reports = asyncio.run(scenario())
    assert reports == [RelayReport(retried=1), RelayReport(delivered=4)]
    assert [r.status for r in telegram.requests] == [502, 200, 200, 200, 200]
    order = [messages[i].alert_id for i in (1, 3, 0, 2)]
    assert refs([r.text for r in telegram.received]) == order
    assert all("folded" not in r.text for r in telegram.received)  # one row per position: nothing to fold


def test_with_no_outage_nothing_is_folded_and_one_positions_updates_keep_their_order(
    telegram: TelegramStandIn, db: Database
) -> None:
    """Three updates of A (warn, liquidatable, critical) and B critical queued at once, Telegram working: four messages,
    A's in the order they were raised, no folded line. A goes first (its worst is liquidatable, and its warn may not
    overtake it); then two criticals: B's, the older, before A's."""
    clock = FakeClock()
    plan = [("aave:a", "warn"), ("aave:b", "critical"), ("aave:a", "liquidatable"), ("aave:a", "critical")]
    messages = [update(pos, level, n) for n, (pos, level) in enumerate(plan)]
    for msg, (pos, level) in zip(messages, plan, strict=True):
        put(db, msg, "telegram", clock(), pos, level)
        clock.advance(0.1)

    async def scenario() -> RelayReport:
        channel = tg(telegram)
        try:
            return await Relay(db, {"telegram": channel}, clock=clock).run_once()
        finally:
            await channel.close()

    assert asyncio.run(scenario()) == RelayReport(delivered=4)
    assert refs([r.text for r in telegram.received]) == [messages[i].alert_id for i in (0, 2, 1, 3)]
    assert all("folded" not in r.text for r in telegram.received)
    assert [r.alert_id for r in due(db, clock())] == []


def test_outbox_migration_adds_position_and_severity(tmp_path: Path) -> None:
    """An outbox table from before positions: ensure_schema adds the columns; old rows are their own position."""
    path = tmp_path / "old.db"
    with Database(path) as old:
        old.execute(
            "CREATE TABLE outbox (id INTEGER PRIMARY KEY, alert_id TEXT NOT NULL, channel TEXT NOT NULL, subject TEXT"
            " NOT NULL, text TEXT NOT NULL, created_at FLOAT NOT NULL, status TEXT NOT NULL DEFAULT 'pending',"
            " attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at FLOAT, delivered_at FLOAT, last_error TEXT,"
            " fallback_of INTEGER)"
        )
        old.execute(
            "INSERT INTO outbox (alert_id, channel, subject, text, created_at, next_attempt_at)"
            " VALUES ('alice#1:critical', 'telegram', 's', 't', 1.0, 1.0)"
        )
        old.conn.commit()
    with Database(path) as db:
        ensure_schema(db)
        ensure_schema(db)  # twice is harmless
        [row] = due(db, 2.0)
        assert (row.position, row.severity, row.status) == ("alice#1:critical", 1, "pending")
        put(db, alert(2), "telegram", 3.0, "aave:alice", "liquidatable")
        assert [(r.alert_id, r.severity) for r in due(db, 5.0)] == [("alert-2", 5), ("alice#1:critical", 1)]


# --- deadlines: a hung service fails the attempt in time --------------------------------------------------------------


@pytest.mark.parametrize("fault", ["stall", "trickle"])
def test_a_stalled_or_trickling_telegram_fails_within_the_timeout(
    telegram: TelegramStandIn, db: Database, fault: str
) -> None:
    """Telegram accepts and never answers, or answers a byte every 0.05 s: each attempt fails in timeout + 0.5 s."""
    if fault == "stall":
        telegram.stall(count=2)
    else:
        telegram.trickle(count=2, every=0.05)
    row_id = put(db, alert(), "telegram", time.time())

    async def scenario() -> tuple[float, TemporaryFailure, float, RelayReport]:
        channel = tg(telegram, timeout=0.5)
        try:
            started = time.monotonic()
            with pytest.raises(TemporaryFailure) as caught:
                await channel.send(alert())
            direct = time.monotonic() - started
            started = time.monotonic()
            report = await Relay(db, {"telegram": channel}).run_once()
            return direct, caught.value, time.monotonic() - started, report
        finally:
            await channel.close()

    direct, error, relayed, report = asyncio.run(scenario())
    print(f"\n{fault}: attempt failed after {direct:.3f} s (direct), {relayed:.3f} s (relay)")
    assert str(error) == "telegram: request timed out"
    assert 0.45 <= direct <= 1.0 and 0.45 <= relayed <= 1.0
    assert report == RelayReport(retried=1)
    row = outbox.get(db, row_id)
    assert row is not None and (row.status, row.attempts, row.last_error) == (
        "pending",
        1,
        "telegram: request timed out",
    )
    assert telegram.received == [] and len(telegram.requests) == 2


def test_an_oversized_telegram_answer_is_a_temporary_failure(telegram: TelegramStandIn) -> None:
    """A 2 MB answer (Telegram's are a few kB) is not read past 1 MB: a TemporaryFailure, so the send is retried."""
    telegram.oversize(size=2_000_000)

    async def scenario() -> TemporaryFailure:
        channel = tg(telegram)
        try:
            with pytest.raises(TemporaryFailure) as caught:
                await channel.send(alert())
            await channel.send(alert(2))  # the next answer is a normal one
            return caught.value
        finally:
            await channel.close()

    assert str(asyncio.run(scenario())) == "telegram: answer too large"
    assert refs([r.text for r in telegram.received]) == ["alert-2"]


@pytest.mark.parametrize("mode", ["silent", "trickle"])
def test_a_stuck_smtp_server_fails_in_time_while_telegram_delivers(
    telegram: TelegramStandIn, db: Database, mode: str
) -> None:
    """An SMTP server that never greets, or greets a byte every 0.1 s: the attempt fails in timeout + 0.5 s, the row
    stays pending, and the Telegram copy of the alert is delivered meanwhile."""
    stuck = StuckSMTP(mode, every=0.1).start()
    try:
        put(db, alert(), "email", time.time())
        put(db, alert(), "telegram", time.time())

        async def scenario() -> tuple[float, TemporaryFailure, float, float, RelayReport]:
            mail = EmailChannel(HOST, stuck.port, SENDER, [RECIPIENT], security="none", timeout=0.5)
            channel = tg(telegram)
            try:
                started = time.monotonic()
                with pytest.raises(TemporaryFailure) as caught:
                    await mail.send(alert())
                direct = time.monotonic() - started
                started = time.monotonic()
                report = await Relay(db, {"email": mail, "telegram": channel}).run_once()
                relayed = time.monotonic() - started
                return direct, caught.value, relayed, telegram.received[0].at - started, report
            finally:
                await channel.close()

        direct, error, relayed, telegram_after, report = asyncio.run(scenario())
    finally:
        stuck.stop()
    print(
        f"\n{mode} SMTP: failed after {direct:.3f} s, relay pass {relayed:.3f} s, Telegram after {telegram_after:.3f} s"
    )
    assert str(error) == "email: timed out"
    assert 0.45 <= direct <= 1.0 and relayed <= 1.0
    assert telegram_after < 0.4
    assert report == RelayReport(delivered=1, retried=1)
    by_channel = {r.channel: r for r in rows(db)}
    assert (by_channel["email"].status, by_channel["email"].last_error) == ("pending", "email: timed out")
    assert by_channel["telegram"].status == "delivered"
    assert stuck.connections == 2


def test_a_delivery_the_database_cannot_record_is_not_sent_again(
    telegram: TelegramStandIn, db: Database, db_path: Path
) -> None:
    """Another writer holds the database while the relay delivers a row: the message is sent once, the mark
    waits (nothing else goes out on that channel meanwhile), the storage error is reported, and once the database
    takes writes the row reads delivered, still sent once."""
    import sqlite3

    db.conn.execute("PRAGMA busy_timeout = 50")
    put(db, alert(1), "telegram", time.time())
    reports: list[str | None] = []

    async def scenario() -> None:
        channel = tg(telegram)
        relay = Relay(db, {"telegram": channel})
        relay.on_storage = reports.append
        stop = asyncio.Event()
        holder = sqlite3.connect(db_path, isolation_level=None, timeout=0)
        holder.execute("BEGIN IMMEDIATE")  # the write lock: the relay reads its rows and sends, its mark cannot
        task = asyncio.create_task(relay.run_forever(stop, interval=0.1))
        await asyncio.sleep(1.5)
        assert len(telegram.received) == 1, "the same message went out again while its mark could not be written"
        assert outbox.get(db, 1).status == "pending"  # type: ignore[union-attr]
        holder.execute("ROLLBACK")
        holder.close()
        for _ in range(100):
            if outbox.get(db, 1).status == "delivered":  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.05)
        stop.set()
        await task
        await channel.close()

    asyncio.run(scenario())
    assert outbox.get(db, 1).status == "delivered"  # type: ignore[union-attr]
    assert len(telegram.received) == 1
    assert reports and reports[0] is not None and "locked" in reports[0] and reports[-1] is None, reports
