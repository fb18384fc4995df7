//! Amazon SES bounce and complaint notifications, as SNS delivers them to
//! `POST /webhooks/bounces/ses`: the SNS signature checked against the signing certificate
//! (fetched over HTTPS from an SNS host only, cached), only topics the operator named
//! (SES_TOPIC_ARNS: a valid signature proves AWS sent it, not whose topic it is), the
//! subscription confirmed by visiting its SubscribeURL, and each notification's recipients
//! turned into events of the generic webhook's kind.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rsa::pkcs1v15::Pkcs1v15Sign;
use serde::Deserialize;
use sha2::Digest;
use url::Url;
use x509_cert::der::DecodePem;

use super::webhooks::{Event, EventKind};

/// Certificates kept, by URL (SNS uses one or two at a time).
const CERTS_KEPT: usize = 16;

/// An SNS message, as posted.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SnsMessage {
    #[serde(rename = "Type")]
    pub kind: String,
    pub message_id: String,
    pub topic_arn: String,
    pub message: String,
    pub timestamp: String,
    pub signature_version: String,
    pub signature: String,
    #[serde(rename = "SigningCertURL")]
    pub signing_cert_url: String,
    pub subject: Option<String>,
    #[serde(rename = "SubscribeURL")]
    pub subscribe_url: Option<String>,
    pub token: Option<String>,
}

impl SnsMessage {
    /// The text SNS signs: the fields of the message's type, `Name\nvalue\n` each, in
    /// alphabetical order.
    pub fn string_to_sign(&self) -> Result<String, &'static str> {
        let mut fields: Vec<(&str, &str)> = vec![("Message", &self.message), ("MessageId", &self.message_id)];
        match self.kind.as_str() {
            "Notification" => {
                if let Some(subject) = &self.subject {
                    fields.push(("Subject", subject));
                }
            }
            "SubscriptionConfirmation" | "UnsubscribeConfirmation" => {
                fields.push(("SubscribeURL", self.subscribe_url.as_deref().ok_or("no SubscribeURL")?));
            }
            _ => return Err("an SNS message of an unknown type"),
        }
        fields.push(("Timestamp", &self.timestamp));
        if self.kind != "Notification" {
            fields.push(("Token", self.token.as_deref().ok_or("no Token")?));
        }
        fields.push(("TopicArn", &self.topic_arn));
        fields.push(("Type", &self.kind));
        Ok(fields
            .iter()
            .map(|(name, value)| format!("{name}\n{value}\n"))
            .collect())
    }

    /// Checks the signature with the certificate's key (PEM). SignatureVersion 1 is
    /// SHA1withRSA, 2 SHA256withRSA.
    pub fn verify_with(&self, cert_pem: &[u8]) -> Result<(), String> {
        let cert = x509_cert::Certificate::from_pem(cert_pem).map_err(|e| format!("the signing certificate: {e}"))?;
        let spki = cert.tbs_certificate.subject_public_key_info;
        let der = x509_cert::der::Encode::to_der(&spki).map_err(|e| e.to_string())?;
        let key = <rsa::RsaPublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(&der)
            .map_err(|e| format!("the signing certificate's key is no RSA key: {e}"))?;
        let signature = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &self.signature)
            .map_err(|_| "the signature is not base64".to_owned())?;
        let text = self.string_to_sign()?;
        let checked = match self.signature_version.as_str() {
            "1" => key.verify(
                Pkcs1v15Sign::new::<sha1::Sha1>(),
                &sha1::Sha1::digest(text.as_bytes()),
                &signature,
            ),
            "2" => key.verify(
                Pkcs1v15Sign::new::<sha2::Sha256>(),
                &sha2::Sha256::digest(text.as_bytes()),
                &signature,
            ),
            other => return Err(format!("SignatureVersion {other} is not 1 or 2")),
        };
        checked.map_err(|_| "the signature does not match".to_owned())
    }
}

/// Whether `url` is https on a host the pattern allows: labels compared one by one, `*`
/// standing for one label (`sns.*.amazonaws.com`).
pub fn host_allowed(url: &str, pattern: &str) -> bool {
    let Ok(url) = Url::parse(url) else { return false };
    let Some(host) = url.host_str() else { return false };
    let host: Vec<&str> = host.split('.').collect();
    let pattern: Vec<&str> = pattern.split('.').collect();
    url.scheme() == "https"
        && host.len() == pattern.len()
        && host
            .iter()
            .zip(&pattern)
            .all(|(h, p)| *p == "*" || h.eq_ignore_ascii_case(p))
}

/// Fetches and keeps signing certificates; confirms subscriptions.
pub struct Sns {
    client: reqwest::Client,
    /// SNS_CERT_HOST.
    host_pattern: String,
    certs: Mutex<HashMap<String, Arc<Vec<u8>>>>,
}

impl Sns {
    pub fn new(tls: Arc<tokio_rustls::rustls::ClientConfig>, host_pattern: String) -> Sns {
        let client = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .timeout(std::time::Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client with a TLS set-up of ours builds");
        Sns {
            client,
            host_pattern,
            certs: Mutex::new(HashMap::new()),
        }
    }

    /// Checks the message's signature, fetching its certificate from an SNS host.
    pub async fn verify(&self, message: &SnsMessage) -> Result<(), String> {
        let url = &message.signing_cert_url;
        if !host_allowed(url, &self.host_pattern) {
            return Err(format!(
                "the signing certificate is not on an SNS host ({})",
                self.host_pattern
            ));
        }
        let known = self.certs.lock().expect("certs lock").get(url).cloned();
        let cert = match known {
            Some(cert) => cert,
            None => {
                let cert = Arc::new(self.get(url).await?);
                let mut certs = self.certs.lock().expect("certs lock");
                if certs.len() >= CERTS_KEPT {
                    certs.clear();
                }
                certs.insert(url.clone(), cert.clone());
                cert
            }
        };
        message.verify_with(&cert)
    }

    /// Confirms a subscription by visiting its SubscribeURL (on an SNS host only).
    pub async fn confirm(&self, message: &SnsMessage) -> Result<(), String> {
        let url = message.subscribe_url.as_deref().unwrap_or_default();
        if !host_allowed(url, &self.host_pattern) {
            return Err("the SubscribeURL is not on an SNS host".to_owned());
        }
        self.get(url).await.map(|_| ())
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let response = self
            .client
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("GET {url}: {e}"))?;
        let body = response.bytes().await.map_err(|e| format!("GET {url}: {e}"))?;
        if body.len() > 64 * 1024 {
            return Err(format!("GET {url}: more than 64 KiB"));
        }
        Ok(body.to_vec())
    }
}

/// An SES notification (`notificationType`, or `eventType` for event publishing).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Notification {
    notification_type: Option<String>,
    event_type: Option<String>,
    bounce: Option<SesBounce>,
    complaint: Option<SesComplaint>,
    mail: SesMail,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SesBounce {
    bounce_type: String,
    #[serde(default)]
    bounced_recipients: Vec<SesRecipient>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SesComplaint {
    #[serde(default)]
    complained_recipients: Vec<SesRecipient>,
    complaint_feedback_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SesRecipient {
    email_address: String,
    status: Option<String>,
    diagnostic_code: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SesMail {
    /// The envelope sender: our VERP address when BOUNCE_ADDRESS is set.
    source: Option<String>,
    #[serde(default)]
    headers: Vec<SesHeader>,
    common_headers: Option<SesCommonHeaders>,
}

#[derive(Debug, Deserialize)]
struct SesHeader {
    name: String,
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SesCommonHeaders {
    message_id: Option<String>,
}

/// The events an SES notification (the SNS message's `Message`) holds; a delivery or
/// other notice holds none. Permanent bounces are HARD, transient ones SOFT, undetermined
/// ones nothing.
pub fn events(message: &str) -> Result<Vec<Event>, String> {
    let notification: Notification =
        serde_json::from_str(message).map_err(|e| format!("not an SES notification: {e}"))?;
    let message_id = notification
        .mail
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("message-id"))
        .map(|h| h.value.clone())
        .or_else(|| notification.mail.common_headers.and_then(|c| c.message_id));
    let event = |kind, recipient: &SesRecipient, diagnostic: Option<String>| Event {
        kind,
        message_id: message_id.clone(),
        return_path: notification.mail.source.clone(),
        recipient: Some(recipient.email_address.clone()),
        diagnostic,
    };
    let kind = notification
        .notification_type
        .or(notification.event_type)
        .unwrap_or_default();
    Ok(match (kind.as_str(), notification.bounce, notification.complaint) {
        ("Bounce", Some(bounce), _) => {
            let kind = match bounce.bounce_type.as_str() {
                "Permanent" => EventKind::Hard,
                "Transient" => EventKind::Soft,
                _ => return Ok(Vec::new()),
            };
            bounce
                .bounced_recipients
                .iter()
                .map(|r| {
                    let diagnostic = [r.status.as_deref(), r.diagnostic_code.as_deref()]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(" ");
                    event(kind, r, Some(diagnostic).filter(|d| !d.is_empty()))
                })
                .collect()
        }
        ("Complaint", _, Some(complaint)) => {
            let diagnostic = format!(
                "complaint: {}",
                complaint.complaint_feedback_type.as_deref().unwrap_or("abuse")
            );
            complaint
                .complained_recipients
                .iter()
                .map(|r| event(EventKind::Complaint, r, Some(diagnostic.clone())))
                .collect()
        }
        _ => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_come_from_sns_hosts_only() {
        let pattern = "sns.*.amazonaws.com";
        assert!(host_allowed(
            "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem",
            pattern
        ));
        assert!(!host_allowed("http://sns.eu-west-1.amazonaws.com/cert.pem", pattern));
        assert!(!host_allowed(
            "https://sns.eu-west-1.amazonaws.com.evil.example/cert.pem",
            pattern
        ));
        assert!(!host_allowed(
            "https://evil.example/sns.eu-west-1.amazonaws.com/cert.pem",
            pattern
        ));
        assert!(!host_allowed("https://x.sns.eu-west-1.amazonaws.com/cert.pem", pattern));
        assert!(!host_allowed("garbage", pattern));
    }

    #[test]
    fn notifications_become_events() {
        let bounce = r#"{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bounceSubType":"General",
            "bouncedRecipients":[{"emailAddress":"a@acme.com","action":"failed","status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 user unknown"}]},
            "mail":{"source":"bounces+x@acme.example","headers":[{"name":"Message-ID","value":"<id@acme.example>"}]}}"#;
        let events = events(bounce).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventKind::Hard);
        assert_eq!(events[0].message_id.as_deref(), Some("<id@acme.example>"));
        assert_eq!(
            events[0].diagnostic.as_deref(),
            Some("5.1.1 smtp; 550 5.1.1 user unknown")
        );
        let undetermined = bounce.replace("Permanent", "Undetermined");
        assert!(super::events(&undetermined).unwrap().is_empty());
        let delivery = r#"{"notificationType":"Delivery","mail":{}}"#;
        assert!(super::events(delivery).unwrap().is_empty());
        assert!(super::events("garbage").is_err());
    }
}
