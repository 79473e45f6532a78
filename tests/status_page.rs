//! The status page at `/` of the health listener, in a real browser.
//!
//! A real stack (Tansu, the simulator, the bridge) and Debian's headless
//! `chromium`, driven over the DevTools protocol so that the same page
//! load is read several times, after its script ran:
//! - what `/` is sent with (CSP, nosniff, no-store, no-referrer; POST
//!   refused) — and that the page's script runs under that CSP;
//! - the connection with its phase, channel, channel and token expiry,
//!   a gap and the warnings of a dropped socket, as `/status` has them;
//! - while events flow at a steady rate, the rate shown agrees with the
//!   rate the test measures itself from two `/metrics` scrapes; once they
//!   are all forwarded, every topic's count is `/status`'s and their sum
//!   is `gkb_events_forwarded_total`;
//! - refreshed in place: the same document (a mark the test left in it
//!   is still there), its refresh counter grown, its figures changed,
//!   no row twice;
//! - a bridge that stops answering (SIGSTOP) is shown as such, with the
//!   time of the last answer, and the banner goes once it answers again;
//! - the OAuth client secret is nowhere: not in `/`, `/status`, nor in
//!   what the browser rendered.
//!
//! chromium is required: the test fails when it is missing, unless
//! `BRIDGE_TESTS_SKIP_BROWSER=1` (then it is skipped and says so).
//! `CHROMIUM_BIN` names it.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::devtools::{chromium, Browser, Cdp};
use support::{eventually, http, Stack, TOPICS};

/// What the page shows now, read from its DOM.
fn read_shown(cdp: &mut Cdp) -> Option<Shown> {
    let value = cdp.evaluate(SHOWN_JS)?;
    Some(Shown(value))
}

/// Waits until what the page shows satisfies `done`.
fn wait_shown(cdp: &mut Cdp, what: &str, limit: Duration, done: impl Fn(&Shown) -> bool) -> Shown {
    eventually(what, limit, || read_shown(cdp).filter(|s| done(s)))
}

/// Reads the rendered page: texts of the cells as the browser holds
/// them after the page's script wrote them, and the visible text.
const SHOWN_JS: &str = r#"(() => {
  const $ = (id) => document.getElementById(id);
  const cells = (tr) => Array.from(tr.cells).map((td) => td.textContent);
  const rows = (id) => Array.from($(id).rows).map(cells);
  return {
    refreshes: Number(document.body.dataset.refreshes),
    refreshed_at: document.body.dataset.refreshedAt || null,
    stale: document.body.classList.contains("stale"),
    visible_text: document.body.innerText,
    health: $("health").textContent,
    ready: $("ready").textContent,
    token: $("token").textContent,
    connections: rows("connection-rows"),
    topics: rows("topic-rows"),
    total: cells($("topic-total")),
    gap_summary: $("gap-summary").textContent,
    gaps: rows("gap-rows"),
    problems: rows("problem-rows"),
    mark: window.statusPageTestMark || null,
  };
})()"#;

/// One reading of the page.
struct Shown(Value);

impl Shown {
    fn refreshes(&self) -> u64 {
        self.0["refreshes"].as_u64().unwrap_or(0)
    }

    fn text(&self, key: &str) -> &str {
        self.0[key].as_str().unwrap_or("")
    }

    fn rows(&self, key: &str) -> Vec<Vec<String>> {
        serde_json::from_value(self.0[key].clone()).unwrap_or_default()
    }

    /// The row of a Kafka topic.
    fn topic(&self, name: &str) -> Vec<String> {
        let rows: Vec<_> = self
            .rows("topics")
            .into_iter()
            .filter(|r| r[0] == name)
            .collect();
        assert_eq!(rows.len(), 1, "topic {name} shown {} times", rows.len());
        rows.into_iter().next().unwrap()
    }

    fn banner(&self) -> bool {
        self.text("visible_text")
            .contains("No answer from the bridge since")
    }
}

impl std::fmt::Debug for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

/// A number as the page writes it (`1,234`, `40.5`).
fn number(text: &str) -> f64 {
    text.replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("{text:?} is not a number"))
}

/// Seconds in a time span as the page writes it (`23 h 59 min`,
/// `4 min 2 s`, `expired 3 s ago`), negative when expired.
fn span_secs(text: &str) -> f64 {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut secs = 0.0;
    for pair in words.windows(2) {
        let Ok(n) = pair[0].parse::<f64>() else {
            continue;
        };
        secs += n * match pair[1] {
            "d" => 86400.0,
            "h" => 3600.0,
            "min" => 60.0,
            "s" => 1.0,
            other => panic!("unit {other:?} in {text:?}"),
        };
    }
    assert!(secs > 0.0 || text.contains("0 s"), "no time in {text:?}");
    if text.starts_with("expired") {
        -secs
    } else {
        secs
    }
}

/// Continues a stopped bridge even when the test fails meanwhile.
struct Resume(u32);

impl Drop for Resume {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0 as i32, libc::SIGCONT) };
    }
}

#[test]
fn the_status_page_shows_the_live_bridge_in_a_real_browser() {
    let Some(chromium) = chromium() else { return };
    let began = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::builder(dir.path()).queues(3).start();
    let (bridge, sim, secret) = (&stack.bridge, &stack.sim, stack.secret.as_str());
    let base = bridge.health.clone();
    let url = format!("{base}/");

    // What the listener sends at `/`.
    let page = http::get(&url).unwrap();
    assert_eq!(page.status, 200, "{}", page.head);
    let header = |name: &str| page.header(name).unwrap_or_default().to_owned();
    assert!(
        header("content-type").starts_with("text/html"),
        "{}",
        page.head
    );
    let csp = header("content-security-policy");
    for part in [
        "default-src 'none'",
        "script-src 'sha256-",
        "connect-src 'self'",
    ] {
        assert!(csp.contains(part), "{part} not in CSP {csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("cache-control"), "no-store");
    assert_eq!(header("referrer-policy"), "no-referrer");
    assert!(!page.body.contains(secret), "the OAuth secret is in /");
    let post = http::post_json(&url, &json!({})).unwrap();
    assert_eq!(post.status, 405, "POST / must be refused: {}", post.body);

    // A gap and its warnings: the socket dropped without a close frame.
    sim.control("/sim/faults/drop-sockets", json!({"mode": "abort"}));
    eventually(
        "the gap on /status and the socket open again",
        Duration::from_secs(60),
        || {
            let s = bridge.status()?;
            (s["gaps"]["this_run"]["gaps"].as_u64() >= Some(1)
                && s["connections"]["0"]["phase"] == "open"
                && s["ready"].as_array().is_some_and(|r| r.is_empty()))
            .then_some(())
        },
    );

    // The page in the browser: what it shows is what /status says.
    let mut browser = Browser::open(&chromium, &dir.path().join("chromium"), &url);
    let mut cdp = browser.page(&url);
    let opened = Instant::now();
    let first = wait_shown(
        &mut cdp,
        "the page's first refresh",
        Duration::from_secs(30),
        |s| s.refreshes() >= 1,
    );
    let now = bridge.status().unwrap();
    println!(
        "status page: first refresh {:.1} s after chromium started",
        opened.elapsed().as_secs_f64()
    );
    assert_eq!(first.text("health"), "alive", "{first:?}");
    assert_eq!(first.text("ready"), "ready", "{first:?}");
    let connections = first.rows("connections");
    assert_eq!(connections.len(), 1, "{first:?}");
    let (row, known) = (&connections[0], &now["connections"]["0"]);
    assert_eq!(row[0], "0");
    assert_eq!(row[1], "open", "the phase: {first:?}");
    assert_eq!(row[2], known["channel_id"].as_str().unwrap(), "the channel");
    assert!(
        row[2].ends_with('…'),
        "a whole channel id is shown: {}",
        row[2]
    );
    let channel_left = known["channel_expires_in_secs"].as_f64().unwrap();
    assert!(
        (span_secs(&row[3]) - channel_left).abs() < 90.0,
        "channel expiry shown {:?}, /status {channel_left} s",
        row[3]
    );
    assert_eq!(row[4], known["topics"].to_string(), "topics: {first:?}");
    assert_eq!(row[4], "6");
    assert_eq!(row[6], known["reconnects"].to_string(), "reconnects");
    assert!(number(&row[6]) >= 1.0, "the drop is a reconnect: {first:?}");
    let token = first.text("token");
    let token_left = now["token"]["expires_in_secs"].as_f64().unwrap();
    let token_shown = token
        .strip_prefix("expires in ")
        .unwrap_or_else(|| panic!("token: {token:?}"));
    assert!(
        (span_secs(token_shown) - token_left).abs() < 90.0,
        "token expiry shown {token:?}, /status {token_left} s"
    );
    let mut names: Vec<String> = first
        .rows("topics")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    names.sort();
    let mut wanted: Vec<&str> = TOPICS.to_vec();
    wanted.sort();
    assert_eq!(names, wanted, "Kafka topics shown");
    for topic in TOPICS {
        let row = first.topic(topic);
        assert_eq!(number(&row[3]), 0.0, "backlog of {topic}: {row:?}");
    }
    let gap = &now["gaps"]["recent"][0];
    let gaps = first.rows("gaps");
    assert_eq!(gaps.len(), now["gaps"]["recent"].as_array().unwrap().len());
    assert_eq!(
        gaps[0][2],
        format!("{:.3}", gap["seconds"].as_f64().unwrap())
    );
    assert_eq!(gaps[0][3], "0");
    assert!(gaps[0][5].contains("1006"), "gap reason: {gaps:?}");
    assert!(
        first.text("gap_summary").starts_with("this run: 1 gap,"),
        "{first:?}"
    );
    let problems = first.rows("problems");
    let known: Vec<(String, String, String)> = now["recent_problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let text = |k: &str| p[k].as_str().unwrap().to_owned();
            (text("component"), text("message"), text("detail"))
        })
        .collect();
    let shown: Vec<(String, String, String)> = problems
        .iter()
        .map(|r| (r[2].clone(), r[3].clone(), r[4].clone()))
        .collect();
    assert_eq!(
        shown, known,
        "warnings shown, newest first, as /status has them"
    );
    assert!(
        problems.iter().any(|r| r[1] == "WARN"
            && r[2] == "connection 0"
            && r[3] == "reconnecting"
            && r[4].contains("1006")),
        "the drop's warning: {problems:?}"
    );
    assert!(
        problems.iter().any(|r| r[3] == "gap: no subscribed socket"),
        "the gap's warning: {problems:?}"
    );
    // Left in the document: found again later, it proves no reload.
    cdp.evaluate("window.statusPageTestMark = 'first load'; true")
        .unwrap();

    // Events at a steady rate: the rate shown is the one the test
    // measures itself from /metrics.
    let rate = 100.0;
    let events = 2400;
    sim.generate_in_background(events as u64, rate);
    let flow_started = Instant::now();
    // The rate shown is over the last 10 s: compared once that span
    // (and a poll) holds nothing but the flow.
    eventually(
        "a full rate window of forwarding",
        Duration::from_secs(60),
        || {
            let s = bridge.status()?;
            (flow_started.elapsed() >= Duration::from_secs(12)
                && s["forwarded"]["per_sec"].as_f64()? >= 0.6 * rate)
                .then_some(())
        },
    );
    let forwarded =
        || support::metric(&bridge.metrics().unwrap(), "gkb_events_forwarded_total").unwrap();
    let (t1, f1) = (Instant::now(), forwarded());
    let refreshes = read_shown(&mut cdp).unwrap().refreshes();
    let flowing = wait_shown(
        &mut cdp,
        "5 s more and two more refreshes",
        Duration::from_secs(30),
        |s| t1.elapsed() >= Duration::from_secs(5) && s.refreshes() >= refreshes + 2,
    );
    let (t2, f2) = (Instant::now(), forwarded());
    let measured = (f2 - f1) / (t2 - t1).as_secs_f64();
    let shown_total: Vec<String> = serde_json::from_value(flowing.0["total"].clone()).unwrap();
    let shown_rate = number(&shown_total[1]);
    println!(
        "status page: forwarding at {shown_rate}/s shown, {measured:.1}/s measured from /metrics, generated at {rate}/s"
    );
    assert!(
        (shown_rate - measured).abs() <= 0.25 * measured && measured > 0.0,
        "rate shown {shown_rate}/s, measured {measured:.1}/s: {flowing:?}"
    );
    let per_topic: f64 = TOPICS.iter().map(|t| number(&flowing.topic(t)[1])).sum();
    assert!(
        (per_topic - shown_rate).abs() <= 0.15 * shown_rate + 1.0,
        "per-topic rates add up to {per_topic}, all topics {shown_rate}: {flowing:?}"
    );
    // Nothing is routed to the default topic: its rate must say so.
    assert_eq!(number(&flowing.topic("genesys.events")[1]), 0.0);
    assert!(number(&flowing.topic("genesys.queue-observations")[1]) > 0.0);
    assert!(number(&flowing.topic("genesys.queue-conversations")[1]) > 0.0);

    // All forwarded: the counts shown are the bridge's, exactly.
    bridge.wait_forwarded(events, Duration::from_secs(120));
    let settled = eventually(
        "/status's per-topic counts to reach gkb_events_forwarded_total",
        Duration::from_secs(30),
        || {
            let s = bridge.status()?;
            let sum: u64 = s["kafka_topics"]
                .as_array()?
                .iter()
                .map(|t| t["forwarded"].as_u64().unwrap())
                .sum();
            (sum == s["forwarded"]["total"].as_u64()? && sum >= events as u64).then_some(s)
        },
    );
    let total_forwarded = forwarded();
    assert_eq!(
        total_forwarded,
        settled["forwarded"]["total"].as_u64().unwrap() as f64
    );
    let refreshes = read_shown(&mut cdp).unwrap().refreshes();
    let done = wait_shown(
        &mut cdp,
        "two refreshes after the drain",
        Duration::from_secs(30),
        |s| s.refreshes() >= refreshes + 2,
    );
    let mut sum = 0.0;
    for topic in settled["kafka_topics"].as_array().unwrap() {
        let name = topic["topic"].as_str().unwrap();
        let row = done.topic(name);
        assert_eq!(
            number(&row[2]),
            topic["forwarded"].as_f64().unwrap(),
            "{name}: {row:?}"
        );
        assert_eq!(number(&row[3]), 0.0, "backlog of {name}: {row:?}");
        sum += number(&row[2]);
    }
    let shown_total: Vec<String> = serde_json::from_value(done.0["total"].clone()).unwrap();
    assert_eq!(
        number(&shown_total[2]),
        total_forwarded,
        "all topics: {done:?}"
    );
    assert_eq!(sum, total_forwarded, "the topics' counts add up: {done:?}");
    println!(
        "status page: {total_forwarded} forwarded shown, = gkb_events_forwarded_total; {} refreshes",
        done.refreshes()
    );

    // Refreshed in place: the same document, changed figures, no row twice.
    assert_eq!(done.text("mark"), "first load", "the page was reloaded");
    assert!(done.refreshes() > first.refreshes() + 5, "{done:?}");
    assert_ne!(
        first.topic("genesys.queue-observations")[2],
        done.topic("genesys.queue-observations")[2],
        "the count did not change"
    );
    assert_eq!(done.rows("topics").len(), TOPICS.len());
    assert_eq!(done.rows("connections").len(), 1);
    assert!(!done.banner() && !done.0["stale"].as_bool().unwrap());

    // The bridge stops answering: the page says so, and since when.
    bridge.proc.signal(libc::SIGSTOP);
    let resume = Resume(bridge.proc.pid());
    let stopped = Instant::now();
    let stale = wait_shown(
        &mut cdp,
        "the no-answer banner",
        Duration::from_secs(20),
        Shown::banner,
    );
    let last_answer = stale.text("refreshed_at");
    let clock = &last_answer[11..19];
    let visible = stale.text("visible_text");
    assert!(
        visible.contains(&format!("No answer from the bridge since {clock} UTC")),
        "the banner names the last answer ({last_answer}): {visible}"
    );
    assert!(stale.0["stale"].as_bool().unwrap(), "{stale:?}");
    println!(
        "status page: banner {:.1} s after SIGSTOP",
        stopped.elapsed().as_secs_f64()
    );
    drop(resume);
    let back = wait_shown(
        &mut cdp,
        "the banner gone once the bridge answers again",
        Duration::from_secs(30),
        |s| !s.banner() && s.refreshes() > stale.refreshes(),
    );
    assert!(!back.0["stale"].as_bool().unwrap(), "{back:?}");
    assert_eq!(back.text("mark"), "first load");

    // No secret anywhere.
    let rendered = cdp.evaluate("document.documentElement.outerHTML").unwrap();
    assert!(rendered.as_str().unwrap().contains("streaming-0-"));
    assert!(
        !rendered.as_str().unwrap().contains(secret),
        "the secret is rendered"
    );
    let status_text = http::get(&format!("{base}/status")).unwrap().body;
    assert!(
        !status_text.contains(secret),
        "the OAuth secret is in /status"
    );
    drop(browser);
    println!(
        "status page test: {:.1} s in all",
        began.elapsed().as_secs_f64()
    );
}
