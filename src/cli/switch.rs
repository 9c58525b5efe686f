//! `sekisho switch [<layer> on|off] --url URL`: show or change a running gateway's runtime
//! switches through its admin API (`/admin/switches`, `crate::switches`), with an admin key
//! from `--admin-key` (or `--key`) or `SEKISHO_ADMIN_KEY`.

use clap::{Args, ValueEnum};

use super::remote::{self, RemoteError};

/// The arguments of `sekisho switch`.
#[derive(Debug, Args)]
pub struct SwitchArgs {
    /// The layer: cache, coalesce, retry, breaker, admission, rate_limits, batching (omit it
    /// to show every switch).
    #[arg(requires = "state")]
    pub layer: Option<String>,
    /// Its new state.
    #[arg(value_enum)]
    pub state: Option<State>,
    /// The gateway: `--url`, `--admin-key`, `--json`.
    #[command(flatten)]
    pub remote: super::ops::Remote,
}

/// A switch's new state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum State {
    /// The layer works as configured.
    On,
    /// The layer passes calls through untouched.
    Off,
}

/// Run `sekisho switch`; returns what to print.
///
/// Errors: the text to print on stderr (exit 1): an unusable `--url` or key, a gateway that
/// cannot be reached, or its refusal (an unknown layer, a key that is not an admin's).
pub async fn run(args: SwitchArgs) -> Result<String, String> {
    let key = args.remote.admin_key.as_deref();
    let answer = match (&args.layer, args.state) {
        (Some(layer), Some(state)) => {
            let state = if state == State::On { "on" } else { "off" };
            // The layer goes in the path: keep it to the characters a layer name has.
            if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'-') {
                return Err(format!("unknown layer {layer:?}"));
            }
            let path = format!("/admin/switches/{layer}/{state}");
            remote::request(&args.remote.url, key, http::Method::POST, &path, None).await
        }
        _ => remote::request(&args.remote.url, key, http::Method::GET, "/admin/switches", None).await,
    }
    .map_err(|e: RemoteError| e.to_string())?;
    if !answer.status.is_success() {
        return Err(answer.refusal());
    }
    if args.remote.json {
        return Ok(format!("{:#}\n", answer.json));
    }
    Ok(table(&answer.json))
}

/// The switches of an `/admin/switches` answer as a table: layer, state, who changed it, when;
/// then what the change reached, for a change.
pub fn table(answer: &serde_json::Value) -> String {
    let mut out = format!("{:<12} {:<5} {:<24} {}\n", "LAYER", "STATE", "CHANGED BY", "AT");
    if let Some(switches) = answer["switches"].as_object() {
        for (layer, s) in switches {
            let state = if s["on"].as_bool().unwrap_or(true) { "on" } else { "off" };
            let by = s["by"].as_str().unwrap_or("-");
            let at = s["at"].as_str().unwrap_or("-");
            out.push_str(&format!("{layer:<12} {state:<5} {by:<24} {at}\n"));
        }
    }
    let fleet = if answer["fleet_wide"].as_bool() == Some(true) { "fleet-wide (Redis)" } else { "this gateway only" };
    out.push_str(&format!("switches apply {fleet}\n"));
    if let Some(reach) = answer["changed"]["reach"].as_str() {
        let note = match reach {
            "fleet" => "stored in Redis: every replica applies it within about a second",
            "pending" => "Redis did not answer: applied here, written back when it answers",
            _ => "applied on this gateway",
        };
        out.push_str(&format!("{} switched {}: {note}\n", answer["changed"]["layer"].as_str().unwrap_or("?"), {
            if answer["changed"]["on"].as_bool() == Some(true) { "on" } else { "off" }
        }));
    }
    out
}
