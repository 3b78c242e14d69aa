//! The PostgreSQL tests run only where `PROXY_OPTOUT_PG_URL` names a server (CI sets it); the
//! tests through Twilio's own helper libraries only where `PROXY_OPTOUT_PYTHON` names a Python
//! with `tools/python/requirements.txt` installed and `PROXY_OPTOUT_NODE` a Node with
//! `tools/node` installed (`.ci/run` sets up both). Without them they are compiled but marked
//! ignored with a reason, so `cargo test` says they were skipped.
fn main() {
    for (cfg, var) in [
        ("pg_tests", "PROXY_OPTOUT_PG_URL"),
        ("python_tests", "PROXY_OPTOUT_PYTHON"),
        ("node_tests", "PROXY_OPTOUT_NODE"),
    ] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        println!("cargo::rerun-if-env-changed={var}");
        if std::env::var_os(var).is_some_and(|v| !v.is_empty()) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
