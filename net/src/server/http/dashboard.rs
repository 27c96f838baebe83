//! The live dashboard: `GET /` serves a page that polls `GET /v1/stats`
//! (the node's stats JSON, the binary protocol's `Stats(None)`) every
//! second and draws, per app, throughput (from `delivered` deltas over the
//! node clock), p99 latency against the app's SLO line, SLO satisfaction
//! and lessees, and per shard its busy share (from `busy_ns` deltas).
//!
//! It owns only the page's assets: `dashboard/index.html`,
//! `dashboard.js` and `dashboard.css`, hand-written, embedded in the
//! binary with `include_str!` so a node needs nothing at run time (no CDN,
//! no files beside it), and drawn with our own SVG code (no chart
//! library). The page holds no data, so it is public; the data comes
//! from `/v1/stats`, which asks the admin token like every node-wide
//! route. A browser cannot send a bearer header on page load, so the page
//! reads `?token=` from its own address and sends it as
//! `Authorization: Bearer` on its fetches.
//!
//! Every asset goes out with a content security policy that allows only
//! this origin's script, style and fetches (the script inserts app names
//! as text, never as markup), and `no-cache`, so a node upgraded under an
//! open tab serves its new page on the next reload.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{header, Response};

const INDEX: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/dashboard.js");
const STYLE: &str = include_str!("dashboard/dashboard.css");

/// What the page may load: its own script, style and fetches; images
/// only as `data:` (the favicon).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// The asset at `name` (the path without its leading `/`), if it is one.
/// (A whole body: `routes` boxes it, and this module imports nothing of
/// the crate.)
pub(super) fn asset(name: &str) -> Option<Response<Full<Bytes>>> {
    let (text, kind) = match name {
        "" | "index.html" => (INDEX, "text/html; charset=utf-8"),
        "dashboard.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "dashboard.css" => (STYLE, "text/css; charset=utf-8"),
        _ => return None,
    };
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(kind));
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    Some(r)
}

/// Whether `name` is one of the dashboard's paths (for 405 on other
/// methods).
pub(super) fn is_asset(name: &str) -> bool {
    matches!(name, "" | "index.html" | "dashboard.js" | "dashboard.css")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_its_assets_and_they_are_served() {
        assert!(INDEX.contains("src=\"/dashboard.js\""));
        assert!(INDEX.contains("href=\"/dashboard.css\""));
        for name in ["", "index.html", "dashboard.js", "dashboard.css"] {
            assert!(is_asset(name));
            let r = asset(name).expect("an asset");
            assert!(r.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        }
        assert!(asset("dashboard.js.map").is_none());
        assert!(!is_asset("v1"));
    }

    #[test]
    fn the_script_reads_only_the_stats_endpoint() {
        assert!(SCRIPT.contains("'/v1/stats'"));
        assert!(!SCRIPT.contains("innerHTML"), "names go in as text");
        let outside = SCRIPT.replace("http://www.w3.org/2000/svg", "");
        assert!(!outside.contains("http://") && !outside.contains("https://"));
    }
}
