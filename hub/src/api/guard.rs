//! Authentication, the access table and the audit log for every gRPC call, in one place: a
//! tower layer on the tonic server, which sees each call's full path before any service.
//!
//! For each call the layer authenticates the bearer token (no, unknown, revoked or expired
//! token: `UNAUTHENTICATED`), looks the path up in [`rules`](super::rules) (a method not in
//! the table: `PERMISSION_DENIED`), refuses a token whose role cannot reach the method in any
//! workspace (`PERMISSION_DENIED`), and puts a [`CallContext`] into the request's extensions.
//! Each handler then calls [`authorize`] once with what the call acts on (the workspace from
//! the request, or the run it names): that is where a reader of one workspace is kept out of
//! another, and a run's token out of every run but its own. When the call ends, a writing
//! method's outcome is appended to the audit log here, so no method can forget it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use shoal_access::{Identity, Refusal, Rule, Target};
use tonic::body::Body;
use tonic::{Code, Extensions, Status};

use super::rules;
use crate::auth::Authenticator;

/// The layer to put on the gRPC server.
#[derive(Clone)]
pub struct AccessLayer {
    auth: Authenticator,
}

impl AccessLayer {
    pub fn new(auth: Authenticator) -> AccessLayer {
        AccessLayer { auth }
    }
}

impl<S> tower::Layer<S> for AccessLayer {
    type Service = AccessGuard<S>;

    fn layer(&self, inner: S) -> AccessGuard<S> {
        AccessGuard {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// The service [`AccessLayer`] wraps every gRPC service in.
#[derive(Clone)]
pub struct AccessGuard<S> {
    inner: S,
    auth: Authenticator,
}

/// Who is calling and what the method needs, for the handler's [`authorize`].
#[derive(Clone)]
pub struct CallContext {
    pub identity: Identity,
    pub rule: Rule,
    /// The workspace and target the handler's check named, for the audit record.
    checked: Arc<Mutex<Option<(String, String)>>>,
}

type GuardFuture<E> = Pin<Box<dyn Future<Output = Result<http::Response<Body>, E>> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for AccessGuard<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = GuardFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_string();
        if rules::is_open(&path) {
            return Box::pin(self.inner.call(request));
        }
        // The ready service goes into the future; a fresh clone waits for the next call.
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let auth = self.auth.clone();
        Box::pin(async move {
            let header = request
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok());
            let identity = match auth.authenticate_header(header) {
                Ok(identity) => identity,
                Err(refusal) => return Ok(refusal_status(refusal).into_http()),
            };
            let Some(rule) = rules::rule_for(&path) else {
                return Ok(Status::permission_denied(format!(
                    "{path} is not in the hub's access table, so no token may call it"
                ))
                .into_http());
            };
            if let Err(refusal) = identity.may_call(rule) {
                let status = refusal_status(refusal);
                if rule.writes {
                    record(&auth, &identity, &path, None, status.code());
                }
                return Ok(status.into_http());
            }
            let checked = Arc::new(Mutex::new(None));
            request.extensions_mut().insert(CallContext {
                identity: identity.clone(),
                rule,
                checked: checked.clone(),
            });
            let response = inner.call(request).await?;
            if rule.writes {
                // A refusal travels in the headers (trailers-only); an answer that starts
                // normally is recorded as ok.
                let code = Status::from_header_map(response.headers())
                    .map_or(Code::Ok, |status| status.code());
                let target = checked.lock().ok().and_then(|c| c.clone());
                record(&auth, &identity, &path, target, code);
            }
            Ok(response)
        })
    }
}

/// Appends one audit record for a gRPC call.
fn record(
    auth: &Authenticator,
    identity: &Identity,
    method: &str,
    target: Option<(String, String)>,
    code: Code,
) {
    let (workspace, target) = target.unwrap_or_default();
    auth.audit(identity, &workspace, method, &target, &code_name(code));
}

/// `ok`, or a gRPC code as its canonical name (`PERMISSION_DENIED`).
pub(crate) fn code_name(code: Code) -> String {
    if code == Code::Ok {
        return "ok".into();
    }
    let mut name = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

/// The one place a refusal becomes a gRPC status.
pub(crate) fn refusal_status(refusal: Refusal) -> Status {
    match refusal {
        Refusal::Unauthenticated(message) => Status::unauthenticated(message),
        Refusal::PermissionDenied(message) => Status::permission_denied(message),
        Refusal::Internal(message) => {
            tracing::error!(error = %message, "cannot check a token");
            Status::internal("internal error; see the hub's log")
        }
    }
}

/// Checks that the caller may act on `target` under its method's rule, and returns who it is.
/// Every handler calls this once it knows what the call acts on.
///
/// # Errors
/// `PERMISSION_DENIED` naming the role needed and the role held; `INTERNAL` when the call did
/// not pass the access layer (a wiring mistake, never the caller's).
pub(crate) fn authorize(extensions: &Extensions, target: Target<'_>) -> Result<Identity, Status> {
    let context = extensions.get::<CallContext>().ok_or_else(|| {
        tracing::error!("a call reached a handler without the access layer");
        Status::internal("internal error; see the hub's log")
    })?;
    if let Ok(mut checked) = context.checked.lock() {
        *checked = Some((
            target.workspace().unwrap_or_default().to_string(),
            target.describe(),
        ));
    }
    context
        .identity
        .check(context.rule, &target)
        .map_err(refusal_status)?;
    Ok(context.identity.clone())
}

/// [`authorize`] for a call on anything in a workspace named by the request (empty:
/// `default`).
///
/// # Errors
/// As [`authorize`].
pub(crate) fn authorize_in(extensions: &Extensions, workspace: &str) -> Result<Identity, Status> {
    authorize(
        extensions,
        Target::Workspace(super::workspace_or_default(workspace)),
    )
}

/// Who is calling, for listings that filter each item by the caller's roles (workspaces,
/// tokens, audit records) instead of naming one target.
///
/// # Errors
/// `INTERNAL` when the call did not pass the access layer.
pub(crate) fn caller(extensions: &Extensions) -> Result<Identity, Status> {
    extensions
        .get::<CallContext>()
        .map(|context| context.identity.clone())
        .ok_or_else(|| {
            tracing::error!("a call reached a handler without the access layer");
            Status::internal("internal error; see the hub's log")
        })
}

/// Checks the caller against a stronger rule than its method's (creating an admin token
/// through a method owners may call), on `target`.
///
/// # Errors
/// As [`authorize`].
pub(crate) fn authorize_as(
    extensions: &Extensions,
    rule: Rule,
    target: Target<'_>,
) -> Result<Identity, Status> {
    let identity = authorize(extensions, target)?;
    identity.check(rule, &target).map_err(refusal_status)?;
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_their_canonical_names() {
        assert_eq!(code_name(Code::PermissionDenied), "PERMISSION_DENIED");
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
        assert_eq!(code_name(Code::Ok), "ok");
    }
}
