//! GraphQL over WebSocket (`graphql-transport-ws`, and the legacy `graphql-ws`
//! subprotocol), driven here around async-graphql's protocol state machine so that a
//! socket follows its session as it is now and cannot hold the server's resources.
//!
//! - **Origin.** Browsers send cookies with a WebSocket upgrade from any site and CORS does
//!   not apply, so an upgrade whose `Origin` is neither PUBLIC_URL's nor one of
//!   CORS_ORIGINS is refused (clients that are not browsers send no Origin and sign in
//!   with a token instead).
//! - **The session, not a copy of the user.** `connection_init` signs the socket in with a
//!   session (token or cookie); every operation, and every event a subscription delivers,
//!   reads that session's viewer now (`accounts::live`, cached for a second and dropped at
//!   once by the NOTIFY every sign-out, password change, block or role change sends). A
//!   session that ended closes the socket with 4403; a changed role or flag completes the
//!   running subscriptions, which the client starts again under the new rules.
//! - **Limits.** `connection_init` within WS_INIT_TIMEOUT or close 4408 (as the protocol
//!   says); WS_MAX_PER_IP sockets per client address and a total below the open-file limit
//!   (`sockets`); WS_MAX_OPERATIONS running operations per socket; a WebSocket ping every
//!   WS_KEEPALIVE, and a peer silent for two of them is dropped.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_graphql::futures_util::stream::BoxStream;
use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, WebSocketProtocols, WsMessage};
use async_graphql::{Data, Executor, Request, ServerError};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Notify, watch};

use super::HttpState;
use super::client_ip::RequestIp;
use super::sockets::{Admitted, Refused};
use crate::accounts::role::Role;
use crate::accounts::{Credential, Viewer, authenticate};
use crate::app::AppState;
use crate::config::HttpConfig;
use crate::db::types::UserId;
use crate::graphql::MailwarmSchema;

/// graphql-transport-ws close codes.
const BAD_REQUEST: u16 = 4400;
const UNAUTHORIZED: u16 = 4401;
const FORBIDDEN: u16 = 4403;
const INIT_TIMEOUT: u16 = 4408;

const SIGN_IN_FAILED: &str = "sign-in failed";
const BAD_TOKEN: &str = "invalid or expired token";

pub async fn graphql_ws(
    State(state): State<HttpState>,
    RequestIp(ip): RequestIp,
    headers: HeaderMap,
    _protocol: async_graphql_axum::GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let http = &state.app.config().http;
    if let Some(origin) = headers.get(header::ORIGIN)
        && !allowed_origin(http, &headers, origin.to_str().unwrap_or(""))
    {
        return (StatusCode::FORBIDDEN, "this origin may not open a GraphQL WebSocket").into_response();
    }
    let Some(protocol) = subprotocol(&headers) else {
        return (StatusCode::BAD_REQUEST, "no GraphQL WebSocket subprotocol offered").into_response();
    };
    let admitted = match state.sockets.admit(ip) {
        Ok(admitted) => admitted,
        Err(Refused::TooManyFromAddress) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                "too many WebSockets from this address (WS_MAX_PER_IP)",
            )
                .into_response();
        }
        Err(Refused::Full) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "this instance holds all the WebSockets it may",
            )
                .into_response();
        }
    };
    // Only with an allowed Origin (checked above; a browser always sends one).
    let cookie_token = headers
        .contains_key(header::ORIGIN)
        .then(|| super::auth::cookie_token(&headers))
        .flatten();
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| serve(socket, state, protocol, cookie_token, admitted))
}

/// The first GraphQL subprotocol the client offers (the extractor above refused the
/// upgrade if there is none).
fn subprotocol(headers: &HeaderMap) -> Option<WebSocketProtocols> {
    headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())?
        .split(',')
        .find_map(|p| WebSocketProtocols::from_str(p.trim()).ok())
}

/// What the socket's driver and its operations share.
#[derive(Default)]
struct Live {
    /// The session or API key `connection_init` signed in with; None for an anonymous socket.
    credential: Mutex<Option<Credential>>,
    /// The viewer as of the last check: a change of role or flag ends the subscriptions.
    viewer: Mutex<Option<(UserId, Role)>>,
    initialised: AtomicBool,
    operations: AtomicUsize,
    /// Bumped when the viewer changes: running operations end.
    generation: watch::Sender<u64>,
    /// Set when an operation found the session ended: the driver closes with 4403.
    ended: Notify,
    ended_flag: AtomicBool,
}

impl Live {
    fn credential(&self) -> Option<Credential> {
        *self.credential.lock().expect("socket lock")
    }

    fn end(&self) {
        self.ended_flag.store(true, Ordering::SeqCst);
        self.ended.notify_one();
    }

    /// The viewer now (None for an anonymous socket); `Gone::Ended` when the session ended,
    /// and then the socket closes. `fresh`: from the database, not the cache.
    async fn check(&self, app: &AppState, fresh: bool) -> Result<Option<Viewer>, Gone> {
        let Some(credential) = self.credential() else {
            return Ok(None);
        };
        match app.live_sessions().viewer(app.pool(), credential, fresh).await {
            Ok(Some(viewer)) => {
                let now = Some((viewer.user_id, viewer.role));
                let mut seen = self.viewer.lock().expect("socket lock");
                if *seen != now {
                    *seen = now;
                    // The rules changed: what runs under the old ones ends.
                    self.generation.send_modify(|g| *g += 1);
                }
                Ok(Some(viewer))
            }
            Ok(None) => {
                self.end();
                Err(Gone::Ended)
            }
            // The database did not answer: keep the socket, refuse what asked (fail closed).
            Err(err) => {
                tracing::warn!(error = %err, "cannot check a socket's session");
                Err(Gone::Unknown)
            }
        }
    }
}

/// Why an operation may not go on.
enum Gone {
    /// The session ended, expired, or its account was blocked or deleted.
    Ended,
    /// The session could not be checked now.
    Unknown,
}

/// Runs each operation of one socket with the session's viewer as it is now.
#[derive(Clone)]
struct SocketExecutor {
    schema: MailwarmSchema,
    app: AppState,
    live: Arc<Live>,
    max_operations: usize,
}

/// Counts one running operation while it lives.
struct Running(Arc<Live>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.operations.fetch_sub(1, Ordering::SeqCst);
    }
}

fn error_stream(message: &str, code: &str) -> BoxStream<'static, async_graphql::Response> {
    let error = crate::graphql::with_code(ServerError::new(message, None), code);
    futures_util::stream::once(async move { async_graphql::Response::from_errors(vec![error]) }).boxed()
}

impl Executor for SocketExecutor {
    async fn execute(&self, request: Request) -> async_graphql::Response {
        self.execute_stream(request, None).next().await.unwrap_or_default()
    }

    fn execute_stream(
        &self,
        request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, async_graphql::Response> {
        let this = self.clone();
        futures_util::stream::once(async move {
            if this.live.operations.fetch_add(1, Ordering::SeqCst) >= this.max_operations {
                this.live.operations.fetch_sub(1, Ordering::SeqCst);
                return error_stream(
                    &format!(
                        "too many operations at once on this socket (at most {}, WS_MAX_OPERATIONS)",
                        this.max_operations
                    ),
                    "BAD_USER_INPUT",
                );
            }
            let running = Running(this.live.clone());
            let viewer = match this.live.check(&this.app, true).await {
                Ok(viewer) => viewer,
                Err(Gone::Ended) => return error_stream("the session has ended; sign in again", "UNAUTHENTICATED"),
                Err(Gone::Unknown) => return error_stream("internal error", "INTERNAL_SERVER_ERROR"),
            };
            let mut changed = this.live.generation.subscribe();
            let started = *changed.borrow_and_update();
            let request = match viewer {
                Some(viewer) => request.data(viewer),
                None => request,
            };
            let responses = Executor::execute_stream(&this.schema, request, session_data);
            let live = this.live.clone();
            let app = this.app.clone();
            responses
                // Each event first checks the session as it is now; one that ended or
                // changed ends the operation (the socket closes, or the client restarts it).
                .then(move |response| {
                    // The operation counts as running for as long as its stream lives.
                    let _counted = &running;
                    let (live, app) = (live.clone(), app.clone());
                    async move {
                        match live.check(&app, false).await {
                            Ok(_) if *live.generation.borrow() == started => Some(response),
                            _ => None,
                        }
                    }
                })
                .take_while(|response| std::future::ready(response.is_some()))
                .filter_map(std::future::ready)
                .take_until(async move {
                    let _ = changed.changed().await;
                })
                .boxed()
        })
        .flatten()
        .boxed()
    }
}

async fn serve(
    socket: WebSocket,
    state: HttpState,
    protocol: WebSocketProtocols,
    cookie_token: Option<String>,
    admitted: Admitted,
) {
    let app = state.app.clone();
    let config = app.config().http.clone();
    let live = Arc::new(Live::default());
    let executor = SocketExecutor {
        schema: state.schema.clone(),
        app: app.clone(),
        live: live.clone(),
        max_operations: config.ws_max_operations as usize,
    };
    let (mut sink, frames) = socket.split();
    // When the peer was last heard from, in milliseconds since `opened`.
    let opened = Instant::now();
    let heard = Arc::new(AtomicI64::new(0));
    let heard_in = heard.clone();
    let input = frames
        .take_while(|frame| std::future::ready(matches!(frame, Ok(m) if !matches!(m, Message::Close(_)))))
        .filter_map(move |frame| {
            heard_in.store(opened.elapsed().as_millis() as i64, Ordering::Relaxed);
            std::future::ready(match frame {
                Ok(Message::Text(text)) => Some(text.as_bytes().to_vec()),
                Ok(Message::Binary(bytes)) => Some(bytes.to_vec()),
                _ => None,
            })
        });
    let init_live = live.clone();
    let init_app = app.clone();
    let graphql =
        async_graphql::http::WebSocket::new(executor, input, protocol).on_connection_init(move |payload| async move {
            // A client signs in with {"token": "..."}, a browser with its session cookie; a bad
            // token ends the connection, none leaves it anonymous.
            let mut data = Data::default();
            crate::graphql::add_loaders(&mut data, &init_app);
            let token = payload
                .get("token")
                .and_then(|t| t.as_str())
                .map(str::to_owned)
                .or(cookie_token);
            if let Some(token) = token {
                let (viewer, _) = authenticate(&init_app, &token)
                    .await
                    .map_err(|_| async_graphql::Error::new(SIGN_IN_FAILED))?
                    .ok_or_else(|| async_graphql::Error::new(BAD_TOKEN))?;
                *init_live.credential.lock().expect("socket lock") = Some(viewer.credential);
                *init_live.viewer.lock().expect("socket lock") = Some((viewer.user_id, viewer.role));
            }
            init_live.initialised.store(true, Ordering::SeqCst);
            Ok(data)
        });
    futures_util::pin_mut!(graphql);

    let init_deadline = tokio::time::sleep(config.ws_init_timeout);
    tokio::pin!(init_deadline);
    let mut keepalive =
        tokio::time::interval_at(tokio::time::Instant::now() + config.ws_keepalive, config.ws_keepalive);
    let mut changes = app.live_sessions().changes();
    // A peer that does not take what we send for this long (a full window, a dead link) is
    // dropped rather than allowed to stall the socket's loop.
    let stall = 2 * config.ws_keepalive;
    let close = |code: u16, reason: &str| {
        Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }))
    };
    loop {
        tokio::select! {
            out = graphql.next() => match out {
                Some(WsMessage::Text(text)) => {
                    if !matches!(tokio::time::timeout(stall, sink.send(Message::Text(text.into()))).await, Ok(Ok(()))) {
                        break;
                    }
                }
                Some(WsMessage::Close(code, reason)) => {
                    // graphql-transport-ws's codes where async-graphql uses others: a refused
                    // sign-in is 4403, a message that is not the protocol's 4400, an
                    // operation before the acknowledgement 4401.
                    let code = match code {
                        1002 if [SIGN_IN_FAILED, BAD_TOKEN].contains(&reason.as_str()) => FORBIDDEN,
                        1002 => BAD_REQUEST,
                        1011 => UNAUTHORIZED,
                        other => other,
                    };
                    let _ = tokio::time::timeout(stall, sink.send(close(code, &reason))).await;
                    break;
                }
                None => break,
            },
            _ = &mut init_deadline, if !live.initialised.load(Ordering::SeqCst) => {
                let _ = tokio::time::timeout(stall, sink.send(close(INIT_TIMEOUT, "Connection initialisation timeout"))).await;
                break;
            }
            _ = live.ended.notified() => {
                let _ = tokio::time::timeout(stall, sink.send(close(FORBIDDEN, "Forbidden: the session has ended"))).await;
                break;
            }
            _ = keepalive.tick() => {
                let silent = opened.elapsed().as_millis() as i64 - heard.load(Ordering::Relaxed);
                if silent > 2 * config.ws_keepalive.as_millis() as i64 {
                    tracing::debug!("dropping a WebSocket whose peer went silent");
                    break;
                }
                if !matches!(tokio::time::timeout(stall, sink.send(Message::Ping(Default::default()))).await, Ok(Ok(()))) {
                    break;
                }
                // An idle socket's session may have expired meanwhile.
                let _ = live.check(&app, false).await;
            }
            changed = changes.recv() => {
                let ours = live.viewer.lock().expect("socket lock").map(|(user, _)| user);
                let concerns_us = match changed {
                    Ok(user) => ours == Some(user),
                    // Missed some: check, to be sure.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => ours.is_some(),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => false,
                };
                if concerns_us {
                    let _ = live.check(&app, true).await;
                }
            }
        }
        if live.ended_flag.load(Ordering::SeqCst) {
            let _ = tokio::time::timeout(stall, sink.send(close(FORBIDDEN, "Forbidden: the session has ended"))).await;
            break;
        }
    }
    // The peer may never answer our close: wait a moment for it, no more.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), sink.close()).await;
    drop(admitted);
}

/// The page's own origin (its host is the one the upgrade is addressed to, as for
/// `http://localhost:8080` when PUBLIC_URL says 127.0.0.1), PUBLIC_URL's, or one of
/// CORS_ORIGINS. A page elsewhere cannot make its Origin name our host.
pub fn allowed_origin(http: &HttpConfig, headers: &HeaderMap, origin: &str) -> bool {
    let origin = origin.trim_end_matches('/');
    let same_host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|host| origin == format!("http://{host}") || origin == format!("https://{host}"));
    same_host
        || http.public_url().origin().ascii_serialization() == origin
        || http.cors_origins.iter().any(|o| o == origin)
}
