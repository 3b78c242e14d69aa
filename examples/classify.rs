//! Classifies message bodies the way Twilio Proxy would, one JSON object per input.
//!
//! ```text
//! cargo run --example classify -- STOP "hello there"
//! printf 'STOP\nhello\n' | cargo run --example classify
//! printf '{"body":"STOP","channel":"whatsapp"}\n' | cargo run --example classify -- --jsonl
//! ```
//!
//! Flags: `--jsonl`, `--rules proxy-2020|proxy-2025`, `--matching compatible|lenient`,
//! `--language french|spanish` (repeatable), `--hints`, `--help`. Every input line yields
//! exactly one output line, in order; a bad line yields `{"line": N, "error": "..."}` and
//! makes the exit status 1. A usage error exits with status 2.

use std::borrow::Cow;
use std::io::{self, BufRead, BufWriter, Write};
use std::process::ExitCode;

use proxy_optout::{Category, Channel, Classifier, LanguagePack, Matching, Message, RuleSet};
use serde::{Deserialize, Serialize};

const USAGE: &str = "\
usage: classify [--jsonl] [--rules proxy-2020|proxy-2025] [--matching compatible|lenient]
                [--language french|spanish]... [--hints] [--] [BODY]...

Classifies each BODY argument, or each line of standard input when there is none, and
prints one JSON object per input: action, category, keyword, notice, carrier, callbacks,
opt_out_type, hint, line, channel, body. With --jsonl each input is a JSON object
{\"body\": \"...\", \"channel\": \"sms\"} (channel optional: sms, mms, whatsapp,
messenger, chat, other). A bad input prints {\"line\": N, \"error\": \"...\"}; the exit
status is then 1. Usage errors exit with status 2.";

struct Options {
    jsonl: bool,
    classifier: Classifier,
    bodies: Vec<Vec<u8>>,
}

/// A flag's value, inline (`--rules=proxy-2020`) or as the next argument.
fn value<'a>(
    flag: &str,
    inline: Option<&'a str>,
    rest: &mut impl Iterator<Item = &'a String>,
    raw: &mut impl Iterator<Item = &'a Vec<u8>>,
) -> Result<&'a str, String> {
    if inline.is_some() {
        return Ok(inline.unwrap_or_default());
    }
    raw.next();
    rest.next()
        .map(String::as_str)
        .ok_or_else(|| format!("{flag} needs a value"))
}

/// An argument's bytes: bodies may be any bytes the shell passes, flags must be UTF-8.
fn arg_bytes(arg: std::ffi::OsString) -> Vec<u8> {
    match arg.into_string() {
        Ok(s) => s.into_bytes(),
        #[cfg(unix)]
        Err(os) => std::os::unix::ffi::OsStringExt::into_vec(os),
        #[cfg(not(unix))]
        Err(os) => os.to_string_lossy().into_owned().into_bytes(),
    }
}

/// Parses the command line; `Ok(None)` means `--help` was shown.
fn parse(args: &[String], raw: &[Vec<u8>]) -> Result<Option<Options>, String> {
    let mut jsonl = false;
    let mut builder = Classifier::builder();
    let mut bodies = Vec::new();
    let mut it = args.iter();
    let mut raw = raw.iter();
    while let Some(arg) = it.next() {
        let bytes = raw.next();
        if arg == "--" {
            bodies.extend(raw.cloned());
            break;
        }
        if !arg.starts_with("--") {
            bodies.extend(bytes.cloned());
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f, Some(v)),
            None => (arg.as_str(), None),
        };
        match flag {
            "--help" => return Ok(None),
            "--jsonl" => jsonl = true,
            "--hints" => builder = builder.revocation_hints(),
            "--rules" => {
                let v = value(flag, inline, &mut it, &mut raw)?;
                builder = builder.rules(v.parse::<RuleSet>().map_err(|e| e.to_string())?);
            }
            "--matching" => {
                let v = value(flag, inline, &mut it, &mut raw)?;
                builder = builder.matching(v.parse::<Matching>().map_err(|e| e.to_string())?);
            }
            "--language" => {
                let v = value(flag, inline, &mut it, &mut raw)?;
                builder = builder.language(v.parse::<LanguagePack>().map_err(|e| e.to_string())?);
            }
            _ => return Err(format!("unknown flag {arg:?}")),
        }
        if inline.is_some() && matches!(flag, "--jsonl" | "--hints") {
            return Err(format!("{flag} takes no value"));
        }
    }
    let classifier = builder.build().map_err(|e| e.to_string())?;
    Ok(Some(Options {
        jsonl,
        classifier,
        bodies,
    }))
}

#[derive(Deserialize)]
struct Input<'a> {
    #[serde(borrow)]
    body: Cow<'a, str>,
    #[serde(default, borrow)]
    channel: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
struct Output<'a> {
    action: &'static str,
    category: &'static str,
    keyword: Option<&'static str>,
    notice: Option<u32>,
    carrier: &'static str,
    callbacks: bool,
    opt_out_type: Option<&'static str>,
    hint: Option<&'static str>,
    line: u64,
    channel: &'static str,
    body: &'a str,
}

#[derive(Serialize)]
struct Failure {
    line: u64,
    error: String,
}

fn name(c: Option<Category>) -> &'static str {
    c.map_or("none", Category::as_str)
}

/// Classifies one input and writes its output line; false when the input was bad.
fn classify_line(opts: &Options, line: u64, raw: &[u8], out: &mut impl Write) -> io::Result<bool> {
    let parsed: Result<(Cow<'_, str>, Channel), String> = if opts.jsonl {
        serde_json::from_slice::<Input<'_>>(raw)
            .map_err(|e| format!("invalid JSON input: {e}"))
            .and_then(|input| {
                let channel = match input.channel.as_deref() {
                    None => Channel::Sms,
                    Some(c) => c.parse::<Channel>().map_err(|e| e.to_string())?,
                };
                Ok((input.body, channel))
            })
    } else {
        // The crate's byte entry point names the offset of the first invalid byte.
        match opts.classifier.classify_bytes(raw, Channel::Sms) {
            Ok(_) => Ok((String::from_utf8_lossy(raw), Channel::Sms)),
            Err(e) => Err(e.to_string()),
        }
    };
    let ok = match parsed {
        Ok((body, channel)) => {
            let d = opts.classifier.classify(&Message::new(&body, channel));
            let o = Output {
                action: d.action().as_str(),
                category: name(d.category()),
                keyword: d.keyword(),
                notice: d.notice().map(|n| n.code()),
                carrier: name(d.carrier()),
                callbacks: d.fires_callbacks(),
                opt_out_type: d.opt_out_type(),
                hint: d.revocation_hint().map(|h| h.phrase()),
                line,
                channel: channel.as_str(),
                body: &body,
            };
            serde_json::to_writer(&mut *out, &o)?;
            true
        }
        Err(error) => {
            serde_json::to_writer(&mut *out, &Failure { line, error })?;
            false
        }
    };
    out.write_all(b"\n")?;
    Ok(ok)
}

fn run(opts: &Options) -> io::Result<bool> {
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut all_ok = true;
    if opts.bodies.is_empty() {
        let stdin = io::stdin();
        let mut input = io::BufReader::with_capacity(64 * 1024, stdin.lock());
        let mut buf = Vec::new();
        let mut line = 0;
        loop {
            buf.clear();
            if input.read_until(b'\n', &mut buf)? == 0 {
                break;
            }
            line += 1;
            // One line terminator, LF or CRLF; an unterminated last line is still a line.
            if buf.last() == Some(&b'\n') {
                buf.pop();
                if buf.last() == Some(&b'\r') {
                    buf.pop();
                }
            }
            all_ok &= classify_line(opts, line, &buf, &mut out)?;
        }
    } else {
        for (i, body) in opts.bodies.iter().enumerate() {
            all_ok &= classify_line(opts, i as u64 + 1, body, &mut out)?;
        }
    }
    out.flush()?;
    Ok(all_ok)
}

fn main() -> ExitCode {
    let raw: Vec<Vec<u8>> = std::env::args_os().skip(1).map(arg_bytes).collect();
    let args: Vec<String> = raw
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    let opts = match parse(&args, &raw) {
        Ok(Some(opts)) => opts,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("classify: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        // A closed pipe (`| head`) is not an error worth a message.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("classify: {e}");
            ExitCode::from(1)
        }
    }
}
