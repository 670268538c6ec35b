//! Pure decisions of a single sign-on login: which emails may log in, whether a claim
//! grants the admin role, and which account name a new account gets. No I/O, so each
//! rule is unit-tested on its own.

use super::SsoError;
use serde_json::Value;

/// Allows the login when no domains are configured; otherwise the email must be
/// present, verified by the provider (`email_verified` true: an address the provider
/// never checked proves nothing about its domain), and of one of `allowed` (exact
/// domain, case-insensitive).
pub fn check_email_domain(
    email: Option<&str>,
    email_verified: Option<bool>,
    allowed: &[String],
) -> Result<(), SsoError> {
    if allowed.is_empty() {
        return Ok(());
    }
    let Some(email) = email else {
        return Err(SsoError::EmailNotAllowed(
            "the provider returned no email address, and this server only admits some email domains".into(),
        ));
    };
    if email_verified != Some(true) {
        return Err(SsoError::EmailNotAllowed(format!(
            "the email address {email} is not verified at the provider"
        )));
    }
    let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
    if allowed.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
        Ok(())
    } else {
        Err(SsoError::EmailNotAllowed(format!(
            "email addresses of {domain:?} may not log in here (allowed: {})",
            allowed.join(", ")
        )))
    }
}

/// Whether `claim` of the token's claims holds `value`: the claim may be a string or a
/// list of strings, and is looked up by its exact name first (names may contain dots,
/// such as URLs), then as a dotted path (`realm_access.roles`).
pub fn claim_has_value(claims: &Value, claim: &str, value: &str) -> bool {
    let found = claims.get(claim).or_else(|| {
        claim
            .split('.')
            .try_fold(claims, |node, part| node.get(part))
    });
    match found {
        Some(Value::String(s)) => s == value,
        Some(Value::Array(items)) => items.iter().any(|v| v.as_str() == Some(value)),
        _ => false,
    }
}

/// The name for a new account from the first usable hint (username, email's local
/// part, display name): characters an account name may not hold become `-`, and it is
/// cut to leave room for a suffix that makes it unique.
pub fn account_name_hint(hints: &[Option<&str>]) -> String {
    for hint in hints.iter().flatten() {
        let hint = hint.split('@').next().unwrap_or_default();
        let cleaned: String = hint
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                    c
                } else {
                    '-'
                }
            })
            .take(48)
            .collect();
        let cleaned = cleaned.trim_matches(|c| c == '-' || c == '.').to_string();
        if !cleaned.is_empty() {
            return cleaned;
        }
    }
    "user".into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn email_domains() {
        let allowed = vec!["example.com".to_string()];
        assert!(check_email_domain(None, None, &[]).is_ok());
        assert!(check_email_domain(Some("a@Example.com"), Some(true), &allowed).is_ok());
        // Unverified, or not said to be verified: anyone can claim any address.
        assert!(check_email_domain(Some("a@example.com"), None, &allowed).is_err());
        assert!(check_email_domain(Some("a@example.com"), None, &[]).is_ok());
        assert!(check_email_domain(Some("a@example.com"), Some(false), &allowed).is_err());
        assert!(check_email_domain(Some("a@evil.com"), Some(true), &allowed).is_err());
        assert!(check_email_domain(Some("a@sub.example.com"), Some(true), &allowed).is_err());
        assert!(check_email_domain(None, None, &allowed).is_err());
    }

    #[test]
    fn admin_claims() {
        let claims = json!({
            "groups": ["staff", "chorus-admins"],
            "role": "admin",
            "https://example.com/roles": ["x"],
            "realm_access": {"roles": ["boss"]}
        });
        assert!(claim_has_value(&claims, "groups", "chorus-admins"));
        assert!(!claim_has_value(&claims, "groups", "chorus"));
        assert!(claim_has_value(&claims, "role", "admin"));
        assert!(claim_has_value(&claims, "https://example.com/roles", "x"));
        assert!(claim_has_value(&claims, "realm_access.roles", "boss"));
        assert!(!claim_has_value(&claims, "missing", "admin"));
    }

    #[test]
    fn account_names() {
        assert_eq!(
            account_name_hint(&[None, Some("Ada Lovelace")]),
            "Ada-Lovelace"
        );
        assert_eq!(account_name_hint(&[Some("ada@example.com")]), "ada");
        assert_eq!(account_name_hint(&[Some("!!!"), Some("bob")]), "bob");
        assert_eq!(account_name_hint(&[None]), "user");
        assert!(account_name_hint(&[Some(&"x".repeat(100))]).len() <= 48);
    }
}
