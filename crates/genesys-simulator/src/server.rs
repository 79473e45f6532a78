//! Serving: binds the API and login listeners (plain or TLS), starts the
//! state's housekeeping and the `--rate` generator, and stops it all
//! again. [`start`] serves inside a running actix system (tests, the demo);
//! [`run`] is the `simulate` subcommand.

use std::io::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use actix::Actor as _;
use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};

use crate::config::SimulatorArgs;
use crate::http::{self, Role};
use crate::state::SimState;
use crate::{errors, generator, janitor, tls};

/// Request bodies up to this size (a 1000-topic subscription is ~80 KB).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// A simulator serving in the current actix system.
pub struct RunningSimulator {
    /// `http://127.0.0.1:43123` (`https://` with TLS): the API base URL
    /// (REST, WebSocket, control API), no trailing slash.
    pub base_url: String,
    /// The login base URL (`POST {login_url}/oauth/token`): a listener of
    /// its own, or `base_url` with `--login-on-api-port`.
    pub login_url: String,
    pub server: ServerHandle,
    login_server: Option<ServerHandle>,
    /// The bound address of the API listener (port 0 resolved).
    pub local_addr: SocketAddr,
    state: web::Data<SimState>,
    task: actix_web::rt::task::JoinHandle<io::Result<()>>,
}

impl RunningSimulator {
    /// The base of channel connectUris (`ws://127.0.0.1:43123`).
    pub fn ws_base_url(&self) -> &str {
        &self.state.settings.ws_base
    }

    /// Stops generators, closes every socket (1001 "server shutting down")
    /// and stops the servers gracefully.
    pub async fn stop(self) {
        self.state.begin_shutdown();
        generator::stop_jobs(&self.state);
        self.state.close_all_sockets();
        if let Some(login) = &self.login_server {
            login.stop(true).await;
        }
        self.server.stop(true).await;
        let _ = self.task.await;
    }
}

/// The address clients connect to: 0.0.0.0 / :: cannot be connected to,
/// so loopback is advertised instead.
fn advertised(local_addr: SocketAddr) -> SocketAddr {
    match local_addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), local_addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), local_addr.port())
        }
        _ => local_addr,
    }
}

fn serve(
    state: web::Data<SimState>,
    role: Role,
    listener: std::net::TcpListener,
    args: &SimulatorArgs,
) -> io::Result<actix_web::dev::Server> {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(MAX_BODY))
            .wrap(
                actix_web::middleware::ErrorHandlers::new().default_handler(errors::genesys_shape),
            )
            .wrap_fn(|req, srv| {
                use actix_web::dev::Service as _;
                let response = srv.call(req);
                async move {
                    let mut response = response.await?;
                    http::oauth::add_rate_limit_headers(&mut response);
                    Ok(response)
                }
            })
            .configure(|cfg| http::routes(cfg, role))
            .default_service(web::to(http::not_found))
    })
    .workers(if role == Role::Login { 1 } else { 2 })
    // `run` handles signals itself; tests must not have the server react
    // to the test runner's signals.
    .disable_signals()
    .shutdown_timeout(2);
    let server = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => server.listen_openssl(listener, tls::acceptor(cert, key)?)?,
        _ => server.listen(listener)?,
    };
    Ok(server.run())
}

/// Binds and starts serving; must be called inside an actix System
/// (actix_rt). Returns once bound.
pub async fn start(args: SimulatorArgs) -> io::Result<RunningSimulator> {
    args.validate()?;
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        // Fail before binding anything, naming the file at fault.
        tls::acceptor(cert, key)?;
    }
    let (http, ws) = if args.tls_cert.is_some() {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    let listener = std::net::TcpListener::bind(&args.listen)?;
    let local_addr = listener.local_addr()?;
    let api_addr = advertised(local_addr);
    let base_url = format!("{http}://{api_addr}");
    let login_listener = match args.login_address() {
        Some(addr) => Some(
            std::net::TcpListener::bind(&addr)
                .map_err(|e| io::Error::new(e.kind(), format!("login listener on {addr}: {e}")))?,
        ),
        None => None,
    };
    let login_url = match &login_listener {
        Some(l) => format!("{http}://{}", advertised(l.local_addr()?)),
        None => base_url.clone(),
    };
    let state = web::Data::new(SimState::new(&args, format!("{ws}://{api_addr}"))?);

    let api = serve(
        state.clone(),
        Role::Api {
            with_login: login_listener.is_none(),
        },
        listener,
        &args,
    )?;
    let handle = api.handle();
    let login = match login_listener {
        Some(l) => Some(serve(state.clone(), Role::Login, l, &args)?),
        None => None,
    };
    let login_handle = login.as_ref().map(|s| s.handle());
    let task = actix_web::rt::spawn(async move {
        match login {
            Some(login) => futures_util::future::try_join(api, login).await.map(|_| ()),
            None => api.await,
        }
    });

    janitor::Janitor {
        state: state.clone(),
    }
    .start();
    if args.rate > 0.0 {
        generator::start_job(
            state.clone(),
            args.rate,
            None,
            generator::GenerateOptions::default(),
        );
    }
    tracing::info!(
        %base_url,
        %login_url,
        client_id = %args.client_id,
        queues = args.queues,
        users = args.users,
        rate = args.rate,
        "Genesys Cloud simulator started"
    );
    Ok(RunningSimulator {
        base_url,
        login_url,
        server: handle,
        login_server: login_handle,
        local_addr,
        state,
        task,
    })
}

/// The `simulate` subcommand: start(), print `listening on <base_url>` and
/// `login on <login_url>` to stdout (flushed) first, then serve until
/// SIGINT/SIGTERM.
pub async fn run(args: SimulatorArgs) -> io::Result<()> {
    let mut sim = start(args).await?;
    {
        let mut out = io::stdout().lock();
        writeln!(out, "listening on {}", sim.base_url)?;
        writeln!(out, "login on {}", sim.login_url)?;
        out.flush()?;
    }
    let stopped_by_itself = {
        let signal = std::pin::pin!(shutdown_signal());
        match futures_util::future::select(signal, &mut sim.task).await {
            futures_util::future::Either::Left((signal, _)) => {
                signal?;
                None
            }
            futures_util::future::Either::Right((result, _)) => Some(result),
        }
    };
    match stopped_by_itself {
        Some(result) => result.map_err(io::Error::other)?,
        None => {
            tracing::info!("shutting down the simulator");
            sim.stop().await;
            Ok(())
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
async fn shutdown_signal() -> io::Result<()> {
    #[cfg(unix)]
    {
        use actix_web::rt::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let ctrl_c = std::pin::pin!(actix_web::rt::signal::ctrl_c());
        let term = std::pin::pin!(term.recv());
        match futures_util::future::select(ctrl_c, term).await {
            futures_util::future::Either::Left((result, _)) => result,
            futures_util::future::Either::Right(_) => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        actix_web::rt::signal::ctrl_c().await
    }
}
