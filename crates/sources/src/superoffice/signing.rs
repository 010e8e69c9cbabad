//! The application's RSA key and the signed system user token (sources.md §2, "How to sign
//! system user token"): RustCrypto `rsa`, PKCS#1 v1.5 over SHA-256, no hand-written ASN.1 or
//! big-number code.

use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use rsa::RsaPrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{RandomizedSigner, SignatureEncoding};

/// The application's RSA private key: PEM (PKCS#1 `RSA PRIVATE KEY` or PKCS#8 `PRIVATE KEY`) or
/// .NET's RSA-XML form (`<RSAKeyValue><Modulus>…<D>…</RSAKeyValue>`), as SuperOffice's developer
/// portal hands it out, made into its signing key once. `Debug` shows nothing of it; `rsa`
/// overwrites its memory when it is dropped.
#[derive(Clone)]
pub struct PrivateKey(pub(super) Arc<rsa::pkcs1v15::SigningKey<sha2::Sha256>>);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey([redacted])")
    }
}

impl PrivateKey {
    /// Reads the key's text. The error says what is wrong without quoting the text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim().trim_start_matches('\u{feff}');
        // A key passed through an environment file on one line, its newlines written `\n`.
        let unescaped;
        let t = if !t.contains('\n') && t.contains("\\n") {
            unescaped = t.replace("\\n", "\n");
            unescaped.as_str()
        } else {
            t
        };
        let key = if t.starts_with("-----BEGIN RSA PRIVATE KEY-----") {
            RsaPrivateKey::from_pkcs1_pem(t)
                .map_err(|e| format!("a PKCS#1 PEM key that cannot be read ({e})"))?
        } else if t.starts_with("-----BEGIN PRIVATE KEY-----") {
            RsaPrivateKey::from_pkcs8_pem(t)
                .map_err(|e| format!("a PKCS#8 PEM key that cannot be read ({e})"))?
        } else if t.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            return Err("an encrypted PEM key: give the key without a passphrase (`openssl pkey -in key.pem -out plain.pem`)".into());
        } else if t.starts_with('<') {
            rsa_xml(t)?
        } else {
            return Err("neither a PEM key (`-----BEGIN RSA PRIVATE KEY-----` or `-----BEGIN PRIVATE KEY-----`) nor SuperOffice's RSA-XML form (`<RSAKeyValue>…`)".into());
        };
        key.validate()
            .map_err(|e| format!("an inconsistent RSA key ({e})"))?;
        Ok(PrivateKey(Arc::new(rsa::pkcs1v15::SigningKey::new(key))))
    }

    /// base64 of the RSA PKCS#1 v1.5 SHA-256 signature of `data`. The private-key operation is
    /// blinded with fresh randomness (`RandomizedSigner`: RUSTSEC-2023-0071, Marvin, times the
    /// unblinded one); the signature itself is PKCS#1 v1.5's, deterministic: the same key and
    /// data give the same bytes, as Node's `crypto.createSign('SHA256')` does.
    pub fn sign(&self, data: &str) -> String {
        let signature = self
            .0
            .sign_with_rng(&mut rsa::rand_core::OsRng, data.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(signature.to_bytes())
    }
}

/// .NET's `RSA.ToXmlString(true)`: base64 big-endian components.
fn rsa_xml(text: &str) -> Result<RsaPrivateKey, String> {
    let field = |name: &str| -> Result<rsa::BigUint, String> {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = text
            .find(&open)
            .ok_or_else(|| format!("RSA-XML without <{name}>: give the private key (with <D>, <P>, <Q>), not the public one"))?
            + open.len();
        let len = text[start..]
            .find(&close)
            .ok_or_else(|| format!("RSA-XML whose <{name}> is not closed"))?;
        let b64: String = text[start..start + len]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("RSA-XML whose <{name}> is not base64 ({e})"))?;
        Ok(rsa::BigUint::from_bytes_be(&bytes))
    };
    let (n, e, d, p, q) = (
        field("Modulus")?,
        field("Exponent")?,
        field("D")?,
        field("P")?,
        field("Q")?,
    );
    RsaPrivateKey::from_components(n, e, d, vec![p, q])
        .map_err(|e| format!("an RSA-XML key whose components do not fit together ({e})"))
}

/// The signed system user token for `now`.
pub fn signed_system_token(
    key: &PrivateKey,
    system_user_token: &str,
    now: DateTime<Utc>,
) -> String {
    let data = format!("{system_user_token}.{}", now.format("%Y%m%d%H%M"));
    let signature = key.sign(&data);
    format!("{data}.{signature}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_forms_and_escaped_newlines_give_the_same_key() {
        use rsa::pkcs8::EncodePrivateKey;
        let pem = sessionsync_sim::superoffice_online::APPLICATION_KEY_PEM;
        let k1 = PrivateKey::parse(pem).unwrap();
        let rsa_key: &RsaPrivateKey = (*k1.0).as_ref();
        let pkcs8 = rsa_key.to_pkcs8_pem(Default::default()).unwrap();
        let k2 = PrivateKey::parse(&pkcs8).unwrap();
        let k3 = PrivateKey::parse(&pem.trim().replace('\n', "\\n")).unwrap();
        let sig = k1.sign("x");
        assert_eq!(k2.sign("x"), sig);
        assert_eq!(k3.sign("x"), sig);
        assert_eq!(format!("{k1:?}"), "PrivateKey([redacted])");
    }

    #[test]
    fn keys_are_refused_with_a_reason_that_quotes_nothing() {
        for (text, word) in [
            ("hello", "neither"),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----",
                "PKCS#1",
            ),
            (
                "<RSAKeyValue><Modulus>AQAB</Modulus><Exponent>AQAB</Exponent></RSAKeyValue>",
                "<D>",
            ),
        ] {
            let e = PrivateKey::parse(text).unwrap_err();
            assert!(e.contains(word), "{e}");
            assert!(!e.contains("AAAA") && !e.contains("AQAB"), "{e}");
        }
    }
}
