//! Genesys Cloud simulator: a library crate of its own (the product crate
//! holds no test double) whose [`run`] the bridge binary serves as its
//! `simulate` subcommand.
//!
//! Genesys Cloud cannot be reached from development machines and CI, so the
//! bridge ships a stand-in for the parts it talks to: login, the REST calls
//! of the Notification Service, the channel WebSocket, and the directory
//! listings used to expand "all queues". It follows
//! `genesys-notifications.md` (the field reference); where the real service
//! is not known, the behaviour is a flag or an injectable fault.
//!
//! Where the real service is uncertain, the simulator takes the harsher
//! choice by default (a kinder test double flatters every client tested
//! against it); each such behaviour has an option to tune or turn it off.
//!
//! Two listeners, as login and API are two hosts on Genesys Cloud: the API
//! host (`--listen`, default `127.0.0.1:8089`: REST, WebSocket, control
//! API) and the login host (`--login-listen`, default the next port:
//! `POST /oauth/token` only; on the API host it is a 404).
//! `--login-on-api-port` serves login on the API host too, for clients
//! that derive the login URL from the API URL (the official SDKs replace
//! `//api.` with `//login.`, which leaves a loopback URL unchanged).
//! `simulate` prints `listening on <API URL>` then `login on <login URL>`.
//!
//! With `--tls-cert`/`--tls-key` (PEM) every listener serves https and the
//! connectUris are `wss://`; [`TestCa`] makes a throwaway CA and a server
//! certificate for 127.0.0.1/localhost (clients trust the CA certificate).
//!
//! # Code map
//!
//! Handlers over a state layer; imports point down this list, never up:
//!
//! * `server`: the listeners, [`start`], [`run`], [`RunningSimulator`].
//! * `http/`: one file per API area, each a set of handlers over the
//!   state: `oauth` (login, the bearer check), `channels` (Notification
//!   Service REST), `socket` (the channel WebSocket actor), `directory`
//!   (queue and user listings), `control/` (`/sim/`: `generate`,
//!   `inspect`, `faults`, `directory`), `request` (reading input);
//!   `http::routes` maps paths to handlers. A new API area is one file
//!   here plus its routes.
//! * `generator/`: `emit` (a batch of events, under the state lock) and
//!   `job` (background jobs at a rate).
//! * `janitor`: expires channels and tokens when nobody calls.
//! * `state/`: `SimState` behind one lock, and its parts: `tokens`,
//!   `channels`, `subscriptions`, `log` (the event log), `counters`,
//!   `view` (`GET /sim/state`), `settings`, `sockets` and `jobs` (the
//!   messages the state sends socket and generator actors, held as
//!   `actix::Recipient`s: the state imports no handler or actor).
//! * `events/`: event bodies per topic family, and the envelope.
//! * `model/`: what persists between events: queue `observations` and the
//!   live `conversations`.
//! * `topics` (topic names, the subscription check), `directory` (the
//!   organisation: queues, users, presences), `faults`, `config`
//!   ([`SimulatorArgs`]), `tls` ([`TestCa`]), `errors`, `ids`, `clock`.
//!
//! # Genesys Cloud API
//!
//! * `POST /oauth/token`: client credentials grant. HTTP Basic
//!   `client_id:client_secret` (form fields `client_id`/`client_secret` are
//!   accepted too), form `grant_type=client_credentials` →
//!   `{"access_token","token_type":"bearer","expires_in"}`. Wrong
//!   credentials → 401 (or 400 with `--bad-credentials-status 400`)
//!   `{"error":"invalid_client","description","error_description"}`; another
//!   grant → 400 `unsupported_grant_type`. Tokens expire after `--token-ttl`;
//!   at most 100,000 are valid at once (beyond, the oldest is revoked).
//! * Rate limit: at most `--rate-limit-per-minute` (default 300, 0 = off)
//!   `/api/v2` calls per token in any sliding minute; beyond, 429 in the two
//!   forms Genesys uses: `too.many.requests` without `Retry-After`, and
//!   `too.many.requests.retry.after` with one (`--rate-limit-429
//!   alternate|retry-after|no-retry-after`, default alternate, starting
//!   without). Counted calls carry `inin-ratelimit-allowed`,
//!   `inin-ratelimit-count` and `inin-ratelimit-reset` headers.
//! * A channel belongs to the token that created it
//!   (`--channels-follow-token`, default true): when that token expires or
//!   is revoked, its socket gets `v2.system.token_revoked`
//!   (`{"channelId","systemTopicType":"token_revoked","message",…}`), then
//!   the channel is gone: socket closed (1000), HEAD 404, socket subscribe
//!   `{"result":"404"}`, new sockets refused.
//! * Every `/api/v2` call needs `Authorization: Bearer <token>`; missing →
//!   401 `authentication.required`; unknown or revoked → 401
//!   `bad.credentials`; expired → 401 `credentials.expired` (the service
//!   answers either for an expired token: `--expired-token-code
//!   credentials-expired|bad-credentials|alternate`, default
//!   `credentials-expired`; `alternate` starts with `credentials.expired`).
//!   The last 100,000 expired tokens are remembered as expired; older ones
//!   answer `bad.credentials`.
//!   Errors are `{"message","code","status","contextId","details","errors"}`;
//!   unknown routes are 404 `not.found`; request bodies over 16 MiB are 413
//!   (every error reply has this shape, except `/oauth/token`'s own).
//! * `POST /api/v2/notifications/channels` →
//!   `{"id":"streaming-0-…","connectUri":"ws://host:port/channels/<id>","expires"}`.
//!   At `--max-channels` per OAuth client, creating one more removes the
//!   least recently used channel (unconnected first; "used" = created,
//!   subscription call, socket connected, ping or subscribe message) and
//!   closes its socket (1000 "channel removed: channel limit reached").
//! * `GET /api/v2/notifications/channels?includechannels=token|oauthclient`
//!   → `{"entities":[channel…]}` (default `token`: channels created with
//!   the calling token).
//! * `HEAD /api/v2/notifications/channels/{id}` → 200 alive, 404 otherwise.
//! * `GET|PUT|POST|DELETE /api/v2/notifications/channels/{id}/subscriptions`
//!   with body `[{"id":"<topic>"}…]` and optional `?ignoreErrors=true`.
//!   PUT replaces, POST adds, DELETE removes all (200, empty body). Replies
//!   `{"entities":[{"id","state":"Permitted"|"Rejected","rejectionReason"?,"missingPermissions"?}]}`:
//!   for PUT every requested topic; for POST the channel's whole resulting
//!   list followed by rejected topics. More than
//!   `--max-topics-per-channel` resulting topics → 400. Topics must follow
//!   the families of the field reference (§7) with lowercase hyphenated
//!   UUIDs; queue ids must be queues of the directory, user ids its users;
//!   other topics are `Rejected`. Without `ignoreErrors`, one rejection makes
//!   the request 403 (`missing.permissions`, rejected topics in `details`)
//!   and nothing changes. Unknown or expired channel → 404.
//!   A combined topic, `v2.users.<id>?presence&routingStatus` (at most 200
//!   characters), stands for its expanded names (`v2.users.<id>.presence`,
//!   `v2.users.<id>.routingStatus`): the channel lists and gets events under
//!   those. Subscribing does not move `expires` (unconfirmed for the real
//!   service; `--subscribe-extends-channel true` moves it to now +
//!   `--channel-ttl`). Channels expire after
//!   `--channel-ttl`; their socket is then closed (1000 "channel expired").
//! * `GET /api/v2/routing/queues?pageSize=&pageNumber=&name=` and
//!   `GET /api/v2/users?pageSize=&pageNumber=`: paged
//!   `{"entities","pageSize","pageNumber","total","pageCount","firstUri","selfUri","lastUri","nextUri"?,"previousUri"?}`
//!   (pageSize 1..=500, default 25). `GET /api/v2/routing/queues/{id}` and
//!   `GET /api/v2/users/{id}` return one entity. `--queues` queues and
//!   `--users` users have stable ids (the same on every run) and realistic
//!   names.
//!
//! # Event bodies
//!
//! Bodies follow the models of Genesys' SDKs (field reference §7). Two
//! families carry state from one event to the next, as on the real service:
//!
//! * `v2.analytics.queues.{id}.observations` are deltas. The simulator
//!   keeps each queue's live statistics (`oWaiting`, `oInteracting`,
//!   `oAlerting`, `oMemberUsers`, `oActiveUsers`, `oOnQueueUsers` and
//!   `oUserRoutingStatuses` per routing status, `oUserPresences`,
//!   `oServiceLevel`); each event changes a few and carries only those,
//!   `{"group":{"queueId","mediaType"},"data":[{"interval":"<now>/<now>","metrics":[{"metric","qualifier"?,"stats"}]}]}`.
//!   The first event of a queue carries every metric. Counts are integers;
//!   `oServiceLevel` is `{"ratio","numerator","denominator","target"}`.
//!   Applying a queue's events in order (replacing each `(metric,
//!   qualifier)`'s stats) gives what `GET /sim/observations` shows. About
//!   one event in four on the topic is a 30-minute aggregate instead
//!   (`interval` spans the half hour; `nOffered`, `tHandle`… with integer
//!   stats), which is not a delta (never with `observation_conversations`).
//!   `oWaiting` and `oInteracting`, when sent, list up to four of their
//!   conversations under `observations`.
//! * Conversations have stable ids and a lifecycle: alerting, connected,
//!   wrap-up (`acw`), disconnected. An event on
//!   `v2.routing.queues.{id}.conversations` starts a conversation on the
//!   queue while it has fewer than `--conversations-per-entity` (default 3)
//!   live ones, else moves the one that waited longest to its next stage,
//!   and carries that conversation's snapshot; `v2.users.{id}.conversations`
//!   does the same for the agent's conversations (starting one on a queue
//!   of the agent with room, else an outbound call). In a snapshot the
//!   agent participant's communication is `alerting`, `connected`, then
//!   `disconnected` without `wrapup` (wrap-up), then `disconnected` with
//!   `wrapup` (ended); a queue without members abandons (alerting, then
//!   disconnected). An ended conversation makes room for a new one.
//!   Its detail events, `v2.detail.events.conversation.{id}.<kind>`, follow
//!   the same life, in order: `customer.start`, `acd.start`, `attributes`,
//!   `acd.end`, `user.start`, `customer.end`, `user.end`, `acw`, each sent
//!   once (a kind whose topic is not subscribed when it is due is skipped),
//!   then nothing more on that conversation's topics. Detail events carry
//!   `eventTime` (epoch ms), `conversationId`, `participantId`,
//!   `sessionId`, `mediaType` (`VOICE`, `CHAT`, `EMAIL`, `MESSAGE`),
//!   `direction` (`INBOUND`/`OUTBOUND`), uppercase routing enums
//!   (`STANDARD`) and per kind `queueId`, `userId`, `disconnectType`,
//!   `interactingDurationMs`, `wrapupCode`… with durations from the
//!   conversation's own times. `v2.detail.events.agent.{id}.state` of an
//!   agent with a live conversation shows it (`ALERT`, `INTERACT`,
//!   `WRAPUP`; same `conversationId`). `GET /sim/conversations` lists the
//!   live ones. The detail topics of a conversation id the simulator did not
//!   make (any other UUID) get an event of their own kind on every visit,
//!   with facts derived from the id, so that such topics can carry load.
//!
//! # Analytics API
//!
//! * `POST /api/v2/analytics/queues/observations/query`
//!   (`QueueObservationQuery`: a `filter` of `queueId`/`mediaType`
//!   predicates, `metrics`) → `{"results":[{"group":{"queueId","mediaType"},
//!   "data":[{"metric","qualifier"?,"stats"}]}]}`: the current statistics
//!   the observation deltas add up to (a queue with no event yet is idle).
//!   At most 100 predicates; unknown metrics and dimensions are a 400.
//! * `POST /api/v2/analytics/conversations/details/query`
//!   (`ConversationQuery`: `interval`, `order`, `orderBy`
//!   `conversationStart`, `paging`, `segmentFilters` on `queueId`/`userId`)
//!   → `{"conversations":[AnalyticsConversation…],"totalHits"}`: the
//!   conversations that *started* in the interval (as the real synchronous
//!   query matches), in their latest state, participants → sessions →
//!   segments. Pages of at most 100, intervals of at most 7 days (400
//!   beyond); a conversation is found only `--analytics-lag` seconds
//!   (default 30) after its start.
//! * `/sim/faults` `analytics_delay_ms` holds both answers after the state
//!   was read; `analytics_malformed` makes them partial (ids left out).
//!
//! # WebSocket: `ws://host:port/channels/{id}`
//!
//! No token: the connectUri grants access. An unknown or expired channel is
//! refused before the upgrade with 404. One socket per channel: a second
//! connection closes the first (1000 "replaced by a new connection…").
//! Server → client text frames:
//! * heartbeat every `--heartbeat-interval`:
//!   `{"topicName":"channel.metadata","eventBody":{"message":"WebSocket Heartbeat"}}`
//! * `{"message":"ping"}` → `{"topicName":"channel.metadata","eventBody":{"message":"pong"}}`
//!   (WebSocket protocol pings get protocol pongs)
//! * `{"message":"subscribe","topics":[…],"correlationId":"…"}` adds topics →
//!   `{"result":"200","status":"subscribed"}`, or
//!   `{"result":"400","status":"failure","message"}` (nothing subscribed);
//!   `"unsubscribe"` removes topics. Anything else →
//!   `{"result":"400","status":"error","message"}`.
//! * notifications, only for subscribed topics:
//!   `{"topicName","version":"2","eventBody":{…},"metadata":{"CorrelationId":"<uuid v4>"}}`.
//!   An event goes to every channel subscribed to its topic with the same
//!   CorrelationId. Per channel, frames arrive in `seq` order. Events for a
//!   channel without an open socket are dropped (recorded as undelivered).
//!   A frame counts as delivered once the socket has handed it to the
//!   connection: frames still queued for a client that does not read are
//!   not, and those still queued when the socket closes never are. A socket
//!   queues at most 64 MiB (`--slow-consumer-bytes`) of frames its client
//!   has not read: beyond that
//!   the simulator gives up on it, as a server gives up on a slow consumer:
//!   the socket is detached from its channel (later events for the channel
//!   are undelivered) and closed (1008 "client is not reading…") after the
//!   frames queued before it are written.
//!
//! Incoming frames up to `--max-frame-size` are accepted.
//!
//! # Control API (`/sim/`, no auth, JSON)
//!
//! * `POST /sim/generate` `{"count":N, "rate_per_sec"?:R, "topics"?:[…], "observation_conversations"?:K}`.
//!   Without `rate_per_sec`: generates N events now, round-robin over the
//!   org's activity (the subscribed topics of all live channels and every
//!   topic a channel ever subscribed: the org goes on while nobody listens,
//!   and those events are recorded with no channel), or over `topics`, and replies
//!   once every frame has been handed to its socket:
//!   `{"emitted":N,"delivered":D,"first_seq":a,"last_seq":b,"flushed":true}`
//!   (`delivered` counts frames handed to open sockets by the time of the
//!   reply, one per receiving channel). A socket only takes
//!   frames while its client reads; after 5 s of waiting for a client that
//!   does not, the reply comes anyway with `"flushed":false` (the frames
//!   stay queued, in order, and are written when the client reads). 409
//!   when no topic was ever subscribed and no `topics` are given; `count` at most
//!   5,000,000. With `rate_per_sec` (at most 1,000,000): starts a
//!   background job (N events, or forever without `count`) → 202
//!   `{"started":true,"job_id"}` (409 when 64 jobs already run). `observation_conversations` (at most
//!   10,000) sets the queue's `oWaiting` to that many and lists them all
//!   (always sent, and always a live observation, not an aggregate): large
//!   values give frames of tens or hundreds of KB.
//! * `GET /sim/emitted?since_seq=K&frames=true|false&limit=N&channel_id=ID`
//!   → `{"events":[{"seq","correlation_id","topic","channel_id","emitted_at_ms","delivered","frame"?}],"last_seq","forgotten"}`:
//!   events with `seq > K` (default 0: all), one entry per receiving channel
//!   (`channel_id` null when nobody subscribed), oldest first; `frame` is the
//!   exact text frame (only with `frames=true`); `delivered`: the frame was
//!   handed to the channel's open socket (false while it is still queued
//!   for a client that does not read). Heartbeats, pongs and
//!   system messages are not recorded. The log is bounded: it keeps the
//!   last `--event-log-limit` entries (default 1,000,000) and at most
//!   256 MiB of frame text (a frame shared by several channels counts
//!   once), forgetting the oldest entries first; `forgotten` counts the
//!   entries forgotten so far (non-zero: the oldest events are gone).
//! * `GET /sim/state` → channels (`id`, `client_id`, `expires`, `topics_count`,
//!   `topics`, `connected`, `sockets_opened`), `tokens_issued`,
//!   `tokens_active`, `channels_created|expired|evicted`,
//!   `channels_ended_with_token`, `rate_limited_with_retry_after`,
//!   `rate_limited_without_retry_after`, `sockets_opened`,
//!   `events_generated`, `events_delivered` / `events_dropped` (per
//!   receiving channel), `last_seq`, `generator_running`, `faults`.
//! * `POST /sim/stop-generator` → `{"stopped":n}` (background jobs).
//! * `POST /sim/faults` sets faults; fields left out are unchanged, `null`
//!   clears a status:
//!   - `token_status` (+ `token_status_count`): status of the next (N)
//!     `/oauth/token` calls, e.g. 429 or 503;
//!   - `api_status` (+ `api_status_count`): same for every `/api/v2` call;
//!   - `ws_status` (+ `ws_status_count`): same for WebSocket upgrades;
//!   - `retry_after` (default 1): `Retry-After` seconds of injected 429/503
//!     (429 has code `too.many.requests.retry.after`);
//!   - `bad_credentials_status`: 400 or 401 for wrong credentials;
//!   - `deny_topics`: topic prefixes rejected with `missingPermissions`;
//!   - `heartbeats: false`: no heartbeats (a half-open connection);
//!   - `pong: false`: no pong to pings (text or protocol);
//!   - `blackhole: true`: sockets stay open but nothing reaches them
//!     (events count as undelivered, no heartbeats, pongs, replies or
//!     `v2.system.socket_closing` notices).
//!
//!   Replies with all faults, as `GET /sim/faults` does. `DELETE /sim/faults`
//!   clears them all.
//! * `POST /sim/faults/drop-sockets` `{"channel_id"?, "mode":"close"|"abort"}`:
//!   `close` sends a close frame (1001 "idle timeout"); `abort` closes the
//!   TCP connection without a close frame (the client sees 1006 / EOF), as
//!   a proxy dropping an idle connection does → `{"dropped":n,"channels":[…]}`.
//! * `POST /sim/faults/socket-closing` `{"channel_id"?, "close_after_secs"?, "system_topic_type"?, "reason"?, "message"?}`:
//!   sends `v2.system.socket_closing` (body `channelId`, `message`,
//!   `organizationId`, `oauthClientId`, plus `systemTopicType`
//!   (`no_longer_subscribed|subscription_changed|token_revoked`) and
//!   `reason` (`another_channel_subscribed|user_tokens_revoked`) when given;
//!   other values are a 400) to the open sockets, and closes them (1001)
//!   `close_after_secs` later (default `--socket-closing-grace`, 60 s, as
//!   the service does) → `{"notified":n}`.
//! * `GET /sim/conversations` → `{"conversations":[{"id","queue_id","user_id","stage"}]}`:
//!   the live conversations (see "Event bodies"), oldest first.
//! * `GET /sim/observations?queue_id=ID` → `{"queues":{"<id>":[{"metric","qualifier"?,"stats"}]}}`:
//!   the statistics each queue's observation deltas add up to (all queues
//!   that had an observation event when `queue_id` is not given).
//! * `POST /sim/faults/revoke-token` `{"token":T}` or `{"token_prefix":P}`
//!   → `{"revoked":1,"channels_ended":n}`: one live token is revoked (its
//!   next REST call: 401 `bad.credentials`) and its channels end as with
//!   `--channels-follow-token` (`token_revoked` notice, socket closed);
//!   other tokens and their channels are untouched. 404 when no live token
//!   matches, 409 when a prefix matches more than one, 400 without exactly
//!   one of the two fields.
//! * `POST /sim/faults/expire-tokens` → `{"revoked":n}`: all tokens become
//!   invalid (the next REST call gets 401), and their channels end (see
//!   `--channels-follow-token`).
//! * `POST /sim/directory/queues` (or `/users`) `{"count":N}` (1..=10,000)
//!   → `{"ids":[…]}`: new entries with fresh stable ids, listed by the REST
//!   listings at once. `DELETE /sim/directory/queues/{id}` (or
//!   `/users/{id}`) → `{"removed":id}` (404 when unknown or already
//!   removed): the entry leaves the listings, new subscriptions to it are
//!   rejected, and its topics get no more events.
//! * `POST /sim/faults/expire-channels` `{"channel_id"?}` → `{"expired":n}`:
//!   channels end now, as on expiry.
//!
//! Errors of the control API use the Genesys error shape too.

mod clock;
mod config;
mod directory;
mod errors;
mod events;
mod faults;
mod generator;
mod http;
mod ids;
mod janitor;
mod model;
mod server;
mod state;
mod tls;
mod topics;

pub use config::SimulatorArgs;
pub use server::{run, start, RunningSimulator};
pub use tls::{TestCa, TestCaFiles};
