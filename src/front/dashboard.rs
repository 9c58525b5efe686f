//! The dashboard (`GET /dashboard`): one static page and its assets, embedded in the binary so
//! the page works with no internet. The page holds no data: it asks for an admin API key, keeps
//! it in the tab's session storage and reads the admin API with it (`/admin/monitor`,
//! `/admin/alerts`, `/admin/switches`, `/admin/recommendations`, `/admin/approvals`, `/readyz`),
//! so every number it shows passes the same admin check as the API (401 without a key, 403 for
//! a client key), and no cookie exists that a cross-site request could ride on.
//!
//! Charts are drawn with uPlot 1.6.32 (MIT, `assets/dashboard/vendor/`). Every answer carries a
//! Content-Security-Policy that allows scripts, styles and requests from this origin only, and
//! forbids framing.

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::{HeaderValue, StatusCode};

/// The page's policy: nothing from another origin, no inline script, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file: its name under `/dashboard/assets/`, media type and bytes.
struct Asset {
    name: &'static str,
    media_type: &'static str,
    bytes: &'static [u8],
}

/// The page (`/dashboard`).
const PAGE: &[u8] = include_bytes!("../../assets/dashboard/index.html");

/// The assets the page loads (`/dashboard/assets/{name}`).
const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        media_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../assets/dashboard/app.js"),
    },
    Asset {
        name: "app.css",
        media_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../assets/dashboard/app.css"),
    },
    Asset {
        name: "uPlot.iife.min.js",
        media_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../assets/dashboard/vendor/uPlot.iife.min.js"),
    },
    Asset {
        name: "uPlot.min.css",
        media_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../assets/dashboard/vendor/uPlot.min.css"),
    },
];

/// `GET /dashboard`: the page (`text/html`, 200). It needs no credentials: it carries no data
/// (see the module doc).
pub async fn page() -> Response {
    answer(StatusCode::OK, "text/html; charset=utf-8", PAGE)
}

/// `GET /dashboard/assets/{name}`: an embedded asset, or 404 (`text/plain`) for any other name.
pub async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(asset) => answer(StatusCode::OK, asset.media_type, asset.bytes),
        None => answer(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", b"no such dashboard asset\n"),
    }
}

fn answer(status: StatusCode, media_type: &'static str, bytes: &'static [u8]) -> Response {
    let mut response = (status, bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(media_type));
    // Embedded in the binary: a new version serves new bytes, so revalidate every time.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_page_names_only_assets_that_are_embedded() {
        let html = std::str::from_utf8(PAGE).unwrap();
        for part in html.split("/dashboard/assets/").skip(1) {
            let name = &part[..part.find('"').unwrap()];
            assert!(ASSETS.iter().any(|a| a.name == name), "{name} is linked but not embedded");
        }
        let response = asset(Path("../Cargo.toml".into())).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let response = page().await;
        assert!(response.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap().contains("script-src 'self'"));
    }
}
