"""The one door to NATS JetStream (nats-py): nowhere else imports ``nats``.

A small synchronous facade over nats-py's asyncio client. Why sync: the rest
of cmux is threads and blocking calls (the router, the merger, the watcher
blocking in the kernel), and the node daemon (cmux/cluster/node.py) is the
same shape: one thread waits on inotify for spooled mail, one waits on a pull
fetch, one beats the heart. Each of them calls this module like any other
gateway, and gets typed errors (cmux/errors.py) instead of nats-py's. The
asyncio loop lives in one daemon thread owned by :class:`Nats`; every call
is a coroutine handed to it (``run_coroutine_threadsafe``) and waited for
with a deadline, so a call never hangs past its timeout even while the
connection is down and nats-py is reconnecting underneath.

What it offers, and only that: connect (token, user/password, a creds file,
TLS when a CA or a client certificate is given), make sure a stream or a KV
bucket exists, publish with a message id and wait for the PubAck (so
"published" means stored by JetStream; a repeat of the id within the
stream's duplicate window is reported as ``duplicate``), pull from a durable
consumer with explicit acks (``Delivery.ack`` waits for the server's
confirmation), and KV put/get/keys/watch.

Invariants: a publish returns only after JetStream stored the message (or
raises); an ack returns only after the server confirmed it (or raises: then
the message is delivered again after the consumer's ack_wait); nothing is
acked here on the caller's behalf.
"""

from __future__ import annotations

import asyncio
import queue
import ssl
import threading
from collections.abc import Coroutine, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.js import api

from cmux.errors import ClusterError, NatsTimeout, NatsUnavailable

T = TypeVar("T")

MSG_ID = api.Header.MSG_ID  # "Nats-Msg-Id"
DEFAULT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Settings:
    """How to reach NATS: the [cluster] section's connection keys."""

    url: str = "nats://127.0.0.1:4222"  # several, comma-separated: a NATS cluster
    token: str | None = None
    user: str | None = None
    password: str | None = None
    creds: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    name: str = "cmux"

    def tls(self) -> ssl.SSLContext | None:
        if not (self.tls_ca or self.tls_cert):
            return None
        ctx = ssl.create_default_context(cafile=self.tls_ca)
        if self.tls_cert:
            ctx.load_cert_chain(self.tls_cert, self.tls_key)
        return ctx


@dataclass(frozen=True)
class PubAck:
    stream: str
    seq: int
    duplicate: bool


@dataclass(frozen=True)
class KvEntry:
    key: str
    value: bytes | None  # None: deleted or purged
    revision: int


def _translate(exc: BaseException, what: str) -> ClusterError:
    """nats-py's errors as cmux's, each with what to do."""
    if isinstance(exc, (asyncio.TimeoutError, nats.errors.TimeoutError, FutureTimeout)):
        return NatsTimeout(
            f"NATS did not answer in time ({what})",
            "is nats-server running with JetStream (-js) and reachable? `cmux doctor` checks it",
        )
    if isinstance(
        exc,
        (
            nats.errors.NoServersError,
            nats.errors.ConnectionClosedError,
            nats.errors.StaleConnectionError,
            nats.errors.ConnectionReconnectingError,
            nats.errors.OutboundBufferLimitError,
            nats.js.errors.NoStreamResponseError,
            ConnectionError,
            OSError,
        ),
    ):
        return NatsUnavailable(
            f"NATS is not reachable ({what}): {exc or type(exc).__name__}",
            "start nats-server with JetStream (`nats-server -js`), or fix [cluster] nats "
            "in cmux.toml",
        )
    if isinstance(exc, nats.errors.AuthorizationError):
        return NatsUnavailable(
            f"NATS refused the credentials ({what})",
            "check [cluster] token / user / password / creds in cmux.toml",
        )
    return ClusterError(f"NATS refused {what}: {exc or type(exc).__name__}")


class Delivery:
    """One message pulled from a durable consumer: ack it, or leave it for redelivery."""

    def __init__(self, conn: Nats, msg: Any) -> None:
        self._conn = conn
        self._msg = msg
        self.subject: str = msg.subject
        self.data: bytes = msg.data
        self.headers: dict[str, str] = dict(msg.headers or {})
        meta = msg.metadata
        self.num_delivered: int = meta.num_delivered
        self.stream_seq: int = meta.sequence.stream
        self.consumer_seq: int = meta.sequence.consumer  # one more per delivery, redeliveries too

    @property
    def msg_id(self) -> str | None:
        return self.headers.get(MSG_ID)

    def ack(self, *, wait: bool = True, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Acknowledge; with ``wait``, until the server confirms it (a double
        ack). Without, the ack is sent (``Nats.flush`` pushes it out) and a
        lost one only means one more delivery, which the store drops."""
        if wait:
            self._conn._call(self._msg.ack_sync(timeout=timeout), timeout, "an ack")
        else:
            self._conn._call(self._msg.ack(), timeout, "an ack")

    def nak(self, delay: float | None = None) -> None:
        """Ask for redelivery (after ``delay`` seconds)."""
        self._conn._call(self._msg.nak(delay=delay), DEFAULT_TIMEOUT, "a nak")

    def term(self) -> None:
        """Never deliver this one again (it cannot be processed)."""
        self._conn._call(self._msg.term(), DEFAULT_TIMEOUT, "a term")


class Consumer:
    """A durable pull consumer bound to one stream and filter subject."""

    def __init__(self, conn: Nats, sub: Any) -> None:
        self._conn = conn
        self._sub = sub

    def fetch(self, batch: int = 1, timeout: float = 1.0) -> list[Delivery]:
        """Up to ``batch`` messages; [] when none came within ``timeout``."""
        try:
            msgs = self._conn._call(
                self._sub.fetch(batch, timeout=timeout), timeout + DEFAULT_TIMEOUT, "a fetch"
            )
        except NatsTimeout:
            return []
        return [Delivery(self._conn, m) for m in msgs]

    def pending(self) -> tuple[int, int]:
        """(messages not delivered yet, delivered but not acked)."""
        info = self._conn._call(self._sub.consumer_info(), DEFAULT_TIMEOUT, "consumer info")
        return int(info.num_pending or 0), int(info.num_ack_pending or 0)

    def delivered(self) -> int:
        """The number (consumer sequence) of the last delivery the server made."""
        info = self._conn._call(self._sub.consumer_info(), DEFAULT_TIMEOUT, "consumer info")
        return int(getattr(info.delivered, "consumer_seq", 0) or 0)


class Watch:
    """Updates of a KV bucket, as :class:`KvEntry`; ``next`` blocks up to a timeout."""

    def __init__(self, conn: Nats) -> None:
        self._conn = conn
        self.queue: queue.Queue[KvEntry] = queue.Queue()
        self._watcher: Any = None
        self._task: Any = None  # the pump, kept so it is not collected

    def next(self, timeout: float) -> KvEntry | None:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def stop(self) -> None:
        if self._watcher is not None:
            try:
                self._conn._call(self._watcher.stop(), DEFAULT_TIMEOUT, "a watch stop")
            except ClusterError:
                pass


class Subscription(Watch):
    """A core subscription (:meth:`Nats.subscribe`): ``next`` and ``stop`` as a watch's."""

    def stop(self) -> None:
        if self._watcher is not None:
            try:
                self._conn._call(self._watcher.unsubscribe(), DEFAULT_TIMEOUT, "an unsubscribe")
            except ClusterError:
                pass


class Nats:
    """One connection to NATS, and its asyncio loop in a thread of its own."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="nats-loop", daemon=True
        )
        running = threading.Event()
        self._loop.call_soon(running.set)  # before the thread starts: nothing else runs it
        self._thread.start()
        running.wait(DEFAULT_TIMEOUT)  # else a first call sees a loop "not running" yet
        self._nc: Any = None
        self._js: Any = None
        self._kv: dict[str, Any] = {}

    @classmethod
    def connect(cls, settings: Settings, *, timeout: float = DEFAULT_TIMEOUT) -> Nats:
        """Connect (raises NatsUnavailable); reconnects by itself afterwards, forever."""
        conn = cls(settings)
        try:
            conn._call(conn._connect(timeout), timeout + 1.0, f"a connection to {settings.url}")
        except BaseException:
            conn._stop_loop()
            raise
        return conn

    async def _connect(self, timeout: float) -> None:
        s = self.settings

        errors: list[Exception] = []

        async def keep(exc: Exception) -> None:  # instead of nats-py's log line per attempt
            if len(errors) < 16:
                errors.append(exc)

        opts: dict[str, Any] = {
            "servers": [u.strip() for u in s.url.split(",") if u.strip()],  # several: a cluster
            # In the order given: this host's own server first (cmux/remote/there.py
            # puts it there), the others only while it is away.
            "dont_randomize": True,
            "name": s.name,
            "connect_timeout": max(1, int(timeout)),
            "allow_reconnect": True,
            # A first connection tries twice and says why it failed; once
            # connected, it reconnects forever (set below).
            "max_reconnect_attempts": 1,
            "reconnect_time_wait": 0.2,
            "error_cb": keep,
            "ping_interval": 5,
            "max_outstanding_pings": 3,
        }
        if s.token:
            opts["token"] = s.token
        if s.user:
            opts["user"], opts["password"] = s.user, s.password
        if s.creds:
            opts["user_credentials"] = s.creds
        tls = s.tls()
        if tls is not None:
            opts["tls"] = tls
        try:
            self._nc = await nats.connect(**opts)
        except Exception as exc:
            cause = next((e for e in errors if isinstance(e, nats.errors.AuthorizationError)), exc)
            raise _translate(cause, f"a connection to {s.url}") from exc
        self._nc.options["max_reconnect_attempts"] = -1  # read at each reconnect
        errors.clear()
        self._js = self._nc.jetstream(timeout=timeout)

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float, what: str) -> T:
        if not self._loop.is_running():
            coro.close()
            raise NatsUnavailable(f"the NATS connection is closed ({what})")
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(timeout)
        except FutureTimeout as exc:
            fut.cancel()
            raise _translate(exc, what) from None
        except ClusterError:
            raise
        except Exception as exc:
            raise _translate(exc, what) from exc

    def ack_all(self, deliveries: Sequence[Delivery], timeout: float = DEFAULT_TIMEOUT) -> None:
        """Ack each (sent, not waited for one by one), then flush: on return the
        server has them all."""

        async def run() -> None:
            for d in deliveries:
                await d._msg.ack()
            await self._nc.flush(timeout=max(1, int(timeout)))

        self._call(run(), timeout + 1.0, f"{len(deliveries)} acks")

    def flush(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Everything sent so far has reached the server (a PING/PONG)."""
        self._call(self._nc.flush(timeout=max(1, int(timeout))), timeout + 1.0, "a flush")

    @property
    def reconnects(self) -> int:
        """How many times the connection was made again (a server restart, a cut)."""
        return 0 if self._nc is None else int(self._nc.stats.get("reconnects", 0))

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    def close(self) -> None:
        if self._nc is not None:
            try:
                self._call(self._nc.close(), DEFAULT_TIMEOUT, "closing")
            except ClusterError:
                pass
        self._stop_loop()

    def _stop_loop(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(DEFAULT_TIMEOUT)

    # -- streams and buckets -----------------------------------------------------------

    def ensure_stream(
        self,
        name: str,
        subjects: list[str],
        *,
        duplicate_window: float = 600.0,
        max_age: float = 0.0,
        max_msgs: int = -1,
        replicas: int = 1,
    ) -> None:
        """The file-backed stream ``name`` over ``subjects`` (made, or kept),
        with these limits (``max_age`` seconds, 0: no limit; ``max_msgs``, -1:
        no limit; the oldest messages go first), made in ``replicas`` copies
        on as many servers of the cluster. A stream made before with other
        limits is updated to these (its number of copies is kept)."""

        async def run() -> None:
            cfg = api.StreamConfig(
                name=name,
                subjects=subjects,
                storage=api.StorageType.FILE,
                duplicate_window=duplicate_window,
                max_age=max_age,
                max_msgs=max_msgs,
                num_replicas=replicas,
            )
            try:
                info = await self._js.stream_info(name)
            except nats.js.errors.NotFoundError:
                await self._js.add_stream(cfg)
                return
            have = info.config
            if (
                float(have.max_age or 0) != float(max_age)
                or int(have.max_msgs if have.max_msgs is not None else -1) != max_msgs
                or float(have.duplicate_window or 0) != float(duplicate_window)
            ):
                have.max_age, have.max_msgs = max_age, max_msgs
                have.duplicate_window = duplicate_window
                await self._js.update_stream(have)

        self._call(run(), DEFAULT_TIMEOUT, f"the stream {name}")

    def ensure_kv(self, bucket: str, *, history: int = 1, replicas: int = 1) -> None:
        """The KV bucket (made in ``replicas`` copies, or kept as it is)."""

        async def run() -> None:
            try:
                self._kv[bucket] = await self._js.key_value(bucket)
            except nats.js.errors.BucketNotFoundError:
                self._kv[bucket] = await self._js.create_key_value(
                    api.KeyValueConfig(bucket=bucket, history=history, replicas=replicas)
                )

        self._call(run(), DEFAULT_TIMEOUT, f"the KV bucket {bucket}")

    # -- publish ---------------------------------------------------------------------------

    def publish(
        self,
        subject: str,
        payload: bytes,
        *,
        msg_id: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> PubAck:
        """Publish and wait for JetStream's PubAck (``duplicate``: the id was seen)."""
        return self.publish_many([(subject, payload, msg_id)], timeout=timeout)[0]

    def publish_many(
        self,
        items: Sequence[tuple[str, bytes, str | None]],
        *,
        lanes: Sequence[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> list[PubAck]:
        """Publish each and wait for every PubAck; raises when one is missing.

        Within a lane (``lanes[i]`` names item i's; None: all in one lane)
        one request at a time, in order, and nothing after a missing PubAck
        is sent. One at a time on purpose: with several requests of a lane
        out, a connection lost under them can lose an earlier one while
        nats-py's reconnect buffer delivers a later one, and the stream would
        hold them out of order. Different lanes are in flight side by side
        (a lane per sender: only each sender's order must hold), so a lane
        that fails leaves the others' order intact; what another lane had
        stored when this raises is published again by the caller, which the
        ``Nats-Msg-Id`` makes a duplicate JetStream drops."""
        names = list(lanes) if lanes is not None else [""] * len(items)
        if len(names) != len(items):
            raise ValueError("one lane per item")
        by_lane: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            by_lane.setdefault(name, []).append(i)

        async def one(subject: str, payload: bytes, msg_id: str | None) -> PubAck:
            headers = {MSG_ID: msg_id} if msg_id else None
            ack = await self._js.publish(subject, payload, timeout=timeout, headers=headers)
            return PubAck(ack.stream, ack.seq, bool(ack.duplicate))

        async def lane(indexes: list[int], out: list[PubAck | None]) -> None:
            for i in indexes:
                out[i] = await one(*items[i])

        async def run() -> list[PubAck]:
            out: list[PubAck | None] = [None] * len(items)
            results = await asyncio.gather(
                *(lane(ix, out) for ix in by_lane.values()), return_exceptions=True
            )
            for r in results:
                if isinstance(r, BaseException):
                    raise r
            return [a for a in out if a is not None]

        longest = max((len(ix) for ix in by_lane.values()), default=0)
        return self._call(run(), timeout * longest + 1.0, f"a publish of {len(items)}")

    # -- consume ---------------------------------------------------------------------------

    def pull(
        self,
        stream: str,
        durable: str,
        subject: str,
        *,
        ack_wait: float = 30.0,
        max_ack_pending: int = 1000,
    ) -> Consumer:
        """The durable pull consumer ``durable`` (made if missing, kept as it is
        if there), explicit acks: a message not acked within ``ack_wait`` is
        delivered again; at most ``max_ack_pending`` are out unacked."""

        async def run() -> Any:
            cfg = api.ConsumerConfig(
                durable_name=durable,
                ack_policy=api.AckPolicy.EXPLICIT,
                deliver_policy=api.DeliverPolicy.ALL,
                ack_wait=ack_wait,
                max_deliver=-1,
                max_ack_pending=max_ack_pending,
                filter_subject=subject,
            )
            return await self._js.pull_subscribe(
                subject, durable=durable, stream=stream, config=cfg
            )

        return Consumer(self, self._call(run(), DEFAULT_TIMEOUT, f"the consumer {durable}"))

    def tail(
        self, stream: str, subject: str, *, idle: float = 60.0, start_seq: int | None = None
    ) -> Consumer:
        """An ephemeral pull consumer of what is published on ``subject`` from
        now on (or from stream sequence ``start_seq``: where a look at the
        history ended), no acks (a reader's view: ``cmux events -f``). The
        server forgets it ``idle`` s after its last fetch."""

        async def run() -> Any:
            cfg = api.ConsumerConfig(
                ack_policy=api.AckPolicy.NONE,
                deliver_policy=api.DeliverPolicy.NEW,
                filter_subject=subject,
                inactive_threshold=idle,
            )
            if start_seq is not None:
                cfg.deliver_policy = api.DeliverPolicy.BY_START_SEQUENCE
                cfg.opt_start_seq = start_seq
            return await self._js.pull_subscribe(subject, stream=stream, config=cfg)

        return Consumer(self, self._call(run(), DEFAULT_TIMEOUT, f"a tail of {stream}"))

    def recent(self, stream: str, subject: str, last: int = 0) -> tuple[list[bytes], int]:
        """The payloads of the newest ``last`` messages of ``stream`` (0: all
        it keeps) that match ``subject``, oldest first: a reader's look at
        the history (``cmux events``), through an ephemeral consumer, no acks;
        and the stream sequence after them (a :meth:`tail` from there misses
        nothing)."""

        async def run() -> tuple[list[bytes], int]:
            info = await self._js.stream_info(stream)
            end = int(info.state.last_seq or 0)
            if not end or not info.state.messages:
                return [], end + 1
            start = max(int(info.state.first_seq or 1), end - last + 1 if last else 1)
            cfg = api.ConsumerConfig(
                ack_policy=api.AckPolicy.NONE,
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=start,
                filter_subject=subject,
                inactive_threshold=10.0,
            )
            sub = await self._js.pull_subscribe(subject, stream=stream, config=cfg)
            out: list[bytes] = []
            try:
                while True:
                    try:
                        msgs = await sub.fetch(512, timeout=0.5)
                    except nats.errors.TimeoutError:
                        break
                    out += [bytes(m.data) for m in msgs]
                    if not msgs or msgs[-1].metadata.sequence.stream >= end:
                        break
            finally:
                await sub.unsubscribe()
            return out, end + 1

        return self._call(run(), 3 * DEFAULT_TIMEOUT, f"the history of {stream}")

    def subscribe(self, subject: str) -> Watch:
        """What is published on ``subject`` from now on, as :class:`KvEntry`
        (subject, payload): a core NATS subscription, nothing kept on the
        server and nothing acked (a live view; what is published while the
        connection is down is not seen)."""
        w = Subscription(self)

        async def run() -> Any:
            async def got(msg: Any) -> None:
                w.queue.put(KvEntry(str(msg.subject), bytes(msg.data), 0))

            return await self._nc.subscribe(subject, cb=got)

        w._watcher = self._call(run(), DEFAULT_TIMEOUT, f"a subscription to {subject}")
        return w

    # -- key-value -------------------------------------------------------------------------

    def _bucket(self, bucket: str) -> Any | None:
        """The bucket, looked up (never made: only :meth:`ensure_kv` makes one,
        in the copies the node is told); None when there is none yet."""
        if bucket not in self._kv:

            async def run() -> Any | None:
                try:
                    return await self._js.key_value(bucket)
                except nats.js.errors.BucketNotFoundError:
                    return None

            found = self._call(run(), DEFAULT_TIMEOUT, f"the KV bucket {bucket}")
            if found is None:
                return None
            self._kv[bucket] = found
        return self._kv[bucket]

    def _existing(self, bucket: str) -> Any:
        kv = self._bucket(bucket)
        if kv is None:
            raise ClusterError(
                f"NATS has no KV bucket {bucket} yet",
                "the node daemon (`cmux node`, started by `cmux start`) makes it",
            )
        return kv

    def kv_put(self, bucket: str, key: str, value: bytes) -> int:
        kv = self._existing(bucket)
        return int(self._call(kv.put(key, value), DEFAULT_TIMEOUT, f"a put into {bucket}"))

    def kv_get(self, bucket: str, key: str) -> bytes | None:
        kv = self._bucket(bucket)
        if kv is None:
            return None

        async def run() -> bytes | None:
            try:
                entry = await kv.get(key)
            except nats.js.errors.KeyNotFoundError:
                return None
            return None if entry.value is None else bytes(entry.value)

        return self._call(run(), DEFAULT_TIMEOUT, f"a get from {bucket}")

    def kv_delete(self, bucket: str, key: str) -> None:
        kv = self._existing(bucket)
        self._call(kv.delete(key), DEFAULT_TIMEOUT, f"a delete in {bucket}")

    def kv_items(self, bucket: str) -> dict[str, bytes]:
        """Every live key and its value."""
        kv = self._bucket(bucket)
        if kv is None:
            return {}

        async def run() -> dict[str, bytes]:
            try:
                keys = await kv.keys()
            except nats.js.errors.NoKeysError:
                return {}
            out: dict[str, bytes] = {}
            for k in keys:
                try:
                    e = await kv.get(k)
                except nats.js.errors.KeyNotFoundError:
                    continue
                if e.value is not None:
                    out[k] = bytes(e.value)
            return out

        return self._call(run(), DEFAULT_TIMEOUT, f"the keys of {bucket}")

    def kv_watch(self, bucket: str, keys: str = ">") -> Watch:
        """The current value of each of ``keys``, then every change of them."""
        kv = self._existing(bucket)
        w = Watch(self)

        async def pump(watcher: Any) -> None:
            async for entry in watcher:
                if entry is None:
                    continue  # the end of the initial values
                value = None if entry.operation in ("DEL", "PURGE") else bytes(entry.value or b"")
                w.queue.put(KvEntry(entry.key, value, int(entry.revision or 0)))

        async def run() -> Any:
            watcher = await kv.watch(keys)
            w._task = asyncio.ensure_future(pump(watcher))
            return watcher

        w._watcher = self._call(run(), DEFAULT_TIMEOUT, f"a watch of {bucket}")
        return w
