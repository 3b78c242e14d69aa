//! The PostgreSQL tests run only where `PROXY_OPTOUT_PG_URL` names a server (CI sets it). Without
//! it they are compiled but marked ignored with a reason, so `cargo test` says they were skipped.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(pg_tests)");
    println!("cargo::rerun-if-env-changed=PROXY_OPTOUT_PG_URL");
    if std::env::var_os("PROXY_OPTOUT_PG_URL").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=pg_tests");
    }
}
