//! Serving over TLS: https listeners, `wss://` connectUris, the test CA.

use awc::ws::{Frame, Message};
use futures_util::SinkExt as _;
use futures_util::StreamExt as _;
use genesys_simulator as simulator;

use crate::support::*;

#[actix_rt::test]
async fn everything_is_served_over_tls_when_given_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let files = simulator::TestCa::generate()
        .unwrap()
        .write_to(dir.path())
        .unwrap();
    let sim = start(|a| {
        a.tls_cert = Some(files.server_cert.clone());
        a.tls_key = Some(files.server_key.clone());
    })
    .await;
    assert!(sim.sim.base_url.starts_with("https://"));
    assert!(sim.sim.login_url.starts_with("https://"));
    assert!(sim.sim.ws_base_url().starts_with("wss://"));

    let trusting = |ca: Option<&std::path::Path>| {
        let mut ssl = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls()).unwrap();
        if let Some(ca) = ca {
            ssl.set_ca_file(ca).unwrap();
        }
        let _ = ssl.set_alpn_protos(b"\x08http/1.1");
        awc::Client::builder()
            .connector(awc::Connector::new().openssl(ssl.build()))
            .finish()
    };
    // Without the test CA the certificate is refused.
    let stranger = trusting(None);
    assert!(stranger
        .post(sim.login_url("/oauth/token"))
        .send()
        .await
        .is_err());

    let client = trusting(Some(&files.ca_cert));
    let login = client
        .post(sim.login_url("/oauth/token"))
        .basic_auth("demo-client", "demo-secret")
        .send_form(&[("grant_type", "client_credentials")])
        .await
        .expect("login over https");
    let token = reply(login).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let channel = client
        .post(sim.url("/api/v2/notifications/channels"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("REST over https");
    let channel = reply(channel).await.body;
    let uri = channel["connectUri"].as_str().unwrap();
    assert!(uri.starts_with("wss://"), "{uri}");
    let (_, socket) = client.ws(uri).connect().await.expect("wss connects");
    let (mut tx, mut rx) = socket.split();
    tx.send(Message::Text(r#"{"message":"ping"}"#.into()))
        .await
        .unwrap();
    let pong = actix_web::rt::time::timeout(WAIT, rx.next()).await.unwrap();
    match pong {
        Some(Ok(Frame::Text(t))) => assert!(String::from_utf8_lossy(&t).contains("pong")),
        other => panic!("expected a pong over wss, got {other:?}"),
    }
}
