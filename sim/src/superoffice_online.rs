//! SuperOffice Online around the tenant simulator (sources.md §2, "server to server"):
//!
//! - the **environment's host** (`https://{env}.superoffice.com`): `POST
//!   /Login/api/PartnerSystemUser/Authenticate` checks the signed system user token (RSA PKCS#1
//!   v1.5 SHA-256 with the application's public key, a time stamp within minutes), the client
//!   secret and the context identifier, and answers a JWT (RS256, signed with the key the JWKS at
//!   `/login/.well-known/jwks` lists under its `kid`) whose claims carry a new ticket;
//!   `GET /api/state/{ctx}` tells the tenant's state and host; any API call there is answered
//!   421, as SuperOffice does since November 2023;
//! - **two tenant hosts** (as `sod2.` and `sod3.`) serving the tenant under `/{ctx}/api/v1/…`; the
//!   one the tenant is not on answers 421 ("Wrong subdomain used to access tenant").
//!
//! Knobs for tests and the demo: tickets that expire after N requests
//! ([`OnlineSim::set_ticket_budget`]) or at once ([`OnlineSim::expire_tickets`]), the tenant moving
//! ([`OnlineSim::move_tenant`]), a maintenance window ([`OnlineSim::set_maintenance`]: the state
//! says `OfflineMaintenance`, the tenant answers 503), a JWKS key rotation
//! ([`OnlineSim::rotate_signing_key`]) and a forged JWT ([`OnlineSim::forge_next_token`]).
//! The keys are test keys made for this simulator, never anyone's real ones.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use chrono::{TimeDelta, Utc};
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::signature::Verifier;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{Value, json};

use super::superoffice::{SimChat, SimCredentials, SuperOfficeSim};
use super::{SimServer, serve_at};

/// The application's private key (test key, PKCS#1 PEM), as the operator configures it.
pub const APPLICATION_KEY_PEM: &str = include_str!("keys/application.pem");
/// The keys the simulated SuperOffice signs JWTs with (the second after a rotation).
const SIGNING_KEYS: [(&str, &str); 2] = [
    ("so-2026-1", include_str!("keys/superoffice-1.pem")),
    ("so-2026-2", include_str!("keys/superoffice-2.pem")),
];
/// A key SuperOffice does not have: a forged JWT is signed with it.
const FORGER_KEY: &str = include_str!("keys/forger.pem");
/// The JWT's issuer.
pub const ISSUER: &str = "SuperOffice AS";
const CLAIM: &str = "http://schemes.superoffice.net/identity/";
/// The tenant's serial (its JWT's audience is `spn:<serial>`).
pub const SERIAL: &str = "3857629419";

/// What the operator of an Online account configures.
#[derive(Debug, Clone)]
pub struct OnlineCredentials {
    pub context: String,
    /// The application's client secret (ApplicationToken, SO-AppToken).
    pub app_token: String,
    pub system_user_token: String,
}

impl Default for OnlineCredentials {
    fn default() -> Self {
        OnlineCredentials {
            context: "Cust12345".into(),
            app_token: "sim-client-secret".into(),
            system_user_token: "SessionSync Sim-aG9sZGVyLXRva2Vu".into(),
        }
    }
}

/// The application's key in .NET's RSA-XML form (as SuperOffice's developer portal hands it out).
pub fn application_key_xml() -> String {
    let mut key = RsaPrivateKey::from_pkcs1_pem(APPLICATION_KEY_PEM).expect("the test key");
    key.precompute().expect("the test key");
    let b = |n: &rsa::BigUint| base64::engine::general_purpose::STANDARD.encode(n.to_bytes_be());
    let primes = key.primes();
    let qinv = key
        .qinv()
        .and_then(|v| v.to_biguint())
        .expect("precomputed");
    format!(
        "<RSAKeyValue><Modulus>{}</Modulus><Exponent>{}</Exponent><P>{}</P><Q>{}</Q><DP>{}</DP><DQ>{}</DQ><InverseQ>{}</InverseQ><D>{}</D></RSAKeyValue>",
        b(key.n()),
        b(key.e()),
        b(&primes[0]),
        b(&primes[1]),
        b(key.dp().expect("precomputed")),
        b(key.dq().expect("precomputed")),
        b(&qinv),
        b(key.d()),
    )
}

/// The state of the simulated Online service.
pub struct Online {
    creds: OnlineCredentials,
    app_key: RsaPublicKey,
    /// Which of [`SIGNING_KEYS`] signs now; the JWKS lists those from 0 to it... or only it
    /// after [`OnlineSim::retire_old_keys`].
    signing: AtomicUsize,
    only_current_in_jwks: AtomicBool,
    forge_next: AtomicBool,
    /// Hostile answers (tests): the state API names this root instead of the tenant's host.
    endpoint_override: Mutex<Option<String>>,
    /// The JWT's `ctx` claim names this tenant instead of the one asked for.
    jwt_context: Mutex<Option<String>>,
    /// The next JWTs are signed under a key id the JWKS does not list.
    unknown_kid: AtomicBool,
    /// Authenticate answers with this status and body (e.g. a 302 quoting what it was sent).
    authenticate_answer: Mutex<Option<(u16, String)>>,
    /// Issued tickets and the requests each may still make (`None`: any number).
    tickets: Mutex<HashMap<String, Option<i64>>>,
    /// Requests a newly issued ticket may make (0: any number).
    ticket_budget: AtomicI64,
    next_ticket: AtomicU64,
    /// The tenant hosts' ports. A host's root is `http://{name}:{port}/{ctx}`, with the name
    /// the client used for the environment's host (so that it works inside a compose network).
    pub(crate) hosts: Mutex<Vec<u16>>,
    current: AtomicUsize,
    maintenance: Mutex<Option<String>>,
    /// After this many more admitted tenant requests, the tenant moves to the other host (-1:
    /// never), or goes down for maintenance.
    move_after: AtomicI64,
    expire_after: AtomicI64,
    maintenance_after: Mutex<Option<(i64, String)>>,
    /// Every ticket ever issued (tests look for them where secrets must not be).
    pub issued: Mutex<Vec<String>>,
    /// Counters tests read.
    pub authentications: AtomicU64,
    pub refused_authentications: AtomicU64,
    /// Authenticate requests received, whatever they were answered.
    pub authenticate_calls: AtomicU64,
    pub jwks_reads: AtomicU64,
    pub state_reads: AtomicU64,
    /// Every request a tenant host received: (host index, status answered by the gate or 200).
    pub tenant_requests: Mutex<Vec<(usize, u16)>>,
    /// API calls sent to the environment's host (answered 421).
    pub environment_api_calls: AtomicU64,
}

impl Online {
    fn new(creds: OnlineCredentials) -> Self {
        let app = RsaPrivateKey::from_pkcs1_pem(APPLICATION_KEY_PEM).expect("the test key");
        Online {
            creds,
            app_key: app.to_public_key(),
            signing: AtomicUsize::new(0),
            only_current_in_jwks: AtomicBool::new(false),
            forge_next: AtomicBool::new(false),
            endpoint_override: Mutex::new(None),
            jwt_context: Mutex::new(None),
            unknown_kid: AtomicBool::new(false),
            authenticate_answer: Mutex::new(None),
            tickets: Mutex::new(HashMap::new()),
            ticket_budget: AtomicI64::new(0),
            next_ticket: AtomicU64::new(1),
            hosts: Mutex::new(Vec::new()),
            current: AtomicUsize::new(0),
            maintenance: Mutex::new(None),
            move_after: AtomicI64::new(-1),
            expire_after: AtomicI64::new(-1),
            maintenance_after: Mutex::new(None),
            issued: Mutex::new(Vec::new()),
            authentications: AtomicU64::new(0),
            refused_authentications: AtomicU64::new(0),
            authenticate_calls: AtomicU64::new(0),
            jwks_reads: AtomicU64::new(0),
            state_reads: AtomicU64::new(0),
            tenant_requests: Mutex::new(Vec::new()),
            environment_api_calls: AtomicU64::new(0),
        }
    }

    /// Admits a tenant request (called by the tenant's gate): the right host, the tenant
    /// running, a live ticket with the client secret. `Err` is the answer instead.
    pub(crate) fn admit(&self, headers: &HeaderMap) -> Result<(), Box<Response>> {
        let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
        let port: Option<u16> = h("host").rsplit_once(':').and_then(|(_, p)| p.parse().ok());
        let hosts = self.hosts.lock().expect("hosts").clone();
        let index = hosts
            .iter()
            .position(|p| Some(*p) == port)
            .unwrap_or(usize::MAX);
        let record = |status: u16| {
            self.tenant_requests
                .lock()
                .expect("log")
                .push((index, status));
        };
        if index != self.current.load(Ordering::SeqCst) {
            record(421);
            return Err(Box::new(misdirected()));
        }
        if self.maintenance.lock().expect("state").is_some() {
            record(503);
            return Err(Box::new(
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [("content-type", "text/html")],
                    "<html><body>The service is down for maintenance</body></html>",
                )
                    .into_response(),
            ));
        }
        let auth = h("authorization");
        let (scheme, value) = auth.split_once(' ').unwrap_or(("", ""));
        let mut tickets = self.tickets.lock().expect("tickets");
        let live = scheme.eq_ignore_ascii_case("soticket")
            && h("so-apptoken") == self.creds.app_token
            && match tickets.get_mut(value) {
                Some(Some(left)) if *left > 0 => {
                    *left -= 1;
                    true
                }
                Some(None) => true,
                _ => false,
            };
        if !live {
            record(401);
            return Err(Box::new(
                (
                    StatusCode::UNAUTHORIZED,
                    [("content-type", "application/json")],
                    json!({"Error": "Authentication failed", "ErrorType": "SoException"})
                        .to_string(),
                )
                    .into_response(),
            ));
        }
        record(200);
        if self.expire_after.load(Ordering::SeqCst) >= 0
            && self.expire_after.fetch_sub(1, Ordering::SeqCst) == 1
        {
            tickets.clear();
        }
        drop(tickets);
        if self.move_after.load(Ordering::SeqCst) >= 0
            && self.move_after.fetch_sub(1, Ordering::SeqCst) == 1
        {
            let i = self.current.load(Ordering::SeqCst);
            self.current.store(1 - i, Ordering::SeqCst);
        }
        let mut later = self.maintenance_after.lock().expect("state");
        if let Some((n, state)) = later.as_mut() {
            *n -= 1;
            if *n <= 0 {
                *self.maintenance.lock().expect("state") = Some(state.clone());
                *later = None;
            }
        }
        Ok(())
    }

    /// The root of the tenant on its current host, named `name`.
    fn root(&self, name: &str) -> String {
        let hosts = self.hosts.lock().expect("hosts");
        let port = hosts
            .get(self.current.load(Ordering::SeqCst))
            .copied()
            .unwrap_or_default();
        format!("http://{name}:{port}/{}", self.creds.context)
    }

    fn state_json(&self, name: &str) -> Value {
        let root = self
            .endpoint_override
            .lock()
            .expect("override")
            .clone()
            .unwrap_or_else(|| self.root(name));
        let down = self.maintenance.lock().expect("state").clone();
        let (state, running, valid) = match down {
            Some(s) => (s, false, Utc::now() + TimeDelta::minutes(30)),
            None => (
                "Running".to_string(),
                true,
                Utc::now() + TimeDelta::hours(1),
            ),
        };
        json!({
            "ContextIdentifier": self.creds.context,
            "Endpoint": root,
            "State": state,
            "IsRunning": running,
            "ValidUntil": valid.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "Api": format!("{root}/api"),
        })
    }

    fn jwks(&self) -> Value {
        let now = self.signing.load(Ordering::SeqCst);
        let from = if self.only_current_in_jwks.load(Ordering::SeqCst) {
            now
        } else {
            0
        };
        let keys: Vec<Value> = SIGNING_KEYS[from..=now]
            .iter()
            .map(|(kid, pem)| {
                let key = RsaPrivateKey::from_pkcs1_pem(pem).expect("the test key");
                let b = |n: &rsa::BigUint| {
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(n.to_bytes_be())
                };
                json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": b(key.n()), "e": b(key.e())})
            })
            .collect();
        json!({ "keys": keys })
    }

    /// Checks a signed system user token: `<token>.<yyyyMMddHHmm>.<base64 signature>`.
    fn check_signed(&self, signed: &str) -> Result<(), String> {
        let (data, signature) = signed
            .rsplit_once('.')
            .ok_or("SignedSystemToken is not <data>.<signature>")?;
        let (token, stamp) = data
            .rsplit_once('.')
            .ok_or("SignedSystemToken data is not <token>.<time>")?;
        if token != self.creds.system_user_token {
            // Quoting what it was sent, as some services do: a client must not repeat it.
            return Err(format!("Unknown system user token '{token}'"));
        }
        let at = chrono::NaiveDateTime::parse_from_str(&format!("{stamp}00"), "%Y%m%d%H%M%S")
            .map_err(|_| "The time stamp is not yyyyMMddHHmm")?
            .and_utc();
        if (Utc::now() - at).abs() > TimeDelta::minutes(10) {
            return Err("The signed token is too old or from the future".into());
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(signature)
            .map_err(|_| "The signature is not base64")?;
        let sig = rsa::pkcs1v15::Signature::try_from(bytes.as_slice())
            .map_err(|_| "The signature is malformed")?;
        rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(self.app_key.clone())
            .verify(data.as_bytes(), &sig)
            .map_err(|_| "Signature verification failed".to_string())
    }

    fn issue(&self) -> String {
        let n = self.next_ticket.fetch_add(1, Ordering::SeqCst);
        let ticket = format!("7T:{n:04}sim{}", rand::random::<u32>());
        let budget = self.ticket_budget.load(Ordering::SeqCst);
        self.tickets
            .lock()
            .expect("tickets")
            .insert(ticket.clone(), (budget > 0).then_some(budget));
        self.issued.lock().expect("issued").push(ticket.clone());
        ticket
    }

    fn jwt(&self, ticket: &str, name: &str) -> String {
        let forged = self.forge_next.swap(false, Ordering::SeqCst);
        let (kid, pem) = SIGNING_KEYS[self.signing.load(Ordering::SeqCst)];
        let pem = if forged { FORGER_KEY } else { pem };
        let kid = if self.unknown_kid.load(Ordering::SeqCst) {
            "so-unknown-kid"
        } else {
            kid
        };
        let context = self
            .jwt_context
            .lock()
            .expect("context")
            .clone()
            .unwrap_or_else(|| self.creds.context.clone());
        let key = RsaPrivateKey::from_pkcs1_pem(pem).expect("the test key");
        let der = key.to_pkcs1_der().expect("the test key");
        let root = self.root(name);
        let now = Utc::now().timestamp();
        let claims = json!({
            "iss": ISSUER,
            "aud": format!("spn:{SERIAL}"),
            "nbf": now - 5,
            "iat": now,
            "exp": now + 3600,
            format!("{CLAIM}ticket"): ticket,
            format!("{CLAIM}ctx"): context,
            format!("{CLAIM}serial"): SERIAL,
            format!("{CLAIM}webapi_url"): format!("{root}/api/"),
            format!("{CLAIM}netserver_url"): format!("{root}/Remote/Services88/"),
            format!("{CLAIM}system_token"): self.creds.system_user_token,
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(kid.to_string());
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_rsa_der(der.as_bytes()),
        )
        .expect("a JWT")
    }
}

fn misdirected() -> Response {
    (
        StatusCode::MISDIRECTED_REQUEST,
        [("content-type", "application/json")],
        json!({"Error": "Wrong subdomain used to access tenant", "ErrorType": "MisdirectedRequest"})
            .to_string(),
    )
        .into_response()
}

/// The host name the client used (without the port).
fn host_name(headers: &HeaderMap) -> String {
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    match host.rsplit_once(':') {
        Some((name, port)) if port.parse::<u16>().is_ok() => name.to_string(),
        _ => host.to_string(),
    }
}

async fn authenticate(State(o): State<Arc<Online>>, headers: HeaderMap, body: String) -> Response {
    o.authenticate_calls.fetch_add(1, Ordering::SeqCst);
    if let Some((status, text)) = o.authenticate_answer.lock().expect("answer").clone() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FOUND);
        return (
            status,
            [("location", "https://login.example/?return=x")],
            text,
        )
            .into_response();
    }
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let refuse = |msg: &str| {
        o.refused_authentications.fetch_add(1, Ordering::SeqCst);
        axum::Json(json!({"IsSuccessful": false, "Token": null, "ErrorMessage": msg}))
            .into_response()
    };
    if s("ApplicationToken") != o.creds.app_token {
        return refuse("Unknown application token");
    }
    if s("ContextIdentifier") != o.creds.context {
        return refuse("Unknown context identifier");
    }
    if let Err(e) = o.check_signed(&s("SignedSystemToken")) {
        return refuse(&e);
    }
    if !s("ReturnTokenType").eq_ignore_ascii_case("jwt") {
        return refuse("Only ReturnTokenType JWT is simulated");
    }
    o.authentications.fetch_add(1, Ordering::SeqCst);
    let ticket = o.issue();
    axum::Json(json!({"IsSuccessful": true, "Token": o.jwt(&ticket, &host_name(&headers)), "ErrorMessage": ""}))
        .into_response()
}

async fn jwks(State(o): State<Arc<Online>>) -> Response {
    o.jwks_reads.fetch_add(1, Ordering::SeqCst);
    axum::Json(o.jwks()).into_response()
}

async fn state(
    State(o): State<Arc<Online>>,
    headers: HeaderMap,
    Path(ctx): Path<String>,
) -> Response {
    o.state_reads.fetch_add(1, Ordering::SeqCst);
    if !ctx.eq_ignore_ascii_case(&o.creds.context) {
        return (StatusCode::NOT_FOUND, "Unknown tenant").into_response();
    }
    axum::Json(o.state_json(&host_name(&headers))).into_response()
}

async fn environment_api(State(o): State<Arc<Online>>) -> Response {
    o.environment_api_calls.fetch_add(1, Ordering::SeqCst);
    misdirected()
}

/// `POST /sim/maintenance?seconds=N&state=S` (the simulator's own control, not SuperOffice's):
/// the tenant goes down in state `S` (default `OfflineMaintenance`) for `N` seconds (default 60).
async fn start_maintenance(
    State(o): State<Arc<Online>>,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    let seconds: u64 = q.get("seconds").and_then(|s| s.parse().ok()).unwrap_or(60);
    let state = q
        .get("state")
        .cloned()
        .unwrap_or_else(|| "OfflineMaintenance".into());
    *o.maintenance.lock().expect("state") = Some(state.clone());
    let o2 = o.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
        *o2.maintenance.lock().expect("state") = None;
    });
    format!("tenant down ({state}) for {seconds} s\n").into_response()
}

/// `DELETE /sim/maintenance`: the tenant runs again.
async fn end_maintenance(State(o): State<Arc<Online>>) -> Response {
    *o.maintenance.lock().expect("state") = None;
    "tenant running\n".into_response()
}

/// `POST /sim/move`: the tenant moves to its other host.
async fn move_host(State(o): State<Arc<Online>>) -> Response {
    let i = o.current.load(Ordering::SeqCst);
    o.current.store(1 - i, Ordering::SeqCst);
    let port = o.hosts.lock().expect("hosts")[1 - i];
    format!("tenant moved to the host on port {port}\n").into_response()
}

/// `POST /sim/expire-tickets`: every ticket issued so far stops working.
async fn expire(State(o): State<Arc<Online>>) -> Response {
    o.tickets.lock().expect("tickets").clear();
    "tickets expired\n".into_response()
}

/// SuperOffice Online: the environment's host and two tenant hosts around one tenant.
pub struct OnlineSim {
    pub tenant: SuperOfficeSim,
    pub environment: SimServer,
    pub hosts: [SimServer; 2],
    pub online: Arc<Online>,
    pub creds: OnlineCredentials,
}

impl OnlineSim {
    pub async fn start(creds: OnlineCredentials, chats: Vec<SimChat>) -> std::io::Result<Self> {
        Self::start_at(
            creds,
            chats,
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .await
    }

    /// [`OnlineSim::start`] with the environment's host on `environment` (the tenant hosts on
    /// free ports of 127.0.0.1).
    pub async fn start_at(
        creds: OnlineCredentials,
        chats: Vec<SimChat>,
        environment: std::net::SocketAddr,
    ) -> std::io::Result<Self> {
        let online = Arc::new(Online::new(creds.clone()));
        // The tenant simulator's own credentials are never issued: only tickets of the flow pass.
        let unused = SimCredentials {
            ticket: format!("unused-{}", rand::random::<u64>()),
            app_token: creds.app_token.clone(),
            bearer: format!("unused-{}", rand::random::<u64>()),
        };
        let (tenant_router, shared) = super::superoffice::router(unused, chats);
        shared.set_online(online.clone());
        let nested = Router::new().nest(&format!("/{}", creds.context), tenant_router);
        let on = std::net::SocketAddr::new(environment.ip(), 0);
        let a = serve_at(nested.clone(), on).await?;
        let b = serve_at(nested, on).await?;
        *online.hosts.lock().expect("hosts") = vec![a.addr.port(), b.addr.port()];
        let env_router = Router::new()
            .route(
                "/Login/api/PartnerSystemUser/Authenticate",
                post(authenticate),
            )
            .route("/login/.well-known/jwks", get(jwks))
            .route("/api/state/{ctx}", get(state))
            .route(
                "/sim/maintenance",
                post(start_maintenance).delete(end_maintenance),
            )
            .route("/sim/move", post(move_host))
            .route("/sim/expire-tickets", post(expire))
            .fallback(environment_api)
            .with_state(online.clone());
        let environment = serve_at(env_router, environment).await?;
        let tenant =
            SuperOfficeSim::from_shared(shared, format!("{}/{}", a.base_url(), creds.context));
        Ok(OnlineSim {
            tenant,
            environment,
            hosts: [a, b],
            online,
            creds,
        })
    }

    /// The `environment` an account configures: this simulator's environment host.
    pub fn environment_url(&self) -> String {
        self.environment.base_url()
    }

    /// The tenant's root on the host it is on now.
    pub fn current_root(&self) -> String {
        self.online.root("127.0.0.1")
    }

    /// The tenant moves to the other host; the one it leaves answers 421 from now on.
    pub fn move_tenant(&self) {
        let i = self.online.current.load(Ordering::SeqCst);
        self.online.current.store(1 - i, Ordering::SeqCst);
    }

    /// Tickets issued from now on allow `n` requests each, then answer 401 (0: any number).
    pub fn set_ticket_budget(&self, n: i64) {
        self.online.ticket_budget.store(n, Ordering::SeqCst);
    }

    /// Every ticket issued so far stops working (as after 6 idle hours).
    pub fn expire_tickets(&self) {
        self.online.tickets.lock().expect("tickets").clear();
    }

    /// `Some(state)` (e.g. `OfflineMaintenance`): the tenant is down, its API answers 503 and
    /// the state API says so; `None`: running again.
    pub fn set_maintenance(&self, state: Option<&str>) {
        *self.online.maintenance.lock().expect("state") = state.map(str::to_string);
    }

    /// After `n` more tenant requests answered, the tenant moves to the other host (mid-run).
    pub fn move_after_requests(&self, n: i64) {
        self.online.move_after.store(n, Ordering::SeqCst);
    }

    /// After `n` more tenant requests answered, every ticket issued so far expires (mid-run, as
    /// after 6 idle hours); tickets issued later live on.
    pub fn expire_tickets_after_requests(&self, n: i64) {
        self.online.expire_after.store(n, Ordering::SeqCst);
    }

    /// After `n` more tenant requests answered, the tenant goes down in `state` (mid-run).
    pub fn maintenance_after_requests(&self, n: i64, state: &str) {
        *self.online.maintenance_after.lock().expect("state") = Some((n, state.to_string()));
    }

    /// Every ticket issued so far.
    pub fn issued_tickets(&self) -> Vec<String> {
        self.online.issued.lock().expect("issued").clone()
    }

    /// SuperOffice signs with its next key from now on; the JWKS lists it (beside the old one).
    pub fn rotate_signing_key(&self) {
        self.online
            .signing
            .store(SIGNING_KEYS.len() - 1, Ordering::SeqCst);
    }

    /// The JWKS lists only the key in use.
    pub fn retire_old_keys(&self) {
        self.online
            .only_current_in_jwks
            .store(true, Ordering::SeqCst);
    }

    /// Hostile: the state API names `root` (any URL) as the tenant's `Endpoint`; `None` stops it.
    pub fn name_endpoint(&self, root: Option<&str>) {
        *self.online.endpoint_override.lock().expect("override") = root.map(str::to_string);
    }

    /// Hostile: the JWTs name tenant `ctx` (a token of another tenant of the application);
    /// `None` stops it.
    pub fn token_for_context(&self, ctx: Option<&str>) {
        *self.online.jwt_context.lock().expect("context") = ctx.map(str::to_string);
    }

    /// The JWTs are signed under a key id the JWKS does not list (while `on`).
    pub fn sign_with_unknown_kid(&self, on: bool) {
        self.online.unknown_kid.store(on, Ordering::SeqCst);
    }

    /// Authenticate answers `status` with `body` (a redirect or an error page that may quote what
    /// it was sent); `None` answers as SuperOffice does again.
    pub fn answer_authenticate(&self, answer: Option<(u16, &str)>) {
        *self.online.authenticate_answer.lock().expect("answer") =
            answer.map(|(s, b)| (s, b.to_string()));
    }

    /// Times the JWKS was read.
    pub fn jwks_reads(&self) -> u64 {
        self.online.jwks_reads.load(Ordering::SeqCst)
    }

    /// The next JWT is signed with a key SuperOffice does not have, under its current `kid`.
    pub fn forge_next_token(&self) {
        self.online.forge_next.store(true, Ordering::SeqCst);
    }

    /// Requests the tenant hosts received so far: (host index, status).
    pub fn tenant_requests(&self) -> Vec<(usize, u16)> {
        self.online.tenant_requests.lock().expect("log").clone()
    }

    pub fn authentications(&self) -> u64 {
        self.online.authentications.load(Ordering::SeqCst)
    }
}
