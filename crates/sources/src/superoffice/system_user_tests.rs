//! Tests of `system_user.rs` (a child module of it, kept in its own file).
use super::*;
use base64::Engine as _;
use rsa::RsaPrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;

/// A JWT signed with the simulator's first SuperOffice key (kid `so-2026-1`), with `claims`.
fn token(claims: serde_json::Value) -> String {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    let key =
        RsaPrivateKey::from_pkcs1_pem(include_str!("../../../../sim/src/keys/superoffice-1.pem"))
            .unwrap();
    let der = key.to_pkcs1_der().unwrap();
    let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
    header.kid = Some("so-2026-1".into());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_der(der.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn each_jwt_check_refuses_with_its_name() {
    use rsa::traits::PublicKeyParts;
    let key =
        RsaPrivateKey::from_pkcs1_pem(include_str!("../../../../sim/src/keys/superoffice-1.pem"))
            .unwrap();
    let b =
        |n: &rsa::BigUint| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(n.to_bytes_be());
    let jwks: JwkSet = serde_json::from_value(json!({"keys": [
        {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": "so-2026-1", "n": b(key.n()), "e": b(key.e())}
    ]}))
    .unwrap();
    let su = SystemUser::new(SystemUserConfig {
        environment: "http://127.0.0.1:9".parse().unwrap(),
        context_identifier: "Cust1".into(),
        app_token: Secret::new("a"),
        system_user_token: Secret::new("t"),
        private_key: PrivateKey::parse(sessionsync_sim::superoffice_online::APPLICATION_KEY_PEM)
            .unwrap(),
    });
    {
        let mut j = su.jwks.lock().await;
        j.set = Some(jwks);
        j.read_at = Some(std::time::Instant::now());
    }
    let http = HttpClient::new(
        "superoffice",
        "a",
        &crate::settings::HttpSettings {
            timeout: Duration::from_secs(1),
            max_retries: 0,
            max_retry_wait: Duration::from_secs(1),
            requests_per_second: 10.0,
            max_response_mb: 1,
        },
        std::sync::Arc::new(crate::telemetry::Metrics::new()),
    );
    let now = Utc::now().timestamp();
    let good = json!({
        "iss": ISSUER, "aud": "spn:42", "exp": now + 600, "nbf": now - 5,
        format!("{CLAIM_PREFIX}serial"): "42", format!("{CLAIM_PREFIX}ticket"): "7T:x",
    });
    let (kid, claims) = su.validate(&http, &token(good.clone())).await.unwrap();
    assert_eq!(kid, "so-2026-1");
    assert!(claims.contains_key(&format!("{CLAIM_PREFIX}ticket")));
    for (field, value, check) in [
        ("iss", json!("Someone Else"), "iss"),
        ("aud", json!("spn:43"), "aud"),
        ("exp", json!(now - 3600), "exp"),
        ("nbf", json!(now + 3600), "nbf"),
    ] {
        let mut claims = good.clone();
        claims[field] = value;
        match su.validate(&http, &token(claims)).await {
            Err(SystemUserError::Jwt { check: c, .. }) => {
                assert!(c.starts_with(check), "{field}: {c}")
            }
            other => panic!("{field}: {:?}", other.map(|(k, _)| k)),
        }
    }
    // A minute of clock skew is allowed.
    let mut late = good.clone();
    late["exp"] = json!(now - 30);
    assert!(su.validate(&http, &token(late)).await.is_ok());
}
