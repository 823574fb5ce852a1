//! `GET /metrics` read by a real Prometheus parser: the Python
//! `prometheus_client` package's text parser (Debian
//! `python3-prometheus-client`), not our own code.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

/// `name{k="v",…}` (labels sorted) → value, for every sample.
pub type Samples = HashMap<String, f64>;

const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        labels = ",".join('%s="%s"' % (k, v) for k, v in sorted(s.labels.items()))
        out["%s{%s}" % (s.name, labels)] = s.value
print(json.dumps(out))
"#;

/// The Python that has the parser: Debian's, else whatever is first on PATH.
fn python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// True if the parser is installed; else prints SKIPPED (a failure under CI).
pub fn parser_ready() -> bool {
    let ok = Command::new(python())
        .args(["-c", "import prometheus_client.parser"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but the prometheus_client parser is missing (apt-get install python3-prometheus-client)"
        );
        eprintln!(
            "SKIPPED: no prometheus_client parser (apt-get install python3-prometheus-client)"
        );
    }
    ok
}

/// Parses exposition text; panics with the parser's message if it is not valid.
pub fn parse(text: &str) -> Samples {
    let mut child = Command::new(python())
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Scrapes `http://<http>/metrics`, checks the content type, and parses it.
pub async fn scrape(http: SocketAddr) -> Samples {
    let resp = reqwest::get(format!("http://{http}/metrics"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ctype = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    parse(&resp.text().await.unwrap())
}

/// A sample's value, 0 when absent (a counter never incremented).
pub fn value(s: &Samples, key: &str) -> f64 {
    s.get(key).copied().unwrap_or(0.0)
}
