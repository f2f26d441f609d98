//! HTTP front of the fake GitHub: routing (REST with and without `/api/v3`, the Actions
//! tenant, the message queue), authentication, fault application, and the handlers.
//!
//! Owns: wire formats the fake speaks and the order "count → delay → fault → handle →
//! post-process". Does not own: state transitions (see `state`) or `/_fake/…` (see
//! `control`).

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::{
    body::{Body, Bytes},
    extract::{Query, Request, State as AxumState},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::Response,
};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{
    Shared, control,
    model::{Endpoint, ErrorBodyKind, FakeJitConfig, Fault, RetryAfter, endpoint_name},
    state::{ServiceError, State, rfc3339},
    tokens::verify_app_jwt,
};

const TYPE_SUFFIX: &str = ", GitHub.Actions.Runtime.WebApi";

/// A response before post-processing.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: ReplyBody,
    pub(crate) headers: Vec<(header::HeaderName, String)>,
}

pub(crate) enum ReplyBody {
    Empty,
    Json(Value),
    Text(String),
}

impl Reply {
    pub(crate) fn json(status: u16, v: Value) -> Self {
        Self { status, body: ReplyBody::Json(v), headers: Vec::new() }
    }

    pub(crate) fn empty(status: u16) -> Self {
        Self { status, body: ReplyBody::Empty, headers: Vec::new() }
    }

    pub(crate) fn service(e: ServiceError) -> Self {
        let type_name = if e.type_name.contains(", ") {
            e.type_name.to_owned()
        } else {
            format!("{}{TYPE_SUFFIX}", e.type_name)
        };
        Self::json(
            e.status,
            json!({"typeName": type_name, "message": e.message, "errorCode": 0, "eventId": 3000}),
        )
    }

    fn rest(status: u16, message: &str) -> Self {
        Self::json(status, json!({"message": message, "documentation_url": "https://docs.github.com/rest"}))
    }

    fn unauthorized() -> Self {
        Self::rest(401, "Bad credentials")
    }

    pub(crate) fn not_found() -> Self {
        Self::rest(404, "Not Found")
    }

    fn into_response(self, bom: bool) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut b = Response::builder().status(status);
        for (k, v) in self.headers {
            b = b.header(k, v);
        }
        let (ct, bytes): (Option<&str>, Vec<u8>) = match self.body {
            ReplyBody::Empty => (None, Vec::new()),
            ReplyBody::Json(v) => (Some("application/json; charset=utf-8"), v.to_string().into_bytes()),
            ReplyBody::Text(t) => (Some("text/plain; charset=utf-8"), t.into_bytes()),
        };
        let mut body = bytes;
        if bom && ct.is_some() {
            body.splice(0..0, *b"\xEF\xBB\xBF");
        }
        if let Some(ct) = ct {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        b.body(Body::from(body)).expect("valid response")
    }
}

/// What a request asks for.
enum Op {
    AccessToken(i64),
    RegistrationToken,
    RunnerRegistration,
    RunnerGroups,
    ListScaleSets,
    GetScaleSet(i64),
    CreateScaleSet,
    UpdateScaleSet(i64),
    DeleteScaleSet(i64),
    CreateSession(i64),
    RefreshSession(i64, String),
    DeleteSession(i64, String),
    AcquireJobs(i64),
    AcquirableJobs(i64),
    GenerateJit(i64),
    ListRunners,
    GetRunner(i64),
    RemoveRunner(i64),
    GetMessage(i64),
    DeleteMessage(i64, i64),
}

impl Op {
    fn endpoint(&self) -> Endpoint {
        match self {
            Op::AccessToken(_) => Endpoint::AccessToken,
            Op::RegistrationToken => Endpoint::RegistrationToken,
            Op::RunnerRegistration => Endpoint::RunnerRegistration,
            Op::RunnerGroups => Endpoint::RunnerGroups,
            Op::ListScaleSets | Op::GetScaleSet(_) => Endpoint::GetScaleSet,
            Op::CreateScaleSet => Endpoint::CreateScaleSet,
            Op::UpdateScaleSet(_) => Endpoint::UpdateScaleSet,
            Op::DeleteScaleSet(_) => Endpoint::DeleteScaleSet,
            Op::CreateSession(_) => Endpoint::CreateSession,
            Op::RefreshSession(..) => Endpoint::RefreshSession,
            Op::DeleteSession(..) => Endpoint::DeleteSession,
            Op::AcquireJobs(_) => Endpoint::AcquireJobs,
            Op::AcquirableJobs(_) => Endpoint::AcquirableJobs,
            Op::GenerateJit(_) => Endpoint::GenerateJitConfig,
            Op::ListRunners | Op::GetRunner(_) => Endpoint::GetRunner,
            Op::RemoveRunner(_) => Endpoint::RemoveRunner,
            Op::GetMessage(_) => Endpoint::GetMessage,
            Op::DeleteMessage(..) => Endpoint::DeleteMessage,
        }
    }
}

fn id(s: &str) -> Option<i64> {
    s.parse().ok()
}

/// Routes a request. `Err(reply)` for a tenant that no longer exists.
fn classify(method: &Method, segs: &[&str], current_tenant: &str) -> Result<Option<Op>, Reply> {
    let rest_segs = match segs {
        ["api", "v3", rest @ ..] => rest,
        other => other,
    };
    let m = method.clone();
    let op = match (m, rest_segs) {
        (Method::POST, ["app", "installations", inst, "access_tokens"]) => id(inst).map(Op::AccessToken),
        (Method::POST, ["orgs", _, "actions", "runners", "registration-token"])
        | (Method::POST, ["enterprises", _, "actions", "runners", "registration-token"])
        | (Method::POST, ["repos", _, _, "actions", "runners", "registration-token"]) => {
            Some(Op::RegistrationToken)
        }
        (Method::POST, ["actions", "runner-registration"]) => Some(Op::RunnerRegistration),
        _ => None,
    };
    if op.is_some() {
        return Ok(op);
    }
    if let ["_queue", "scalesets", ss, "message", tail @ ..] = segs {
        let Some(ss) = id(ss) else { return Ok(None) };
        return Ok(match (method.clone(), tail) {
            (Method::GET, []) => Some(Op::GetMessage(ss)),
            (Method::DELETE, [mid]) => id(mid).map(|m| Op::DeleteMessage(ss, m)),
            _ => None,
        });
    }
    let ["_services", "pipelines", tenant, "_apis", api @ ..] = segs else { return Ok(None) };
    if *tenant != current_tenant {
        return Err(Reply::service(ServiceError::new(
            404,
            "GitHub.Services.WebApi.VssServiceResponseException",
            "The tenant does not exist.",
        )));
    }
    Ok(match (method.clone(), api) {
        (Method::GET, ["runtime", "runnergroups"]) => Some(Op::RunnerGroups),
        (Method::GET, ["runtime", "runnerscalesets"]) => Some(Op::ListScaleSets),
        (Method::POST, ["runtime", "runnerscalesets"]) => Some(Op::CreateScaleSet),
        (Method::GET, ["runtime", "runnerscalesets", ss]) => id(ss).map(Op::GetScaleSet),
        (Method::PATCH, ["runtime", "runnerscalesets", ss]) => id(ss).map(Op::UpdateScaleSet),
        (Method::DELETE, ["runtime", "runnerscalesets", ss]) => id(ss).map(Op::DeleteScaleSet),
        (Method::POST, ["runtime", "runnerscalesets", ss, "sessions"]) => id(ss).map(Op::CreateSession),
        (Method::PATCH, ["runtime", "runnerscalesets", ss, "sessions", sid]) => {
            id(ss).map(|ss| Op::RefreshSession(ss, (*sid).to_owned()))
        }
        (Method::DELETE, ["runtime", "runnerscalesets", ss, "sessions", sid]) => {
            id(ss).map(|ss| Op::DeleteSession(ss, (*sid).to_owned()))
        }
        (Method::POST, ["runtime", "runnerscalesets", ss, "acquirejobs"]) => id(ss).map(Op::AcquireJobs),
        (Method::GET, ["runtime", "runnerscalesets", ss, "acquirablejobs"]) => id(ss).map(Op::AcquirableJobs),
        (Method::POST, ["runtime", "runnerscalesets", ss, "generatejitconfig"]) => {
            id(ss).map(Op::GenerateJit)
        }
        (Method::GET, ["distributedtask", "pools", "0", "agents"]) => Some(Op::ListRunners),
        (Method::GET, ["distributedtask", "pools", "0", "agents", r]) => id(r).map(Op::GetRunner),
        (Method::DELETE, ["distributedtask", "pools", "0", "agents", r]) => id(r).map(Op::RemoveRunner),
        _ => None,
    })
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
        .then(|| token.trim().to_owned())
}

/// The axum fallback handler: everything goes through here.
pub(crate) async fn handle(AxumState(shared): AxumState<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 4 << 20).await else {
        return Reply::rest(400, "request body too large").into_response(false);
    };
    let query: HashMap<String, String> =
        Query::<HashMap<String, String>>::try_from_uri(&parts.uri).map(|q| q.0).unwrap_or_default();
    let segs: Vec<&str> = parts.uri.path().split('/').filter(|s| !s.is_empty()).collect();
    if segs.first() == Some(&"_fake") {
        let reply = control::handle(&shared, &parts.method, &segs[1..], &parts.headers, &body).await;
        shared.notify.notify_waiters();
        return reply.into_response(false);
    }
    let current_tenant = format!("t{}", shared.state.lock().expect("state").tenant_generation);
    let op = match classify(&parts.method, &segs, &current_tenant) {
        Ok(Some(op)) => op,
        Ok(None) => return Reply::not_found().into_response(false),
        Err(reply) => return reply.into_response(false),
    };
    let ep = op.endpoint();
    let (delay, error, reset, bom) = {
        let mut st = shared.state.lock().expect("state");
        st.count(&endpoint_name(ep));
        let delay = st.faults.take(|f| matches!(f, Fault::Delay { endpoint, .. } if endpoint.matches(ep)));
        let error =
            st.faults.take(|f| matches!(f, Fault::HttpError { endpoint, .. } if endpoint.matches(ep)));
        let reset =
            st.faults.take(|f| matches!(f, Fault::ResetConnection { endpoint, .. } if endpoint.matches(ep)));
        let bom = st.faults.take(|f| matches!(f, Fault::Bom { endpoint, .. } if endpoint.matches(ep)));
        (delay, error, reset, bom.is_some())
    };
    if let Some(Fault::Delay { delay_ms, .. }) = delay {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }
    if let Some(Fault::HttpError { after_commit: false, .. }) = &error {
        return injected_error(error.as_ref().expect("fault")).into_response(false);
    }
    let reply = dispatch(&shared, op, &parts.headers, &query, &body).await;
    if ep != Endpoint::GetMessage {
        shared.notify.notify_waiters();
    }
    if let Some(f @ Fault::HttpError { after_commit: true, .. }) = &error {
        return injected_error(f).into_response(false);
    }
    let activity = uuid::Uuid::new_v4().to_string();
    let mut reply = reply;
    reply.headers.push((header::HeaderName::from_static("activityid"), activity.clone()));
    reply.headers.push((header::HeaderName::from_static("x-github-request-id"), activity));
    if reset.is_some() {
        return broken(reply);
    }
    reply.into_response(bom)
}

fn injected_error(f: &Fault) -> Reply {
    let Fault::HttpError { status, retry_after, body, .. } = f else { return Reply::empty(500) };
    let mut reply = match body {
        ErrorBodyKind::Json => Reply::service(ServiceError::new(
            *status,
            "GitHub.Services.Common.VssServiceException",
            format!("injected failure ({status})"),
        )),
        ErrorBodyKind::Text => Reply {
            status: *status,
            body: ReplyBody::Text(format!("injected failure ({status})")),
            headers: Vec::new(),
        },
        ErrorBodyKind::Empty => Reply::empty(*status),
    };
    if let Some(ra) = retry_after {
        let v = match ra {
            RetryAfter::Seconds(s) => s.to_string(),
            RetryAfter::HttpDate(s) => {
                httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(*s))
            }
        };
        reply.headers.push((header::RETRY_AFTER, v));
    }
    reply
}

/// A response that breaks off mid-body (the connection is reset by hyper).
fn broken(reply: Reply) -> Response {
    let full = reply.into_response(false);
    let (mut parts, _) = full.into_parts();
    let partial = Bytes::from_static(b"{\"messageId\":");
    parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("4096"));
    let stream = futures::stream::iter(vec![
        Ok::<Bytes, std::io::Error>(partial),
        Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected reset")),
    ]);
    Response::from_parts(parts, Body::from_stream(stream))
}

fn parse_body(body: &Bytes) -> Value {
    let b = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    serde_json::from_slice(b).unwrap_or(Value::Null)
}

fn check_admin(shared: &Shared, st: &State, headers: &HeaderMap) -> Result<(), Reply> {
    let token = bearer(headers).ok_or_else(Reply::unauthorized)?;
    match shared.mint.verify(&token, "admin", Some(st.wall())) {
        Some(c) if c.generation >= st.admin_min_generation => Ok(()),
        _ => Err(Reply::unauthorized()),
    }
}

/// The session a queue token belongs to, if the token is valid for `ss`. `check_exp`
/// false only re-checks revocation (a poll in progress outlives its token's `exp`).
pub(crate) fn check_queue(
    shared: &Shared,
    st: &State,
    headers: &HeaderMap,
    ss: i64,
    check_exp: bool,
) -> Option<String> {
    let token = bearer(headers)?;
    let claims = shared.mint.verify(&token, "queue", check_exp.then(|| st.wall()))?;
    let session = st.sessions.get(&claims.subject)?;
    (session.scale_set_id == ss && claims.generation >= session.min_generation).then(|| session.id.clone())
}

fn scale_set_not_found(id: i64) -> Reply {
    Reply::service(ServiceError::new(
        404,
        "GitHub.DistributedTask.WebApi.RunnerScaleSetNotFoundException",
        format!("Runner scale set {id} not found."),
    ))
}

fn session_json(shared: &Shared, st: &mut State, sid: &str) -> Value {
    let s = &st.sessions[sid];
    let (ss_id, owner) = (s.scale_set_id, s.owner.clone());
    let generation = s.next_generation;
    let token = shared.mint.issue("queue", sid, generation, st.wall(), st.cfg.queue_token_lifetime);
    let name = st.scale_sets.get(&ss_id).map(|s| s.name.clone()).unwrap_or_default();
    let url = if st.faults.take(|f| matches!(f, Fault::EmptyQueueUrl { .. })).is_some() {
        String::new()
    } else {
        format!("{}/_queue/scalesets/{ss_id}/message?sessionId={sid}", st.base_url)
    };
    let stats = st.delivered_statistics(ss_id);
    json!({
        "sessionId": sid,
        "ownerName": owner,
        "runnerScaleSet": {"id": ss_id, "name": name},
        "messageQueueUrl": url,
        "messageQueueAccessToken": token,
        "statistics": stats,
    })
}

fn labels_from(v: &Value) -> Option<Vec<String>> {
    v.as_array().map(|a| {
        a.iter()
            .filter_map(|l| l.get("name").and_then(Value::as_str).or_else(|| l.as_str()).map(str::to_owned))
            .collect()
    })
}

fn disable_update_from(v: &Value) -> Option<bool> {
    v.get("RunnerSetting")
        .or_else(|| v.get("runnerSetting"))
        .and_then(|s| s.get("disableUpdate"))
        .and_then(Value::as_bool)
}

async fn dispatch(
    shared: &Arc<Shared>,
    op: Op,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    body: &Bytes,
) -> Reply {
    if let Op::GetMessage(ss) = op {
        return long_poll(shared, ss, headers, query).await;
    }
    let mut guard = shared.state.lock().expect("state");
    let st = &mut *guard;
    let needs_admin = !matches!(
        op,
        Op::AccessToken(_)
            | Op::RegistrationToken
            | Op::RunnerRegistration
            | Op::AcquireJobs(_)
            | Op::DeleteMessage(..)
    );
    if needs_admin && let Err(r) = check_admin(shared, st, headers) {
        return r;
    }
    let is_actions = needs_admin || matches!(op, Op::AcquireJobs(_));
    if is_actions && st.cfg.strict_headers && query.get("api-version").is_none_or(|v| v != "6.0-preview") {
        return Reply::service(ServiceError::new(
            400,
            "GitHub.Services.WebApi.VssVersionNotSpecifiedException",
            "The API version for this request is required (api-version=6.0-preview).",
        ));
    }
    let wall = st.wall();
    match op {
        Op::AccessToken(_) | Op::RegistrationToken if st.credentials_revoked => Reply::unauthorized(),
        Op::AccessToken(inst) => {
            let Some(app) = st.cfg.app.clone() else {
                return Reply::rest(401, "A JSON web token could not be decoded");
            };
            let Some(jwt) = bearer(headers) else { return Reply::unauthorized() };
            let mut issuers = vec![app.app_id.clone()];
            issuers.extend(app.client_id.clone());
            if let Err(msg) = verify_app_jwt(&jwt, &app.public_key_pem, &issuers, wall) {
                return Reply::rest(401, &msg);
            }
            if inst != app.installation_id {
                return Reply::not_found();
            }
            let token = format!("ghs_{}", random_hex(18));
            let exp = wall + st.cfg.installation_token_lifetime;
            st.installation_tokens.insert(token.clone(), exp);
            Reply::json(201, json!({"token": token, "expires_at": rfc3339(Some(exp)), "permissions": {}}))
        }
        Op::RegistrationToken => {
            let Some(token) = bearer(headers) else { return Reply::unauthorized() };
            let ok = st.cfg.pats.contains(&token)
                || st.installation_tokens.get(&token).is_some_and(|exp| *exp > wall);
            if !ok {
                return Reply::unauthorized();
            }
            let reg = random_hex(20).to_uppercase();
            let exp = wall + st.cfg.registration_token_lifetime;
            st.registration_tokens.insert(reg.clone(), exp);
            Reply::json(201, json!({"token": reg, "expires_at": rfc3339(Some(exp))}))
        }
        Op::RunnerRegistration => {
            if let Some(Fault::RegistrationDenied { status, .. }) =
                st.faults.take(|f| matches!(f, Fault::RegistrationDenied { .. }))
            {
                return Reply::rest(status, "registration token not yet valid");
            }
            let token = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("RemoteAuth "))
                .map(str::trim);
            if token.is_none_or(|t| st.registration_tokens.get(t).is_none_or(|exp| *exp <= wall)) {
                return Reply::unauthorized();
            }
            let req = parse_body(body);
            if req.get("url").and_then(Value::as_str).is_none_or(str::is_empty) {
                return Reply::rest(400, "url is required");
            }
            if std::mem::take(&mut st.change_tenant_pending) {
                st.tenant_generation += 1;
            }
            let admin = shared.mint.issue(
                "admin",
                &st.tenant_generation.to_string(),
                st.admin_min_generation,
                wall,
                st.cfg.admin_token_lifetime,
            );
            Reply::json(
                201,
                json!({"url": st.tenant_base(), "token": admin, "token_schema": "OAuthAccessToken"}),
            )
        }
        Op::RunnerGroups => {
            let wanted = query.get("groupName");
            let groups: Vec<Value> = st
                .cfg
                .runner_groups
                .iter()
                .filter(|(_, n)| wanted.is_none_or(|w| w.eq_ignore_ascii_case(n)))
                .map(|(id, n)| json!({"id": id, "name": n, "size": 0, "isDefaultGroup": *id == 1}))
                .collect();
            Reply::json(200, json!({"count": groups.len(), "value": groups}))
        }
        Op::ListScaleSets => {
            let gid: Option<i64> = query.get("runnerGroupId").and_then(|g| g.parse().ok());
            let name = query.get("name");
            let found: Vec<Value> = st
                .scale_sets
                .values()
                .filter(|s| gid.is_none_or(|g| s.runner_group_id == g) && name.is_none_or(|n| *n == s.name))
                .map(|s| st.scale_set_json(s))
                .collect();
            Reply::json(200, json!({"count": found.len(), "value": found}))
        }
        Op::GetScaleSet(id) => match st.scale_sets.get(&id) {
            Some(s) => Reply::json(200, st.scale_set_json(s)),
            None => scale_set_not_found(id),
        },
        Op::CreateScaleSet => {
            let req = parse_body(body);
            let Some(name) = req.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) else {
                return Reply::service(ServiceError::new(
                    400,
                    "System.ArgumentException",
                    "name is required",
                ));
            };
            let gid = req.get("runnerGroupId").and_then(Value::as_i64).filter(|g| *g > 0).unwrap_or(1);
            if !st.cfg.runner_groups.iter().any(|(id, _)| *id == gid) {
                return Reply::service(ServiceError::new(
                    404,
                    "RunnerGroupNotFoundException",
                    "no such runner group",
                ));
            }
            let labels = req.get("labels").and_then(labels_from).unwrap_or_default();
            let disable = disable_update_from(&req).unwrap_or(false);
            match st.create_scale_set(name, gid, labels, disable) {
                Ok(id) => Reply::json(200, st.scale_set_json(&st.scale_sets[&id])),
                Err(e) => Reply::service(e),
            }
        }
        Op::UpdateScaleSet(id) => {
            let req = parse_body(body);
            let Some(ss) = st.scale_sets.get_mut(&id) else { return scale_set_not_found(id) };
            if let Some(n) = req.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
                ss.name = n.to_owned();
            }
            if let Some(g) = req.get("runnerGroupId").and_then(Value::as_i64).filter(|g| *g > 0) {
                ss.runner_group_id = g;
            }
            if let Some(l) = req.get("labels").and_then(labels_from) {
                ss.labels = l;
            }
            if let Some(d) = disable_update_from(&req) {
                ss.disable_update = d;
            }
            st.schedule();
            Reply::json(200, st.scale_set_json(&st.scale_sets[&id]))
        }
        Op::DeleteScaleSet(id) => {
            if !st.scale_sets.contains_key(&id) {
                return scale_set_not_found(id);
            }
            match st.delete_scale_set(id, false) {
                Ok(()) => Reply::empty(204),
                Err(e) => Reply::service(e),
            }
        }
        Op::CreateSession(ss) => {
            if !st.scale_sets.contains_key(&ss) {
                return scale_set_not_found(ss);
            }
            st.tick();
            if st.sessions.values().any(|s| s.scale_set_id == ss) {
                let name = st.scale_sets[&ss].name.clone();
                return Reply::service(ServiceError::new(
                    409,
                    "GitHub.Actions.Runtime.WebApi.RunnerScaleSetSessionConflictException",
                    format!("The actions runner scaleset {name} already has an active session."),
                ));
            }
            let owner =
                parse_body(body).get("ownerName").and_then(Value::as_str).unwrap_or_default().to_owned();
            let sid = uuid::Uuid::new_v4().to_string();
            st.sessions.insert(
                sid.clone(),
                super::state::Session {
                    id: sid.clone(),
                    scale_set_id: ss,
                    owner,
                    min_generation: 1,
                    next_generation: 1,
                    last_activity: Instant::now(),
                    active_polls: 0,
                },
            );
            Reply::json(200, session_json(shared, st, &sid))
        }
        Op::RefreshSession(ss, sid) => {
            let redis = || {
                Reply::service(ServiceError::new(
                    404,
                    "GitHub.Actions.Runtime.WebApi.RunnerAdminException",
                    "runner referenced a session ID that doesn't exist in redis",
                ))
            };
            if st.faults.take(|f| matches!(f, Fault::RefreshSessionNotFound { .. })).is_some() {
                st.sessions.remove(&sid);
                return redis();
            }
            match st.sessions.get_mut(&sid) {
                Some(s) if s.scale_set_id == ss => {
                    s.next_generation += 1;
                    s.last_activity = Instant::now();
                }
                _ => return redis(),
            }
            Reply::json(200, session_json(shared, st, &sid))
        }
        Op::DeleteSession(ss, sid) => {
            let expired = || {
                Reply::service(ServiceError::new(
                    400,
                    "GitHub.Actions.Runtime.WebApi.RunnerScaleSetSessionExpiredException",
                    format!("The session identifier {sid} is not valid."),
                ))
            };
            if st.faults.take(|f| matches!(f, Fault::SessionExpiredOnDelete { .. })).is_some() {
                st.sessions.remove(&sid);
                return expired();
            }
            match st.sessions.get(&sid) {
                Some(s) if s.scale_set_id == ss => {
                    st.sessions.remove(&sid);
                    Reply::empty(204)
                }
                _ => expired(),
            }
        }
        Op::AcquireJobs(ss) => {
            let Some(sid) = check_queue(shared, st, headers, ss, true) else { return Reply::unauthorized() };
            st.touch_session(&sid);
            let ids: Vec<i64> = serde_json::from_value(parse_body(body)).unwrap_or_default();
            let acquired = st.acquire(ss, &ids);
            Reply::json(200, json!({"count": acquired.len(), "value": acquired}))
        }
        Op::AcquirableJobs(ss) => {
            if !st.scale_sets.contains_key(&ss) {
                return scale_set_not_found(ss);
            }
            let jobs = st.acquirable(ss);
            if jobs.is_empty() {
                Reply::empty(204)
            } else {
                Reply::json(200, json!({"count": jobs.len(), "value": jobs}))
            }
        }
        Op::GenerateJit(ss) => {
            let req = parse_body(body);
            let Some(name) = req.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) else {
                return Reply::service(ServiceError::new(
                    400,
                    "System.ArgumentException",
                    "name is required",
                ));
            };
            match st.register_runner(ss, name) {
                Ok(rid) => {
                    let r = &st.runners[&rid];
                    let jit = FakeJitConfig {
                        server_url: st.base_url.clone(),
                        runner_id: rid,
                        runner_name: r.name.clone(),
                        credential: r.credential.clone(),
                    };
                    Reply::json(
                        200,
                        json!({"runner": State::runner_json(r), "encodedJITConfig": jit.encode()}),
                    )
                }
                Err(e) => Reply::service(e),
            }
        }
        Op::ListRunners => {
            let name = query.get("agentName");
            let found: Vec<Value> = st
                .runners
                .values()
                .filter(|r| r.status.is_registered() && name.is_none_or(|n| *n == r.name))
                .map(State::runner_json)
                .collect();
            Reply::json(200, json!({"count": found.len(), "value": found}))
        }
        Op::GetRunner(id) => match st.runners.get(&id).filter(|r| r.status.is_registered()) {
            Some(r) => Reply::json(200, State::runner_json(r)),
            None => Reply::service(ServiceError::new(
                404,
                "GitHub.DistributedTask.WebApi.AgentNotFoundException",
                format!("No agent found in pool with ID {id}."),
            )),
        },
        Op::RemoveRunner(id) => match st.remove_runner(id) {
            Ok(()) => Reply::empty(204),
            Err(e) => Reply::service(e),
        },
        Op::DeleteMessage(ss, mid) => {
            let Some(sid) = check_queue(shared, st, headers, ss, true) else { return Reply::unauthorized() };
            st.touch_session(&sid);
            st.delete_message(ss, mid);
            Reply::empty(204)
        }
        Op::GetMessage(_) => unreachable!("handled above"),
    }
}

fn random_hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

/// Decrements a session's poll count when the request ends (also when the client hangs up).
struct PollGuard<'a> {
    shared: &'a Shared,
    sid: String,
}

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        let mut st = self.shared.state.lock().expect("state");
        if let Some(s) = st.sessions.get_mut(&self.sid) {
            s.active_polls = s.active_polls.saturating_sub(1);
            s.last_activity = Instant::now();
        }
    }
}

async fn long_poll(
    shared: &Arc<Shared>,
    ss: i64,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Reply {
    let last: i64 = query.get("lastMessageId").and_then(|v| v.parse().ok()).unwrap_or(0);
    let capacity: Option<u32> = headers
        .get("x-scalesetmaxcapacity")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let (sid, hold) = {
        let mut st = shared.state.lock().expect("state");
        if st.cfg.strict_headers {
            let accept_ok = headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("application/json") && v.contains("api-version=6.0-preview"));
            if !accept_ok || capacity.is_none() {
                return Reply::service(ServiceError::new(
                    400,
                    "System.ArgumentException",
                    "get-message needs Accept: application/json; api-version=6.0-preview and X-ScaleSetMaxCapacity",
                ));
            }
        }
        let Some(sid) = check_queue(shared, &st, headers, ss, true) else { return Reply::unauthorized() };
        if let Some(s) = st.sessions.get_mut(&sid) {
            s.active_polls += 1;
        }
        (sid, st.cfg.long_poll_hold)
    };
    let _guard = PollGuard { shared, sid: sid.clone() };
    let deadline = Instant::now() + hold;
    loop {
        let notified = shared.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut st = shared.state.lock().expect("state");
            if check_queue(shared, &st, headers, ss, false).is_none() {
                return Reply::unauthorized();
            }
            st.touch_session(&sid);
            if let Some(c) = capacity {
                st.set_capacity(ss, c);
            }
            if st.faults.take(|f| matches!(f, Fault::EmptyPollResponse { .. })).is_some() {
                return Reply { status: 200, body: ReplyBody::Text(String::new()), headers: Vec::new() };
            }
            if let Some((id, events)) = st.next_message(ss, last) {
                let stats = st.delivered_statistics(ss);
                let message_type =
                    if st.faults.take(|f| matches!(f, Fault::UnknownEnvelopeType { .. })).is_some() {
                        "RunnerScaleSetSomethingNew"
                    } else {
                        "RunnerScaleSetJobMessages"
                    };
                return Reply::json(
                    200,
                    json!({
                        "messageId": id,
                        "messageType": message_type,
                        "body": Value::Array(events).to_string(),
                        "statistics": stats,
                    }),
                );
            }
        }
        if Instant::now() >= deadline {
            return Reply::empty(202);
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}
