//! GraphQL over HTTP, following the GraphQL-over-HTTP specification (checked by the npm
//! `graphql-http` audit in tests/): POST with `application/json` bodies, GET for queries
//! only, answers in `application/graphql-response+json` or `application/json` as asked.
//!
//! A thin handler of our own around `schema.execute`: async-graphql-axum's stock one
//! accepts any content type, runs mutations over GET and answers request errors with 200.

use async_graphql::parser::types::{DocumentOperations, OperationType};
use async_graphql::{ServerError, Variables};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::HttpState;
use super::auth::Caller;
use super::client_ip::RequestIp;
use crate::accounts::ClientIp;
use crate::error::UNAVAILABLE_RETRY_AFTER_SECS;
use crate::graphql::ExecutionStarted;

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

/// The two response media types of the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MediaType {
    /// The spec's own type: request errors are 4xx.
    GraphqlResponseJson,
    /// The legacy type: request errors are 200 with only `errors`.
    Json,
}

impl MediaType {
    fn as_str(self) -> &'static str {
        match self {
            MediaType::GraphqlResponseJson => "application/graphql-response+json; charset=utf-8",
            MediaType::Json => "application/json; charset=utf-8",
        }
    }
}

/// The parameters of a GraphQL request, from a JSON body or a query string.
struct GraphqlParams {
    query: String,
    operation_name: Option<String>,
    variables: Map<String, Value>,
    extensions: Map<String, Value>,
}

pub async fn graphql_post(
    State(state): State<HttpState>,
    RequestIp(ip): RequestIp,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(media) = negotiate(&headers) else {
        return not_acceptable();
    };
    if !is_json_content_type(&headers) {
        return request_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            media,
            "body",
            "send the request as Content-Type: application/json",
        );
    }
    let params = match params_from_body(&body) {
        Ok(params) => params,
        Err((field, message)) => {
            return request_error(StatusCode::BAD_REQUEST, media, field, &message);
        }
    };
    execute(&state, ip, caller, params, media).await
}

pub async fn graphql_get(
    State(state): State<HttpState>,
    RequestIp(ip): RequestIp,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let Some(media) = negotiate(&headers) else {
        return not_acceptable();
    };
    let params = match params_from_query_string(raw.as_deref().unwrap_or("")) {
        Ok(params) => params,
        Err((field, message)) => {
            return request_error(StatusCode::BAD_REQUEST, media, field, &message);
        }
    };
    // GET must not change anything: mutations (and subscriptions) go over POST / WebSocket.
    if selected_operation_type(&params).is_some_and(|ty| ty != OperationType::Query) {
        let mut response = request_error(
            StatusCode::METHOD_NOT_ALLOWED,
            media,
            "query",
            "only queries may be sent with GET; send mutations with POST",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    execute(&state, ip, caller, params, media).await
}

/// Any other method on /graphql.
pub async fn graphql_method_not_allowed(method: Method) -> Response {
    let mut response = (
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not supported on /graphql"),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
    response
}

/// Runs a request that passed the transport checks. The session comes from the bearer
/// header or, for browsers, the session cookie; both handlers only let a cookie through on
/// `application/json` POSTs and on GET queries, which a cross-site form cannot send.
async fn execute(
    state: &HttpState,
    ip: Option<std::net::IpAddr>,
    caller: Caller,
    params: GraphqlParams,
    media: MediaType,
) -> Response {
    let started = ExecutionStarted::default();
    let mut data = async_graphql::Data::default();
    data.insert(started.clone());
    crate::graphql::add_loaders(&mut data, &state.app);
    let mut request =
        async_graphql::Request::new(params.query).variables(Variables::from_json(Value::Object(params.variables)));
    request.data = data;
    if let Some(ip) = ip {
        request = request.data(ClientIp(ip));
    }
    // The signed-in account (see `auth`): both handlers let a cookie through only on
    // `application/json` POSTs and on GET queries, which a cross-site form cannot send.
    let refresh_cookie = caller.refresh_cookie;
    if let Some(viewer) = caller.viewer {
        request = request.data(viewer);
    }
    if let Some(name) = params.operation_name {
        request = request.operation_name(name);
    }
    for (key, value) in params.extensions {
        if let Ok(value) = async_graphql::Value::from_json(value) {
            request.extensions.insert(key, value);
        }
    }

    let mut response = state.schema.execute(request).await;
    if started.get() {
        let mut http_headers = std::mem::take(&mut response.http_headers);
        let mut reply = bounded_response(media, &response, state.app.config().http.response_limit);
        if let Some(cookie) = refresh_cookie.filter(|_| !http_headers.contains_key(header::SET_COOKIE))
            && let Ok(value) = HeaderValue::from_str(&cookie)
        {
            http_headers.insert(header::SET_COOKIE, value);
        }
        for (name, value) in http_headers.iter() {
            reply.headers_mut().append(name, value.clone());
        }
        return reply;
    }

    // A request error (parse, validation, unknown operation): nothing ran, so there is no
    // `data` entry at all.
    let errors: Vec<ServerError> = response
        .errors
        .into_iter()
        .map(|err| crate::graphql::with_code(err, "GRAPHQL_VALIDATION_FAILED"))
        .collect();
    let status = match media {
        MediaType::GraphqlResponseJson => StatusCode::BAD_REQUEST,
        MediaType::Json => StatusCode::OK,
    };
    json_response(status, media, &json!({ "errors": errors }))
}

/// Picks the response type from Accept: the first listed range we can produce; none
/// given means `application/json` (the spec's rule for legacy clients).
fn negotiate(headers: &HeaderMap) -> Option<MediaType> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Some(MediaType::Json);
    };
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let refused = parts.any(|p| {
            matches!(
                p.trim().replace(' ', "").as_str(),
                "q=0" | "q=0.0" | "q=0.00" | "q=0.000"
            )
        });
        if refused {
            continue;
        }
        match essence.as_str() {
            GRAPHQL_RESPONSE_JSON => return Some(MediaType::GraphqlResponseJson),
            "application/json" | "application/*" | "*/*" => return Some(MediaType::Json),
            _ => {}
        }
    }
    None
}

fn not_acceptable() -> Response {
    (
        StatusCode::NOT_ACCEPTABLE,
        "accept application/graphql-response+json or application/json",
    )
        .into_response()
}

/// `application/json`, optionally with `charset=utf-8` (the only charset JSON allows).
fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Ok(mime) = value.parse::<mime::Mime>() else {
        return false;
    };
    mime.essence_str() == "application/json"
        && mime
            .get_param(mime::CHARSET)
            .is_none_or(|charset| charset.as_str().eq_ignore_ascii_case("utf-8"))
}

type ParamError = (&'static str, String);

fn params_from_body(body: &[u8]) -> Result<GraphqlParams, ParamError> {
    if body.is_empty() {
        return Err((
            "body",
            "the request body is empty; send {\"query\": \"...\"}".to_owned(),
        ));
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ("body", format!("the body is not valid JSON: {e}")))?;
    let Value::Object(mut object) = value else {
        return Err((
            "body",
            "the body must be a JSON object (batched requests are not supported)".to_owned(),
        ));
    };
    let query = match object.remove("query") {
        Some(Value::String(query)) => query,
        Some(_) => return Err(("query", "`query` must be a string".to_owned())),
        None => return Err(("query", "the request has no `query`".to_owned())),
    };
    let operation_name = match object.remove("operationName") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name),
        Some(_) => {
            return Err(("operationName", "`operationName` must be a string".to_owned()));
        }
    };
    Ok(GraphqlParams {
        query,
        operation_name,
        variables: object_param(object.remove("variables"), "variables")?,
        extensions: object_param(object.remove("extensions"), "extensions")?,
    })
}

fn object_param(value: Option<Value>, name: &'static str) -> Result<Map<String, Value>, ParamError> {
    match value {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map),
        Some(_) => Err((name, format!("`{name}` must be a JSON object"))),
    }
}

fn params_from_query_string(raw: &str) -> Result<GraphqlParams, ParamError> {
    let mut query = None;
    let mut operation_name = None;
    let mut variables = Map::new();
    let mut extensions = Map::new();
    for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        match key.as_ref() {
            "query" => query = Some(value.into_owned()),
            "operationName" if !value.is_empty() => operation_name = Some(value.into_owned()),
            "variables" | "extensions" => {
                let name = if key == "variables" { "variables" } else { "extensions" };
                let parsed =
                    serde_json::from_str(&value).map_err(|e| (name, format!("`{name}` is not valid JSON: {e}")))?;
                let map = object_param(Some(parsed), name)?;
                if name == "variables" {
                    variables = map
                } else {
                    extensions = map
                }
            }
            _ => {}
        }
    }
    let query = query.ok_or(("query", "the request has no `query` parameter".to_owned()))?;
    Ok(GraphqlParams {
        query,
        operation_name,
        variables,
        extensions,
    })
}

/// The type of the operation the request selects, when the document parses and the
/// selection is unambiguous (otherwise execution reports the error).
fn selected_operation_type(params: &GraphqlParams) -> Option<OperationType> {
    let document = async_graphql::parser::parse_query(&params.query).ok()?;
    match (&document.operations, &params.operation_name) {
        (DocumentOperations::Single(op), _) => Some(op.node.ty),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name.as_str()).map(|op| op.node.ty),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next().map(|op| op.node.ty),
        _ => None,
    }
}

fn request_error(status: StatusCode, media: MediaType, field: &str, message: &str) -> Response {
    let body = json!({
        "errors": [{ "message": message, "extensions": { "code": "BAD_USER_INPUT", "field": field } }]
    });
    json_response(status, media, &body)
}

/// The answer, unless it is larger than RESPONSE_LIMIT: then an error that says so (the
/// complexity limit keeps honest queries far below it; this is the backstop).
fn bounded_response(media: MediaType, response: &async_graphql::Response, limit: usize) -> Response {
    let bytes = match serde_json::to_vec(response) {
        Ok(bytes) => bytes,
        Err(err) => {
            tracing::error!(error = %err, "cannot serialise a GraphQL response");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    if bytes.len() <= limit {
        if unavailable(response) {
            let mut answer = json_bytes(StatusCode::SERVICE_UNAVAILABLE, media, bytes);
            answer
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(UNAVAILABLE_RETRY_AFTER_SECS));
            return answer;
        }
        return json_bytes(StatusCode::OK, media, bytes);
    }
    let error = json!({
        "message": format!(
            "the answer would be {} bytes, more than RESPONSE_LIMIT ({limit} bytes); ask for fewer items",
            bytes.len()
        ),
        "extensions": { "code": "BAD_USER_INPUT", "field": "query" },
    });
    json_response(StatusCode::OK, media, &json!({ "data": null, "errors": [error] }))
}

/// Nothing answered because no database connection was free (`AppError::Unavailable`):
/// a 503 with Retry-After, as for any overloaded HTTP service, so clients and proxies back
/// off; a partial answer stays a 200.
fn unavailable(response: &async_graphql::Response) -> bool {
    !response.errors.is_empty()
        && matches!(response.data, async_graphql::Value::Null)
        && response.errors.iter().all(|error| {
            error
                .extensions
                .as_ref()
                .and_then(|ext| ext.get("code"))
                .is_some_and(|code| *code == async_graphql::Value::from("SERVICE_UNAVAILABLE"))
        })
}

fn json_response(status: StatusCode, media: MediaType, body: &impl serde::Serialize) -> Response {
    let bytes = match serde_json::to_vec(body) {
        Ok(bytes) => bytes,
        Err(err) => {
            tracing::error!(error = %err, "cannot serialise a GraphQL response");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    json_bytes(status, media, bytes)
}

fn json_bytes(status: StatusCode, media: MediaType, bytes: Vec<u8>) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(media.as_str())),
            // Answers depend on who asks: never cache them.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn accept_picks_the_first_type_we_can_produce() {
        assert_eq!(negotiate(&HeaderMap::new()), Some(MediaType::Json));
        assert_eq!(negotiate(&accept("*/*")), Some(MediaType::Json));
        let both = accept("application/graphql-response+json, application/json;q=0.9");
        assert_eq!(negotiate(&both), Some(MediaType::GraphqlResponseJson));
        assert_eq!(negotiate(&accept("text/html, application/json")), Some(MediaType::Json));
        assert_eq!(negotiate(&accept("text/html")), None);
        assert_eq!(negotiate(&accept("application/json;q=0")), None);
    }

    #[test]
    fn body_parameters_are_checked_by_name() {
        assert_eq!(params_from_body(b"{\"query\": 1}").err().unwrap().0, "query");
        assert_eq!(
            params_from_body(b"{\"query\": \"{a}\", \"variables\": [1]}")
                .err()
                .unwrap()
                .0,
            "variables"
        );
        assert_eq!(params_from_body(b"[]").err().unwrap().0, "body");
        let ok = params_from_body(b"{\"query\": \"{a}\", \"variables\": null, \"operationName\": null}").unwrap();
        assert_eq!(ok.query, "{a}");
    }

    #[test]
    fn mutations_are_recognised_in_get_queries() {
        let params = params_from_query_string("query=mutation%20%7B%20__typename%20%7D").unwrap();
        assert_eq!(selected_operation_type(&params), Some(OperationType::Mutation));
        let params = params_from_query_string("query=query%20A%7Ba%7D%20mutation%20B%7Bb%7D&operationName=A").unwrap();
        assert_eq!(selected_operation_type(&params), Some(OperationType::Query));
    }
}
