//! The tests that sign requests with Twilio's own helper library run where
//! `PROXY_OPTOUT_PYTHON` names a Python with `twilio` installed (`.ci/run` sets it up from
//! `tools/python/requirements.txt`). Without it they are compiled but marked ignored with a
//! reason, so `cargo test` says they were skipped.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(python_tests)");
    println!("cargo::rerun-if-env-changed=PROXY_OPTOUT_PYTHON");
    if std::env::var_os("PROXY_OPTOUT_PYTHON").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=python_tests");
    }
}
