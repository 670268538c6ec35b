//! The SigV4 signing path of the Bedrock provider against AWS's published test
//! vectors (`tests/fixtures/bedrock/sigv4/`, sources in its README): each vector's
//! request, signed by [`sigv4_headers`] with the suite's credentials, region, service
//! and time, must carry exactly the `Authorization` header AWS publishes.

use super::{AwsKeys, Signable, sigv4_headers};
use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use chorus_model::secret::Secret;
use serde_json::Value;
use std::time::SystemTime;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/bedrock/sigv4"
);

fn read(name: &str) -> String {
    let path = format!("{VECTORS}/{name}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A suite `.req` file: request line, `Name:value` headers, a blank line, the body.
struct SuiteRequest {
    method: String,
    path: String,
    host: String,
    /// `X-Amz-Date`, the signing time (`YYYYMMDDTHHMMSSZ`).
    amz_date: String,
    token: Option<String>,
    /// The other headers, names lowercased.
    headers: Vec<(String, String)>,
    body: String,
}

fn parse_request(text: &str) -> SuiteRequest {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let request_line = lines.next().expect("a request line");
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap().to_string();
    let path = parts.next().unwrap().to_string();
    let mut req = SuiteRequest {
        method,
        path,
        host: String::new(),
        amz_date: String::new(),
        token: None,
        headers: Vec::new(),
        body: body.to_string(),
    };
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').expect("a Name:value header");
        let name = name.to_ascii_lowercase();
        match name.as_str() {
            "host" => req.host = value.to_string(),
            "x-amz-date" => req.amz_date = value.to_string(),
            "x-amz-security-token" => req.token = Some(value.to_string()),
            _ => req.headers.push((name, value.to_string())),
        }
    }
    req
}

/// `20150830T123600Z` as a time.
fn amz_time(amz: &str) -> SystemTime {
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &amz[0..4],
        &amz[4..6],
        &amz[6..8],
        &amz[9..11],
        &amz[11..13],
        &amz[13..15]
    );
    let time = DateTime::from_str(&rfc3339, Format::DateTime).expect("an ISO 8601 time");
    SystemTime::try_from(time).expect("a time after the epoch")
}

fn check_vector(name: &str) {
    let context: Value = serde_json::from_str(&read("context.json")).unwrap();
    let text = |k: &str| context[k].as_str().unwrap().to_string();
    let req = parse_request(&read(&format!("{name}.req")));
    let expected = read(&format!("{name}.authz")).trim().to_string();
    let keys = AwsKeys {
        access_key_id: text("access_key_id"),
        secret_access_key: Secret::new(text("secret_access_key")),
        session_token: req.token.clone().map(Secret::new),
    };
    let url = format!("https://{}{}", req.host, req.path);
    let headers: Vec<(&str, &str)> = req
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let signable = Signable {
        method: &req.method,
        url: &url,
        headers: &headers,
        body: req.body.as_bytes(),
    };
    let signed = sigv4_headers(
        &keys,
        &text("region"),
        &text("service"),
        &signable,
        amz_time(&req.amz_date),
    )
    .unwrap();
    let get = |n: &str| signed.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    assert_eq!(
        get("authorization"),
        Some(expected.as_str()),
        "vector {name}"
    );
    assert_eq!(
        get("x-amz-date"),
        Some(req.amz_date.as_str()),
        "vector {name}"
    );
    assert_eq!(
        get("x-amz-security-token"),
        req.token.as_deref(),
        "vector {name}"
    );
}

#[test]
fn get_vanilla() {
    check_vector("get-vanilla");
}

#[test]
fn post_vanilla() {
    check_vector("post-vanilla");
}

#[test]
fn post_x_www_form_urlencoded_signs_the_content_type_and_the_body() {
    check_vector("post-x-www-form-urlencoded");
}

#[test]
fn post_sts_header_before_signs_the_session_token() {
    check_vector("post-sts-header-before");
}

/// A vector with one byte of the body changed no longer matches: the comparison
/// above can fail.
#[test]
fn a_changed_body_changes_the_signature() {
    let context: Value = serde_json::from_str(&read("context.json")).unwrap();
    let keys = AwsKeys {
        access_key_id: context["access_key_id"].as_str().unwrap().into(),
        secret_access_key: Secret::new(context["secret_access_key"].as_str().unwrap()),
        session_token: None,
    };
    let expected = read("post-x-www-form-urlencoded.authz").trim().to_string();
    let signable = Signable {
        method: "POST",
        url: "https://example.amazonaws.com/",
        headers: &[("content-type", "application/x-www-form-urlencoded")],
        body: b"Param1=value2",
    };
    let signed = sigv4_headers(
        &keys,
        "us-east-1",
        "service",
        &signable,
        amz_time("20150830T123600Z"),
    )
    .unwrap();
    let auth = signed.iter().find(|(k, _)| k == "authorization").unwrap();
    assert_ne!(auth.1, expected);
}
