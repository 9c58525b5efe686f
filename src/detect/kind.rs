//! The kinds of sensitive data detected, and sets of them (configuration's `kinds`).

use serde::{Deserialize, Serialize};

/// Text shorter than this holds no finding (the shortest is an e-mail like `a@b.co`).
pub const SHORTEST: usize = 6;

/// A kind of sensitive data; its [`Kind::name`] is the metric label and the redaction marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `sk-…` keys (OpenAI, Anthropic and the many services copying the format), ≥ 20 characters after `sk-`.
    ApiKey,
    /// GitHub tokens: `ghp_`/`gho_`/`ghu_`/`ghs_`/`ghr_` + 36 alphanumerics, `github_pat_…`.
    GithubToken,
    /// Slack tokens: `xoxb-`, `xoxa-`, `xoxp-`, `xoxr-`, `xoxs-` + ≥ 10 characters.
    SlackToken,
    /// AWS access key ids: `AKIA` or `ASIA` + 16 upper-case alphanumerics.
    AwsKeyId,
    /// Google API keys: `AIza` + 35 characters.
    GoogleApiKey,
    /// The credential after `Bearer ` (≥ 16 token characters).
    BearerToken,
    /// A PEM private key block, `-----BEGIN … PRIVATE KEY-----` to its `-----END …-----`.
    PrivateKey,
    /// A JWT: three base64url segments, the first decoding to a JSON object with `alg`.
    Jwt,
    /// The password of `scheme://user:password@host`.
    ConnectionPassword,
    /// An e-mail address.
    Email,
    /// 13–19 digits (single spaces or dashes between groups) starting 2–6, Luhn-valid.
    CardNumber,
    /// `+` and 10–15 digits (single spaces, dashes or dots between groups).
    Phone,
}

impl Kind {
    /// Every kind, in declaration order.
    pub const ALL: [Kind; 12] = [
        Kind::ApiKey,
        Kind::GithubToken,
        Kind::SlackToken,
        Kind::AwsKeyId,
        Kind::GoogleApiKey,
        Kind::BearerToken,
        Kind::PrivateKey,
        Kind::Jwt,
        Kind::ConnectionPassword,
        Kind::Email,
        Kind::CardNumber,
        Kind::Phone,
    ];

    /// The snake_case name: metric label value and the `<kind>` of `[REDACTED:<kind>]`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::ApiKey => "api_key",
            Kind::GithubToken => "github_token",
            Kind::SlackToken => "slack_token",
            Kind::AwsKeyId => "aws_key_id",
            Kind::GoogleApiKey => "google_api_key",
            Kind::BearerToken => "bearer_token",
            Kind::PrivateKey => "private_key",
            Kind::Jwt => "jwt",
            Kind::ConnectionPassword => "connection_password",
            Kind::Email => "email",
            Kind::CardNumber => "card_number",
            Kind::Phone => "phone",
        }
    }

    /// The replacement text, `[REDACTED:<name>]`.
    pub fn marker(self) -> &'static str {
        match self {
            Kind::ApiKey => "[REDACTED:api_key]",
            Kind::GithubToken => "[REDACTED:github_token]",
            Kind::SlackToken => "[REDACTED:slack_token]",
            Kind::AwsKeyId => "[REDACTED:aws_key_id]",
            Kind::GoogleApiKey => "[REDACTED:google_api_key]",
            Kind::BearerToken => "[REDACTED:bearer_token]",
            Kind::PrivateKey => "[REDACTED:private_key]",
            Kind::Jwt => "[REDACTED:jwt]",
            Kind::ConnectionPassword => "[REDACTED:connection_password]",
            Kind::Email => "[REDACTED:email]",
            Kind::CardNumber => "[REDACTED:card_number]",
            Kind::Phone => "[REDACTED:phone]",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of kinds (a bit set; copying is free). Configuration spells it as a list of kind
/// names, or the group names `secrets` and `personal`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KindSet(u16);

impl KindSet {
    /// Every kind.
    pub const ALL: KindSet = KindSet((1 << Kind::ALL.len()) - 1);
    /// No kind.
    pub const NONE: KindSet = KindSet(0);

    /// The secrets: every kind before [`Kind::Email`].
    pub fn secrets() -> KindSet {
        KindSet(Kind::Email.bit() - 1)
    }

    /// The personal data: e-mail, card numbers, phone numbers.
    pub fn personal() -> KindSet {
        KindSet(Self::ALL.0 & !Self::secrets().0)
    }

    /// Whether `kind` is in the set.
    pub fn contains(self, kind: Kind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// The names of the kinds in the set, in declaration order.
    pub fn names(self) -> Vec<&'static str> {
        Kind::ALL.iter().filter(|k| self.contains(**k)).map(|k| k.name()).collect()
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The set with `kind` added.
    pub fn with(self, kind: Kind) -> KindSet {
        KindSet(self.0 | kind.bit())
    }

    /// The set from configuration names (kind names, `secrets`, `personal`, `all`).
    ///
    /// # Errors
    /// The first name that is none of these.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<KindSet, String> {
        let mut set = KindSet::NONE;
        for name in names {
            set = match name {
                "all" => KindSet::ALL,
                "secrets" => KindSet(set.0 | Self::secrets().0),
                "personal" => KindSet(set.0 | Self::personal().0),
                _ => match Kind::ALL.iter().find(|k| k.name() == name) {
                    Some(k) => set.with(*k),
                    None => {
                        return Err(format!(
                            "{name:?} is not a kind of sensitive data (one of all, secrets, personal, api_key, github_token, slack_token, aws_key_id, google_api_key, bearer_token, private_key, jwt, connection_password, email, card_number, phone)"
                        ));
                    }
                },
            };
        }
        Ok(set)
    }
}
