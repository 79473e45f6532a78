#!/usr/bin/env python3
"""Drive the Genesys Cloud simulator with the official Genesys Python SDK.

usage: sdk_client.py BASE_URL CLIENT_ID CLIENT_SECRET

Proves that the simulator's replies deserialize cleanly into the SDK's own
models (Channel, ChannelEntityListing, ChannelTopicEntityListing,
QueueEntityListing, UserEntityListing) and that its WebSocket speaks the
notification protocol. Prints one line per step; exits 0 on success,
1 on a failed check, 3 when the SDK or websocket-client is missing.

How the SDK finds the login URL: ApiClient.get_conf_url("login", host)
replaces "//api." with "//login." in the API host
(https://api.mypurecloud.com -> https://login.mypurecloud.com). A host
without "api." (http://127.0.0.1:PORT) is used unchanged, so one simulator
port serves both /oauth/token and /api/v2.
"""

import atexit
import datetime
import json
import os
import shutil
import sys
import tempfile
import urllib.request

# At import the SDK reads ~/.genesyscloudpython/config (which may set another
# host or a gateway) and watches that directory, or the whole home directory
# recursively when it does not exist. Give it an empty private home instead;
# site-packages paths were fixed at interpreter start-up, so --user installs
# still import.
_sdk_home = tempfile.mkdtemp(prefix="genesys-sdk-home-")
os.makedirs(os.path.join(_sdk_home, ".genesyscloudpython"))
os.environ["HOME"] = _sdk_home
atexit.register(shutil.rmtree, _sdk_home, True)

try:
    import PureCloudPlatformClientV2 as gc
    from PureCloudPlatformClientV2.rest import ApiException
    import websocket
except ImportError as missing:
    print(
        f"missing Python package ({missing}); install with: "
        "python3 -m pip install -r tests/sdk/requirements.txt",
        file=sys.stderr,
    )
    sys.exit(3)

# The SDK marks enum values it does not know with this string instead of
# failing: finding it anywhere means a reply did not match the SDK's model.
OUTDATED = "outdated_sdk_version"


class CheckFailed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


def step(name, detail=""):
    print(f"ok: {name}{': ' + detail if detail else ''}", flush=True)


def assert_model_clean(model, what):
    """Every field of an SDK model parsed: no unknown enum values."""
    text = json.dumps(model.to_dict(), default=str)
    check(OUTDATED not in text, f"{what} has a value the SDK does not know: {text[:500]}")


def control(base, path, body):
    """The simulator's own /sim API (not part of Genesys)."""
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def next_message(ws):
    """The next text frame that is not a heartbeat, as JSON."""
    while True:
        message = json.loads(ws.recv())
        if message.get("eventBody", {}).get("message") != "WebSocket Heartbeat":
            return message


def main(base, client_id, secret):
    # --- login -------------------------------------------------------------
    client = gc.api_client.ApiClient(host=base)
    # A ~/.genesyscloudpython/config could configure a gateway: ignore it.
    client.gateway_configuration = None
    login_url = client.get_conf_url("login", base)
    check(login_url == base, f"SDK login URL {login_url} != {base}")
    client.get_client_credentials_token(client_id, secret)
    check(len(client.access_token) > 20, "no access token")
    step("login with client credentials", f"login URL {login_url}/oauth/token")

    wrong = gc.api_client.ApiClient(host=base)
    wrong.gateway_configuration = None
    try:
        wrong.get_client_credentials_token(client_id, secret + "-wrong")
        raise CheckFailed("a wrong secret was accepted")
    except ApiException as e:
        check(e.status in (400, 401), f"wrong secret gave HTTP {e.status}")
        check(json.loads(e.body)["error"] == "invalid_client", f"wrong secret body {e.body}")
    step("wrong secret refused")

    notifications = gc.NotificationsApi(client)
    routing = gc.RoutingApi(client)
    users_api = gc.UsersApi(client)

    # --- channel -----------------------------------------------------------
    channel = notifications.post_notifications_channels()
    check(isinstance(channel, gc.Channel), f"channel is {type(channel)}")
    check(channel.id.startswith("streaming-0-"), f"channel id {channel.id}")
    check(channel.connect_uri.endswith("/channels/" + channel.id), f"connectUri {channel.connect_uri}")
    check(isinstance(channel.expires, datetime.datetime), f"expires {channel.expires!r}")
    check(channel.expires.tzinfo is not None, "expires has no time zone")
    step("create channel", f"{channel.id} expires {channel.expires.isoformat()}")

    notifications.head_notifications_channel(channel.id)
    try:
        notifications.head_notifications_channel("streaming-0-doesnotexist")
        raise CheckFailed("HEAD of an unknown channel succeeded")
    except ApiException as e:
        check(e.status == 404, f"HEAD unknown channel gave {e.status}")
    listing = notifications.get_notifications_channels(includechannels="oauthclient")
    check(isinstance(listing, gc.ChannelEntityListing), f"listing is {type(listing)}")
    check(channel.id in [c.id for c in listing.entities], "channel missing from the listing")
    step("HEAD and list channels")

    # --- directory (paged) -------------------------------------------------
    queues, page = [], 1
    while True:
        reply = routing.get_routing_queues(page_size=25, page_number=page)
        check(isinstance(reply, gc.QueueEntityListing), f"queue page is {type(reply)}")
        check(reply.page_number == page and reply.page_size == 25, "paging fields")
        assert_model_clean(reply, f"queue page {page}")
        queues.extend(reply.entities)
        if page >= reply.page_count:
            break
        page += 1
    check(len(queues) == reply.total > 0, f"{len(queues)} queues listed, total {reply.total}")
    check(len({q.id for q in queues}) == len(queues), "duplicate queue ids across pages")
    check(all(q.name and isinstance(q.date_created, datetime.datetime) for q in queues), "queue fields")
    check(queues[0].division.name == "Home", "queue division")
    step("list queues", f"{len(queues)} queues over {page} pages, first {queues[0].name!r}")

    users = users_api.get_users(page_size=100, page_number=1)
    check(isinstance(users, gc.UserEntityListing), f"users page is {type(users)}")
    assert_model_clean(users, "users page")
    check(len(users.entities) == users.total > 0, "users listed")
    check(users.entities[0].state == "active", "user state")
    step("list users", f"{users.total} users")

    # --- subscriptions -----------------------------------------------------
    def topic(name):
        t = gc.ChannelTopic()
        t.id = name
        return t

    names = [f"v2.analytics.queues.{q.id}.observations" for q in queues[:10]]
    names.append(f"v2.users.{users.entities[0].id}.presence")
    put = notifications.put_notifications_channel_subscriptions(channel.id, [topic(n) for n in names])
    check(isinstance(put, gc.ChannelTopicEntityListing), f"PUT reply is {type(put)}")
    check([t.id for t in put.entities] == names, "PUT reply topics")
    check(all(t.state == "Permitted" for t in put.entities), "PUT states")
    back = notifications.get_notifications_channel_subscriptions(channel.id)
    check(isinstance(back, gc.ChannelTopicEntityListing), f"GET reply is {type(back)}")
    check(sorted(t.id for t in back.entities) == sorted(names), "subscriptions read back")
    step("PUT and GET subscriptions", f"{len(back.entities)} topics")

    bogus = "v2.analytics.queues.00000000-0000-4000-8000-000000000000.observations"
    try:
        notifications.put_notifications_channel_subscriptions(channel.id, [topic(n) for n in names + [bogus]])
        raise CheckFailed("a rejected topic did not fail the request")
    except ApiException as e:
        check(e.status == 403, f"rejected topic gave {e.status}")
    lenient = notifications.put_notifications_channel_subscriptions(
        channel.id, [topic(n) for n in names + [bogus]], ignore_errors=True
    )
    assert_model_clean(lenient, "ignoreErrors reply")
    rejected = [t for t in lenient.entities if t.state == "Rejected"]
    check([t.id for t in rejected] == [bogus], "exactly the bogus topic is rejected")
    check(bool(rejected[0].rejection_reason), "rejection reason")
    step("rejected topic: 403, then ignoreErrors", rejected[0].rejection_reason)

    # --- WebSocket ---------------------------------------------------------
    ws = websocket.create_connection(channel.connect_uri, timeout=10)
    try:
        ws.send(json.dumps({"message": "ping"}))
        pong = next_message(ws)
        check(pong == {"topicName": "channel.metadata", "eventBody": {"message": "pong"}}, f"pong {pong}")
        step("WebSocket ping/pong")

        generated = control(base, "/sim/generate", {"count": 22})
        check(generated["delivered"] == 22, f"generate: {generated}")
        seen = set()
        for _ in range(22):
            event = next_message(ws)
            check(event["topicName"] in names, f"unsubscribed topic {event['topicName']}")
            check(event["version"] == "2", "version")
            check(isinstance(event["eventBody"], dict), "eventBody")
            seen.add(event["metadata"]["CorrelationId"])
        check(len(seen) == 22, "CorrelationIds are unique")
        step("notifications on the socket", f"{len(seen)} events")
    finally:
        ws.close()

    # --- Analytics ---------------------------------------------------------
    analytics = gc.AnalyticsApi(client)
    query = gc.QueueObservationQuery()
    query.filter = gc.QueueObservationQueryFilter()
    query.filter.type = "or"
    query.filter.predicates = []
    for q in queues[:3]:
        p = gc.QueueObservationQueryPredicate()
        p.type, p.dimension, p.operator, p.value = "dimension", "queueId", "matches", q.id
        query.filter.predicates.append(p)
    query.metrics = ["oWaiting", "oInteracting", "oOnQueueUsers", "oServiceLevel"]
    observed = analytics.post_analytics_queues_observations_query(query)
    check(isinstance(observed, gc.QueueObservationQueryResponse), f"observations reply {type(observed)}")
    assert_model_clean(observed, "observations reply")
    check(sorted(r.group["queueId"] for r in observed.results) == sorted(q.id for q in queues[:3]),
          f"one result per queue: {[r.group for r in observed.results]}")
    metrics = {d.metric for r in observed.results for d in r.data}
    check(metrics == {"oWaiting", "oInteracting", "oOnQueueUsers", "oServiceLevel"}, f"metrics {metrics}")
    step("queue observations query", f"{len(observed.results)} queues, metrics {sorted(metrics)}")
    try:
        query.metrics = ["nOffered"]
        analytics.post_analytics_queues_observations_query(query)
        raise CheckFailed("an aggregate metric was accepted by the observations query")
    except ApiException as e:
        check(e.status == 400, f"unknown metric gave HTTP {e.status}")
    step("observations query: an unknown metric is a 400")

    now = datetime.datetime.now(datetime.timezone.utc)
    details = gc.ConversationQuery()
    details.interval = f"{(now - datetime.timedelta(hours=1)).isoformat()}/{(now + datetime.timedelta(minutes=1)).isoformat()}"
    details.order = "asc"
    details.order_by = "conversationStart"
    details.paging = gc.PagingSpec()
    details.paging.page_size, details.paging.page_number = 100, 1
    found = analytics.post_analytics_conversations_details_query(details)
    check(isinstance(found, gc.AnalyticsConversationQueryResponse), f"details reply {type(found)}")
    assert_model_clean(found, "conversation details reply")
    for c in found.conversations or []:
        check(c.conversation_id and isinstance(c.conversation_start, datetime.datetime), "conversation fields")
        check(all(p.purpose in ("customer", "acd", "agent") for p in c.participants), "participant purposes")
    step("conversation details query", f"{found.total_hits} conversations")
    try:
        details.paging.page_size = 1000
        analytics.post_analytics_conversations_details_query(details)
        raise CheckFailed("a page of 1000 was accepted")
    except ApiException as e:
        check(e.status == 400, f"page size 1000 gave HTTP {e.status}")
    step("conversation details query: a page of 1000 is a 400")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    try:
        sys.exit(main(*sys.argv[1:4]))
    except (CheckFailed, ApiException, websocket.WebSocketException, OSError, ValueError, KeyError) as failure:
        print(f"FAIL: {type(failure).__name__}: {failure}", file=sys.stderr)
        sys.exit(1)
