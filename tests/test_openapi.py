"""The OpenAPI document at /openapi.json against the app itself.

Schemathesis generates requests for every documented operation, valid and
invalid ones, plus methods the document does not list, and checks each
answer: no 5xx, a documented status code, a documented content type, a body
that matches the documented schema, the documented headers, 401 without the
secret where the document asks for one, and 405 with `Allow` for a method a
path does not have. It runs against a real app on a real Postgres database,
seeded so that generated calls also reach the deep paths: ready mailouts to
claim, test sends, a status with counts, valid unsubscribe tokens, and SNS
messages signed the way SNS signs them.

The database is made once for this module: Hypothesis runs many examples in
one test, and a database per example would be far too slow. What schemathesis
does not generate by itself (a body over 64 KiB, a database that is down, SES
refusing the account) is sent as explicit cases and checked the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from psycopg_pool import ConnectionPool
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from amazonsender import MAX_BODY_BYTES, create_app, db, store
from amazonsender.config import Settings
from amazonsender.ses import ACCOUNT, RECIPIENT, TRANSIENT, SendError
from amazonsender.links import UnsubscribeTokens
from tests.fakes import FakeTransport
from tests.support.db import add_mailout, add_subscribers, cloned_database
from tests.support.images import SAMPLES
from tests.support.settings import FROM_ADDRESS, SHARED_SECRET, UNSUBSCRIBE_SECRET, with_settings
from tests.support.sns_signing import OTHER_TOPIC_ARN, TOPIC_ARN, SnsSigner, ses_sample

DOCUMENT = Path(__file__).resolve().parent.parent / "amazonsender" / "web" / "openapi.json"
AUTH = {"Authorization": f"Bearer {SHARED_SECRET}"}
ACTIVE = ["ann@list.example", "bob@list.example", "cat@list.example"]
# Sends to this address fail, so summaries and test results show failures too.
FAILING = "cat@list.example"
# A certificate URL that passes every rule (the host of the topic's region) but cannot be fetched: 503.
UNREACHABLE_CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-00000000000000000000000000000000.pem"

# Every check that applies to a generated case.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    ignored_auth,
    unsupported_method,
]
# The ones that apply to a hand-made case (the last two need generation
# metadata); not_a_server_error only where no 5xx is expected.
RESPONSE_CHECKS = CHECKS[1:5]

# What the code can answer, per operation; the document lists exactly these.
EXPECTED_STATUSES = {
    # 502: Notion refused a press (docs/notion.md).
    ("post", "/send-mailout"): {200, 202, 400, 401, 404, 409, 413, 422, 502, 503},
    ("get", "/mailouts/{mailout_id}"): {200, 400, 401, 404, 503},
    ("post", "/mailouts/{mailout_id}/pause"): {200, 400, 401, 404, 409, 503},
    ("get", "/unsubscribe"): {200, 400},
    ("post", "/unsubscribe"): {200, 400, 413, 503},
    ("post", "/ses-events"): {200, 400, 403, 413, 503},
    ("get", "/healthz"): {200, 503},
    ("get", "/metrics"): {200},
    ("get", "/openapi.json"): {200},
    ("get", "/media/{name}"): {200, 304, 404, 503},
}


# --- the app under test: one database for the whole module -------------------------------


class Seeded:
    """The rows the module's database starts with."""

    def __init__(self, conn, settings: Settings):
        self.active_ids = add_subscribers(conn, ACTIVE, names={ACTIVE[0]: "Ann Example"})
        (self.bounced_id,) = add_subscribers(conn, ["gone@list.example"], status="bounced")
        # Ready mailouts: each can be claimed once; later requests for it get 409.
        self.ready = [add_mailout(conn, subject=f"Ready {n}") for n in range(8)]
        # Kept out of the generated requests, for the explicit cases.
        self.reserved = [add_mailout(conn, subject=f"Reserved {n}") for n in range(4)]
        self.draft = add_mailout(conn, status="draft")
        self.blank = add_mailout(conn, subject="   ")  # ready, but 422
        self.sent = add_mailout(conn, status="sent")
        self.paused = add_mailout(conn, status="paused")
        self.sending = add_mailout(conn, status="sending")
        conn.execute(
            "UPDATE mailouts SET started_at = now() - interval '5 minutes', sent_at = now(), recipients = 3"
            " WHERE id = %s",
            (self.sent,),
        )
        conn.execute(
            "UPDATE mailouts SET started_at = now(), heartbeat_at = now(), recipients = 3, error = %s WHERE id = %s",
            ("the bounce rate is over MAX_BOUNCE_RATE", self.paused),
        )
        conn.execute(
            "UPDATE mailouts SET started_at = now(), heartbeat_at = now(), recipients = 3 WHERE id = %s",
            (self.sending,),
        )
        for mailout_id, statuses in (
            (self.sent, ["sent", "delivered", "failed"]),
            (self.paused, ["sent", "skipped", "unknown"]),
            (self.sending, ["sent", "sending", "queued"]),
        ):
            for subscriber_id, email, status in zip(self.active_ids, ACTIVE, statuses):
                conn.execute(
                    "INSERT INTO send_logs (mailout_id, subscriber_id, email, status, ses_message_id, updated_at)"
                    " VALUES (%s, %s, %s, %s, %s, now())",
                    (mailout_id, subscriber_id, email, status, f"ses-{mailout_id}-{email}"),
                )
        self.mailouts = [*self.ready, self.draft, self.blank, self.sent, self.paused, self.sending]
        tokens = UnsubscribeTokens(settings.unsubscribe_secret)
        # Valid tokens: active subscribers, a bounced one, and one for no subscriber at all.
        self.tokens = [tokens.make(i) for i in [*self.active_ids, self.bounced_id, uuid.UUID(int=0)]]
        # Stored images, one of each type: GET /media/<sha256>.<ext>.
        self.media_names = []
        for content_type, data in sorted(SAMPLES.items()):
            sha256 = hashlib.sha256(data).hexdigest()
            store.save_media(conn, sha256, content_type, data)
            self.media_names.append(f"{sha256}.{content_type.removeprefix('image/').replace('jpeg', 'jpg')}")


@pytest.fixture(scope="module")
def module_database(pg_server, template_database):
    with cloned_database(pg_server, template_database, f"amazonsender_openapi_{os.getpid()}") as url:
        yield url


@pytest.fixture(scope="module")
def module_settings(module_database, tmp_path_factory) -> Settings:
    return Settings(
        database_url=module_database,
        executor_shared_secret=SHARED_SECRET,
        unsubscribe_secret=UNSUBSCRIBE_SECRET,
        app_base_url="https://news.example.test",
        aws_region="us-east-1",
        ses_from_email=FROM_ADDRESS,
        rate_limit_per_sec=2000.0,
        batch_size=5,
        test_emails=("editor@example.test", FAILING),
        sns_topic_arns=(TOPIC_ARN,),
        outbox_dir=str(tmp_path_factory.mktemp("outbox")),
    )


@pytest.fixture(scope="module")
def seeded(module_database, module_settings) -> Seeded:
    with psycopg.connect(module_database, autocommit=True, **db.connect_kwargs()) as conn:
        return Seeded(conn, module_settings)


@pytest.fixture(scope="module")
def signer(sns_key_and_certificate) -> SnsSigner:
    return SnsSigner(*sns_key_and_certificate)


@pytest.fixture(scope="module")
def module_pool(module_database, seeded):
    # All connections made up front: a pool that grows later draws from the
    # `random` module in its own thread while Hypothesis generates, which
    # Hypothesis reports as randomness inside a strategy.
    pool = ConnectionPool(module_database, min_size=6, max_size=6, kwargs=db.connect_kwargs(), open=True)
    pool.wait(timeout=10)
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def api_app(module_settings, module_pool, seeded, signer):
    transport = FakeTransport(failures={FAILING: SendError("MessageRejected: no", kind=RECIPIENT)})
    app = create_app(module_settings, pool=module_pool, transport=transport, fetch_url=signer.fetch)
    app.config["TESTING"] = True
    Steering.seeded, Steering.signer = seeded, signer
    APP_UNDER_TEST.app = app
    yield app
    Steering.seeded = Steering.signer = APP_UNDER_TEST.app = None
    join_background_sends(app)


# --- the schema, and steering generated data towards the seeded rows ----------------------


class Steering:
    """What the generation hooks steer towards; set by the `api_app` fixture
    before any case is generated."""

    seeded: Seeded | None = None
    signer: SnsSigner | None = None


class AppUnderTest:
    """The WSGI app schemathesis calls. The schema is loaded from the file
    when this module is imported (one test per operation), before the
    database and the app exist, so it gets this stand-in, which hands each
    request to the app that the `api_app` fixture made. (Loading it from a
    fixture with `schemathesis.pytest.from_fixture` would be the usual way,
    but schemathesis 4.32 reads `request.node._nodeid` there, which pytest 9
    no longer has.) That the app serves this same file at /openapi.json is
    checked below."""

    app = None

    def __call__(self, environ, start_response):
        assert self.app is not None, "the api_app fixture has not run"
        return self.app(environ, start_response)


APP_UNDER_TEST = AppUnderTest()
CONFIG = schemathesis.Config.from_dict(
    {
        # Sent on the operations that declare bearerAuth; `ignored_auth` also
        # tries each of them without it.
        "auth": {"openapi": {"bearerAuth": {"bearer": SHARED_SECRET}}},
        "generation": {"deterministic": True},
    }
)
schema = schemathesis.openapi.from_dict(json.loads(DOCUMENT.read_text()), config=CONFIG)
schema.app = APP_UNDER_TEST


def seeded_mailout_ids() -> st.SearchStrategy[str]:
    return st.sampled_from([str(m) for m in Steering.seeded.mailouts])


def seeded_tokens() -> st.SearchStrategy[str]:
    return st.sampled_from(Steering.seeded.tokens)


def notion_with(mailout_id: str) -> dict:
    return {
        "source": {"type": "automation", "attempt": 1},
        "data": {
            "object": "page",
            "id": "59833787-2cf9-4fdf-8782-e53db20768a5",
            "properties": {"mailout_id": {"type": "rich_text", "rich_text": [{"plain_text": mailout_id}]}},
        },
    }


def send_bodies() -> st.SearchStrategy[dict]:
    """Bodies for POST /send-mailout that name a seeded mailout."""
    ids = seeded_mailout_ids()
    recipients = st.lists(st.sampled_from(["Ann <ann@list.example>", "new@elsewhere.example", FAILING]), min_size=1)
    return st.one_of(
        ids.map(lambda m: {"mailout_id": m}),
        ids.map(lambda m: {"mailout_id": m, "wait": True}),
        ids.map(lambda m: {"mailout_id": m, "test": True}),
        st.builds(lambda m, to: {"mailout_id": m, "test": True, "to": to}, ids, recipients),
        ids.map(notion_with),
    )


def signed_envelopes() -> st.SearchStrategy[dict]:
    """SNS messages signed with the key the app's certificate fetcher serves:
    SES events about seeded addresses (a small set of MessageIds, so some
    arrive twice), confirmations, and a foreign topic (403)."""
    signer, seeded = Steering.signer, Steering.seeded
    samples = st.sampled_from(
        ["bounce_permanent_notification", "complaint_notification", "delivery_notification", "bounce_permanent_event"]
    )

    def notification(sample, address, number, version, topic):
        message = ses_sample(sample, address=address, ses_message_id=f"ses-{number}", mailout_id=seeded.sent)
        return signer.envelope(message, version=version, message_id=f"sns-{sample}-{number}", topic=topic)

    def confirmation(kind, number):
        return signer.envelope("You have chosen to subscribe.", kind=kind, message_id=f"sns-{kind}-{number}")

    numbers = st.integers(0, 3)
    return st.one_of(
        st.builds(
            notification,
            samples,
            st.sampled_from(ACTIVE),
            numbers,
            st.sampled_from(["1", "2"]),
            st.sampled_from([TOPIC_ARN, TOPIC_ARN, OTHER_TOPIC_ARN]),
        ),
        st.builds(confirmation, st.sampled_from(["SubscriptionConfirmation", "UnsubscribeConfirmation"]), numbers),
    )


@schema.hook
def flatmap_body(context, body):
    path = context.operation.path
    if path == "/send-mailout" and isinstance(body, dict):
        ids = seeded_mailout_ids()
        if "mailout_id" in body:
            keep_the_rest = ids.map(lambda m: {**body, "mailout_id": m})
        else:
            keep_the_rest = ids.map(lambda m: {**body, **notion_with(m)})
        variants = [st.just(body), keep_the_rest, send_bodies()]
        if "to" in body:
            # The generated "to" list in a test send that gets past the mailout id.
            variants.append(ids.map(lambda m: {**body, "mailout_id": m, "test": True}))
        return st.one_of(*variants)
    if path == "/ses-events":
        if isinstance(body, str):
            return st.one_of(st.just(body), signed_envelopes().map(json.dumps))
        return st.one_of(st.just(body), signed_envelopes())
    if path == "/unsubscribe" and isinstance(body, dict):
        return st.one_of(st.just(body), seeded_tokens().map(lambda t: {**body, "token": t}))
    return st.just(body)


@schema.hook
def flatmap_query(context, query):
    if context.operation.path == "/unsubscribe" and isinstance(query, dict):
        return st.one_of(st.just(query), seeded_tokens().map(lambda t: {**query, "token": t}))
    return st.just(query)


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    if context.operation.path == "/mailouts/{mailout_id}":
        return st.one_of(st.just(path_parameters), seeded_mailout_ids().map(lambda m: {"mailout_id": m}))
    if context.operation.path == "/media/{name}":
        return st.one_of(st.just(path_parameters), st.sampled_from(Steering.seeded.media_names).map(lambda n: {"name": n}))
    return st.just(path_parameters)


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
def test_the_app_answers_as_its_openapi_document_says(case, api_app):
    case.call_and_validate(checks=CHECKS)
    # A 202 leaves a send running; let it finish before the next case is
    # generated (building a message draws from `random`, which Hypothesis
    # would take for randomness inside its strategies).
    join_background_sends(api_app)


def join_background_sends(app) -> None:
    for thread in app.extensions.get("background_sends", []):
        thread.join(timeout=30)
        assert not thread.is_alive()


# --- what generation does not reach, checked against the document the same way ------------


def failing_account(kind: str) -> FakeTransport:
    """SES's GetAccount answering with an error of the given kind."""
    return FakeTransport(account_error=SendError("GetAccount failed", kind=kind))


def big(n=MAX_BODY_BYTES + 1) -> str:
    return "x" * n


def json_body(body) -> dict:
    return {"body": body}


def text_body(text: str) -> dict:
    return {"body": text, "media_type": "text/plain"}


def form_body(form: dict) -> dict:
    return {"body": form, "media_type": "application/x-www-form-urlencoded"}


def mailout_in_path(mailout_id) -> dict:
    return {"path_parameters": {"mailout_id": str(mailout_id)}}


def media_in_path(name: str, *, if_none_match: bool = False) -> dict:
    """An image's URL, asked for without the secret (it needs none)."""
    headers = {"If-None-Match": f'"{name.split(".")[0]}"'} if if_none_match else {}
    return {"path_parameters": {"name": name}, "headers": headers}


def explicit_cases(seeded: Seeded, signer: SnsSigner) -> list[tuple[str, str, str, dict, int]]:
    """(app, method, path, what to send, the status that must come back).
    The 503s are meant: SNS and callers are told to try again later."""
    reserved = [str(m) for m in seeded.reserved]
    unreachable = signer.envelope("x", cert_url=UNREACHABLE_CERT_URL)
    # These were 500s: a signed-looking message whose text cannot be encoded
    # to check its signature, test addresses that Postgres or a header cannot
    # take, and a secret that cannot be encoded to compare.
    not_text = {**signer.envelope("x"), "Message": "\ud800"}

    def test_to(*to):
        return json_body({"mailout_id": reserved[2], "test": True, "to": list(to)})

    return [
        ("module", "POST", "/send-mailout", json_body({"mailout_id": reserved[0], "wait": True}), 200),
        ("module", "POST", "/send-mailout", {**json_body({"mailout_id": reserved[1]}), "query": {"wait": "YES"}}, 200),
        ("module", "POST", "/send-mailout", json_body({"mailout_id": reserved[2], "test": True}), 200),
        ("module", "POST", "/send-mailout", {**json_body({"mailout_id": reserved[2]}), "query": {"test": "1"}}, 200),
        ("module", "POST", "/send-mailout", test_to('"Example, Ann" <ann@list.example>'), 200),
        ("module", "POST", "/send-mailout", {**json_body({"mailout_id": reserved[0]}), "query": {"wait": "1"}}, 409),
        ("module", "POST", "/send-mailout", json_body({"mailout_id": str(seeded.blank)}), 422),
        ("module", "POST", "/send-mailout", json_body({"mailout_id": reserved[0], "pad": big()}), 413),
        ("module", "POST", "/send-mailout", test_to("ann\x00@list.example"), 400),
        ("module", "POST", "/send-mailout", test_to("ann@list.example\r\nBcc: x@example.test"), 400),
        ("module", "POST", "/send-mailout", test_to("\ud800@list.example"), 400),
        ("module", "POST", "/send-mailout", test_to("ann@list.example, bob@list.example"), 400),
        ("module", "POST", "/send-mailout", {**test_to(), "headers": {}}, 401),  # no secret
        ("module", "POST", "/send-mailout", {**json_body({"auth_token": "\ud800"}), "headers": {}}, 401),
        ("module", "GET", "/mailouts/{mailout_id}", mailout_in_path(reserved[0]), 200),
        ("module", "GET", "/mailouts/{mailout_id}", mailout_in_path(seeded.sending), 200),
        ("module", "POST", "/ses-events", text_body(big()), 413),
        ("module", "POST", "/ses-events", text_body(json.dumps(unreachable)), 503),
        ("module", "POST", "/ses-events", text_body(json.dumps(not_text)), 400),
        ("module", "POST", "/unsubscribe", form_body({"token": big()}), 413),
        ("module", "GET", "/media/{name}", media_in_path(seeded.media_names[0]), 200),
        ("module", "GET", "/media/{name}", media_in_path(seeded.media_names[1], if_none_match=True), 304),
        ("module", "GET", "/media/{name}", media_in_path("0" * 64 + ".png"), 404),
        # reserved[3] stays ready: these are refused before the claim.
        ("account-refused", "POST", "/send-mailout", json_body({"mailout_id": reserved[3]}), 409),
        ("ses-unreachable", "POST", "/send-mailout", json_body({"mailout_id": reserved[3]}), 503),
        ("no-database", "POST", "/send-mailout", json_body({"mailout_id": reserved[3]}), 503),
        ("no-database", "GET", "/mailouts/{mailout_id}", mailout_in_path(reserved[0]), 503),
        ("no-database", "GET", "/healthz", {}, 503),
        ("no-database", "GET", "/media/{name}", media_in_path(seeded.media_names[0]), 503),
        ("no-database", "POST", "/unsubscribe", {"query": {"token": seeded.tokens[0]}}, 503),
        ("no-sns-topics", "POST", "/ses-events", text_body("{}"), 403),
    ]


def test_what_generation_does_not_reach_matches_the_document(api_app, module_settings, module_pool, seeded, signer):
    apps = {
        "module": api_app,
        "account-refused": create_app(module_settings, pool=module_pool, transport=failing_account(ACCOUNT)),
        "ses-unreachable": create_app(module_settings, pool=module_pool, transport=failing_account(TRANSIENT)),
        # A pool that was never opened refuses every checkout, as one whose database is down does.
        "no-database": create_app(
            module_settings,
            pool=ConnectionPool(module_settings.database_url, open=False),
            transport=FakeTransport(),
        ),
        "no-sns-topics": create_app(
            with_settings(module_settings, sns_topic_arns=()),
            pool=module_pool,
            transport=FakeTransport(),
        ),
    }
    for app_name, method, path, kwargs, expected in explicit_cases(seeded, signer):
        case = schema[path][method].Case(**{"headers": dict(AUTH), **kwargs})
        response = case.call(app=apps[app_name])
        join_background_sends(apps[app_name])
        assert response.status_code == expected, (app_name, method, path, response.text[:300])
        checks = RESPONSE_CHECKS if expected >= 500 else [not_a_server_error, *RESPONSE_CHECKS]
        case.validate_response(response, checks=checks)


def test_a_method_a_path_does_not_have_is_405_with_allow(client):
    response = client.put("/send-mailout")
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}
    assert "error" in response.json
    page = client.delete("/unsubscribe")
    assert page.status_code == 405 and page.mimetype == "text/html"
    assert set(page.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS", "POST"}


# --- the document itself --------------------------------------------------------------------


@pytest.fixture
def document() -> dict:
    return json.loads(DOCUMENT.read_text())


def flask_routes(app) -> set[tuple[str, str]]:
    """(method, OpenAPI path) for every route the app registers."""
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((method.lower(), path))
    return routes


def documented_operations(document: dict) -> set[tuple[str, str]]:
    methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    return {(method, path) for path, item in document["paths"].items() for method in item if method in methods}


def test_openapi_json_is_served_and_is_the_file(client, document):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.json == document
    assert document["openapi"] == "3.0.3"


def test_every_route_is_documented_and_nothing_else(app, document):
    assert documented_operations(document) == flask_routes(app)
    assert set(EXPECTED_STATUSES) == flask_routes(app)


@pytest.mark.parametrize("operation", sorted(EXPECTED_STATUSES), ids=lambda op: f"{op[0].upper()} {op[1]}")
def test_each_operation_documents_the_statuses_the_code_returns(document, operation):
    method, path = operation
    documented = {int(code) for code in document["paths"][path][method]["responses"]}
    assert documented == EXPECTED_STATUSES[operation]


def test_every_reference_resolves_and_every_operation_is_complete(document):
    # Against the OpenAPI 3.0 meta-schema.
    schemathesis.openapi.from_dict(document).validate()
    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                target = document
                for part in node["$ref"].removeprefix("#/").split("/"):
                    target = target[part]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    operation_ids = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            operation_ids.append(operation["operationId"])
            assert operation.get("summary"), (method, path)
            for code, response in operation["responses"].items():
                assert response.get("description"), (method, path, code)
                # A 304 has no body (RFC 9110, 15.4.5).
                assert response.get("content") or code == "304", (method, path, code)
    assert len(operation_ids) == len(set(operation_ids))
