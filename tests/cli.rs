//! The `classify` example's contract: flags, JSON fields, one output line per input line in
//! order, error lines, and exit statuses. Runs the real binary.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

fn binary() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let bin = profile_dir
            .join("examples")
            .join(format!("classify{}", std::env::consts::EXE_SUFFIX));
        // `cargo test` builds examples first; a lone `cargo test --test cli` may not have.
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "--quiet", "--example", "classify"]);
        if profile_dir.ends_with("release") {
            build.arg("--release");
        }
        assert!(
            build.status().unwrap().success(),
            "building the classify example"
        );
        bin
    })
}

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(binary())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn arguments_are_classified_in_order() {
    let out = run(&["STOP", "hello there", "  unstop ", "HELP"], b"");
    assert_eq!(out.status.code(), Some(0));
    let v = lines(&out);
    assert_eq!(v.len(), 4);
    assert_eq!(v[0]["action"], "drop");
    assert_eq!(v[0]["category"], "opt_out");
    assert_eq!(v[0]["keyword"], "STOP");
    assert_eq!(v[0]["notice"], 80901);
    assert_eq!(v[1]["action"], "forward");
    assert_eq!(v[1]["category"], "none");
    assert_eq!(v[1]["keyword"], Value::Null);
    assert_eq!(v[1]["notice"], Value::Null);
    assert_eq!(v[2]["keyword"], "UNSTOP");
    assert_eq!(v[2]["action"], "drop");
    assert_eq!(v[2]["carrier"], "opt_in");
    assert_eq!(v[3]["action"], "forward");
    assert_eq!(v[3]["category"], "help");
    for (i, line) in v.iter().enumerate() {
        assert_eq!(line["line"], i + 1);
    }
}

#[test]
fn stdin_lines_with_crlf_unterminated_and_invalid_utf8() {
    let out = run(&[], b"STOP\r\nhello\n\nST\xFFOP\n  Cancel  \r\nquit");
    assert_eq!(out.status.code(), Some(1), "a bad line makes the status 1");
    let v = lines(&out);
    assert_eq!(v.len(), 6, "one output line per input line");
    assert_eq!(v[0]["keyword"], "STOP");
    assert_eq!(v[0]["body"], "STOP");
    assert_eq!(v[1]["action"], "forward");
    assert_eq!(v[2]["action"], "forward");
    assert_eq!(v[2]["body"], "");
    assert_eq!(v[3]["line"], 4);
    assert!(
        v[3]["error"].as_str().unwrap().contains("offset 2"),
        "{}",
        v[3]
    );
    assert_eq!(v[4]["keyword"], "CANCEL");
    assert_eq!(
        v[5]["keyword"], "QUIT",
        "the unterminated last line is classified"
    );
}

#[test]
fn jsonl_channels_and_bad_lines() {
    let input = concat!(
        "{\"body\":\"STOP\",\"channel\":\"whatsapp\"}\n",
        "{\"body\":\"STOP\",\"channel\":\"mms\"}\n",
        "{\"body\":\"help\"}\n",
        "not json\n",
        "{\"channel\":\"sms\"}\n",
        "{\"body\":\"x\",\"channel\":\"fax\"}\n",
        "{\"body\":\"\\u00a0stop\\n\",\"id\":7}\n",
    );
    let out = run(&["--jsonl"], input.as_bytes());
    assert_eq!(out.status.code(), Some(1));
    let v = lines(&out);
    assert_eq!(v.len(), 7);
    assert_eq!(v[0]["action"], "forward");
    assert_eq!(v[0]["channel"], "whatsapp");
    assert_eq!(v[1]["action"], "drop");
    assert_eq!(v[2]["category"], "help");
    assert_eq!(v[3]["line"], 4);
    assert!(v[3]["error"].is_string());
    assert!(v[4]["error"].as_str().unwrap().contains("body"), "{}", v[4]);
    assert!(v[5]["error"].as_str().unwrap().contains("fax"), "{}", v[5]);
    assert_eq!(v[6]["keyword"], "STOP");
}

#[test]
fn rules_and_matching_flags() {
    let out = run(&["--rules", "proxy-2020", "REVOKE", "OPTOUT", "STOP"], b"");
    let v = lines(&out);
    assert_eq!(v[0]["action"], "forward");
    assert_eq!(v[1]["action"], "forward");
    assert_eq!(v[2]["action"], "drop");
    let out = run(&["--rules=proxy-2025", "REVOKE"], b"");
    assert_eq!(lines(&out)[0]["action"], "drop");
    let out = run(
        &["--matching", "lenient", "STOP!!", "Opt out", "Stop please"],
        b"",
    );
    let v = lines(&out);
    assert_eq!(v[0]["keyword"], "STOP");
    assert_eq!(v[1]["keyword"], "OPTOUT");
    assert_eq!(v[2]["action"], "forward");
    let out = run(&["--matching", "compatible", "STOP!!"], b"");
    assert_eq!(lines(&out)[0]["action"], "forward");
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["--bogus"][..],
        &["--rules", "proxy-1999"],
        &["--matching"],
        &["--matching", "fuzzy"],
        &["--jsonl=yes"],
    ] {
        let out = run(args, b"");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
    assert_eq!(run(&["--help"], b"").status.code(), Some(0));
}

#[test]
fn long_line_and_many_lines_keep_order() {
    let mut input = Vec::new();
    input.extend_from_slice(" ".repeat(10 << 20).as_bytes());
    input.extend_from_slice(b"STOP\n");
    for i in 0..5000 {
        input.extend_from_slice(if i % 3 == 0 { b"stop\n" } else { b"hi\n" });
    }
    let out = run(&[], &input);
    assert_eq!(out.status.code(), Some(0));
    let v = lines(&out);
    assert_eq!(v.len(), 5001);
    assert_eq!(v[0]["keyword"], "STOP");
    for (i, line) in v.iter().enumerate().skip(1) {
        assert_eq!(line["line"], i + 1);
        let expect = if (i - 1) % 3 == 0 { "drop" } else { "forward" };
        assert_eq!(line["action"], expect, "line {}", i + 1);
    }
}

#[test]
fn jsonl_with_invalid_utf8_crlf_and_an_unterminated_last_line() {
    let mut input = Vec::new();
    input.extend_from_slice(b"{\"body\":\"STOP\"}\r\n");
    input.extend_from_slice(b"{\"body\":\"ST\xFFOP\"}\n");
    input.extend_from_slice(b"\n");
    input.extend_from_slice(b"{\"body\":\"yes\",\"channel\":\"MMS\"}");
    let out = run(&["--jsonl"], &input);
    assert_eq!(out.status.code(), Some(1));
    let v = lines(&out);
    assert_eq!(v.len(), 4, "one output line per input line");
    assert_eq!(v[0]["keyword"], "STOP");
    assert_eq!(v[1]["line"], 2);
    assert!(v[1]["error"].is_string(), "{}", v[1]);
    assert_eq!(v[2]["line"], 3);
    assert!(
        v[2]["error"].is_string(),
        "an empty line is not a JSON object"
    );
    assert_eq!(v[3]["keyword"], "YES");
    assert_eq!(v[3]["channel"], "mms");
}

#[test]
fn invalid_utf8_argument_is_an_error_line_not_a_crash() {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let out = Command::new(binary())
            .arg("STOP")
            .arg(std::ffi::OsStr::from_bytes(b"ST\xFFOP"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let v = lines(&out);
        assert_eq!(v[0]["keyword"], "STOP");
        assert!(v[1]["error"].as_str().unwrap().contains("offset 2"));
    }
}
