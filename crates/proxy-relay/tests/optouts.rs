//! Opt-out records: what a conversation leaves in the history, the export of it, an import of
//! an existing list that the server then honours, on a real SQLite file and the real
//! PostgreSQL server; and the `optouts` commands of the binary.

mod common;

use std::time::Duration;

use common::{
    client, on_each_database, start_with_twilio, FakeTwilio, TestDb, ACCOUNT_SID, AUTH_TOKEN,
};
use proxy_optout::{ChangeSource, HistoryEntry, OptState, RuleSet};
use proxy_relay::{export, import, ExportFilter, ExportFormat, ExportWhat, OptOutDb, OptOutsError};

const RIDER: &str = "+15551110001";
const DRIVER: &str = "+15552220002";

on_each_database!(
    a_conversation_leaves_each_change_with_its_evidence,
    an_imported_list_is_honoured_and_a_rerun_changes_nothing,
    a_bad_row_imports_nothing_and_is_named_by_line,
    the_admin_api_imports_and_streams_exports_behind_basic_auth,
);

async fn history(db: &OptOutDb, filter: &ExportFilter) -> Vec<HistoryEntry> {
    let mut out = Vec::new();
    export(
        db,
        ExportWhat::History,
        filter,
        ExportFormat::Jsonl,
        &mut out,
    )
    .await
    .unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn optouts_csv(db: &OptOutDb) -> Vec<String> {
    let mut out = Vec::new();
    export(
        db,
        ExportWhat::Optouts,
        &ExportFilter::default(),
        ExportFormat::Csv,
        &mut out,
    )
    .await
    .unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn a_conversation_leaves_each_change_with_its_evidence(db: &TestDb) {
    let fake = FakeTwilio::start().await;
    let server = start_with_twilio(&db.url(), &fake, &[]).await;
    let c = client(&server);
    let session = c.create_session("ride-1", RIDER, DRIVER).await.unwrap();
    let dp = session.participants[1].proxy_identifier.clone();
    let rp = session.participants[0].proxy_identifier.clone();
    let before = proxy_relay::parse_time("2020-01-01").unwrap();
    c.message(DRIVER, &dp, " Stop ").await.unwrap();
    c.message(RIDER, &rp, "hello").await.unwrap(); // refused: no change to the ledger
    c.message(DRIVER, &dp, "START").await.unwrap();
    c.message(RIDER, &rp, "UNSUBSCRIBE").await.unwrap();
    // Both confirmations are noted off the answer's path: wait for them.
    let confirmed = "SELECT count(*) FROM opt_out_history WHERE confirmed_at IS NOT NULL";
    for _ in 0..200 {
        if server.app().db().scalar(confirmed).await.unwrap() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.app().db().scalar(confirmed).await.unwrap(), 3);
    server.shutdown().await.unwrap();

    let url = db.url();
    let db = OptOutDb::open(&url).await.unwrap();
    let all = history(&db, &ExportFilter::default()).await;
    assert_eq!(all.len(), 3, "{all:#?}");
    let driver = history(
        &db,
        &ExportFilter {
            participant: Some(DRIVER.into()),
            ..ExportFilter::default()
        },
    )
    .await;
    assert_eq!(driver.len(), 2);
    let (stop, start) = (&driver[0], &driver[1]);
    assert_eq!(
        (stop.scope.as_str(), stop.state),
        (dp.as_str(), OptState::OptedOut)
    );
    assert_eq!(stop.source, ChangeSource::Keyword);
    assert_eq!(stop.keyword.as_deref(), Some("STOP"));
    assert_eq!(stop.text.as_deref(), Some(" Stop "), "the text as received");
    assert!(stop
        .message_id
        .as_deref()
        .is_some_and(|m| m.starts_with("SM")));
    assert_eq!(stop.rule_set, Some(RuleSet::Proxy2025));
    let received = stop.received_at.unwrap();
    assert!(received > before && received <= stop.recorded_at + 1);
    assert!(stop.confirmed_at.unwrap() >= stop.recorded_at);
    assert_eq!(
        (start.state, start.keyword.as_deref()),
        (OptState::OptedIn, Some("START"))
    );
    assert!(start.seq > stop.seq);
    // The opted-out list: the rider only (the driver opted back in), with its entry.
    let list = optouts_csv(&db).await;
    assert_eq!(list.len(), 2, "{list:?}");
    assert!(list[0].starts_with("seq,scope,participant,state,source,keyword,text,message_id"));
    assert!(
        list[1].contains(&format!(
            ",{rp},{RIDER},opted_out,keyword,UNSUBSCRIBE,UNSUBSCRIBE,SM"
        )),
        "{}",
        list[1]
    );
    // Filters: a time window before everything, and a state.
    let none = history(
        &db,
        &ExportFilter {
            until: Some(before),
            ..ExportFilter::default()
        },
    )
    .await;
    assert!(none.is_empty());
    let ins = history(
        &db,
        &ExportFilter {
            state: Some(OptState::OptedIn),
            ..ExportFilter::default()
        },
    )
    .await;
    assert_eq!(ins.len(), 1);

    // Retention: texts go first, then entries, never the one behind a current opt-out.
    drop(db);
    let relay_db = proxy_relay::Db::open(&proxy_relay::Database::parse(&url), 2)
        .await
        .unwrap();
    let all_of_it = Some(u64::MAX);
    assert_eq!(
        relay_db.purge_history(None, all_of_it).await.unwrap(),
        (0, 3)
    );
    assert_eq!(
        relay_db.purge_history(all_of_it, None).await.unwrap(),
        (2, 0)
    );
    relay_db.close().await;
    let db = OptOutDb::open(&url).await.unwrap();
    let left = history(&db, &ExportFilter::default()).await;
    assert_eq!(left.len(), 1, "{left:#?}");
    assert_eq!(
        (left[0].participant.as_str(), left[0].text.as_deref()),
        (RIDER, None)
    );
    assert_eq!(left[0].keyword.as_deref(), Some("UNSUBSCRIBE"));
}

async fn an_imported_list_is_honoured_and_a_rerun_changes_nothing(db: &TestDb) {
    // The first session's rider gets pool number +15550000100 (the default pool).
    let list = "phone_number,proxy_number,opted_out_at,notes\n\
                +15551110001,+15550000100,2025-03-14T09:30:00Z,\"from Twilio, March\"\n\
                +15553330003,+15550000100,,\n";
    {
        let store = OptOutDb::open(&db.url()).await.unwrap();
        let report = import(&store, list.as_bytes(), None).await.unwrap();
        assert_eq!((report.rows, report.recorded, report.unchanged), (2, 2, 0));
        let again = import(&store, list.as_bytes(), None).await.unwrap();
        assert_eq!(
            (again.recorded, again.unchanged),
            (0, 2),
            "a re-run records nothing"
        );
        let entries = history(&store, &ExportFilter::default()).await;
        assert_eq!(entries.len(), 2);
        assert!(entries.iter().all(|e| e.source == ChangeSource::Import));
        assert_eq!(
            entries[0].received_at,
            proxy_relay::parse_time("2025-03-14T09:30:00Z")
        );
        assert_eq!(entries[1].received_at, None);
    }
    let fake = FakeTwilio::start().await;
    let server = start_with_twilio(&db.url(), &fake, &[]).await;
    let c = client(&server);
    let session = c.create_session("ride-1", RIDER, DRIVER).await.unwrap();
    assert_eq!(session.participants[0].proxy_identifier, "+15550000100");
    let dp = session.participants[1].proxy_identifier.clone();
    c.message(DRIVER, &dp, "I'm outside").await.unwrap();
    assert!(fake.sent().is_empty(), "the imported opt-out is honoured");
    assert_eq!(server.app().metrics().refusals("ledger"), 1);
    server.shutdown().await.unwrap();
}

async fn a_bad_row_imports_nothing_and_is_named_by_line(db: &TestDb) {
    let store = OptOutDb::open(&db.url()).await.unwrap();
    let list = "participant,scope\n+1A,+1P\n,+1P\n+1B,\"+1P\nx\"\n+1C,+1P\n";
    match import(&store, list.as_bytes(), None).await {
        Err(OptOutsError::Rows(rows)) => {
            let lines: Vec<u64> = rows.iter().map(|r| r.line).collect();
            assert_eq!(lines, [3, 4], "{rows:?}");
            assert!(rows[0].reason.contains("participant"), "{}", rows[0].reason);
            assert!(
                rows[1].reason.contains("proxy number"),
                "{}",
                rows[1].reason
            );
        }
        other => panic!("expected bad rows, got {other:?}"),
    }
    assert!(
        history(&store, &ExportFilter::default()).await.is_empty(),
        "nothing imported"
    );
    for (csv, scope, says) in [
        ("number\n+1A\n", Some("+1P"), "participant"),
        ("participant\n+1A\n", None, "--scope"),
        (
            "participant,proxy_number\n+1A,+1P\n",
            Some("+1P"),
            "choose one",
        ),
    ] {
        let err = import(&store, csv.as_bytes(), scope).await.unwrap_err();
        assert!(err.to_string().contains(says), "{err}");
    }
}

#[test]
fn the_optouts_commands_import_and_export_through_the_configured_database() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("r.db");
    let list = dir.path().join("list.csv");
    std::fs::write(&list, "participant\n+15551110001\n+15551110002\n").unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_proxy-relay"))
            .arg("--database")
            .arg(&database)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[
        "optouts",
        "import",
        list.to_str().unwrap(),
        "--scope",
        "+15550000100",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 rows, 2 opted out"));
    let out = run(&["optouts", "export", "--scope", "+15550000100"]);
    assert!(out.status.success());
    let csv = String::from_utf8(out.stdout).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(csv.contains(",+15550000100,+15551110002,opted_out,import,"));
    let out = run(&["optouts", "export", "--since", "last tuesday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"last tuesday\""));
    std::fs::write(&list, "participant\n\"+1\nA\"\n").unwrap();
    let out = run(&[
        "optouts",
        "import",
        list.to_str().unwrap(),
        "--scope",
        "+1P",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
}

async fn the_admin_api_imports_and_streams_exports_behind_basic_auth(db: &TestDb) {
    let fake = FakeTwilio::start().await;
    let server = start_with_twilio(&db.url(), &fake, &[]).await;
    let url = format!("{}/v1/OptOuts", server.url());
    let http = reqwest::Client::new();
    // 2,500 rows: the export below spans three pages.
    let mut list = String::from("participant\n");
    for i in 0..2500 {
        list.push_str(&format!("+1555{i:07}\n"));
    }
    let r = http
        .post(format!("{url}?Scope=%2B15550000100"))
        .basic_auth(ACCOUNT_SID, Some(AUTH_TOKEN))
        .header("content-type", "text/csv")
        .body(list.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let report: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (report["rows"].as_u64(), report["recorded"].as_u64()),
        (Some(2500), Some(2500))
    );
    let r = http
        .get(format!("{url}?Format=jsonl&Scope=%2B15550000100"))
        .basic_auth(ACCOUNT_SID, Some(AUTH_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let text = r.text().await.unwrap();
    let entries: Vec<HistoryEntry> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 2500);
    assert!(
        entries.windows(2).all(|w| w[0].seq < w[1].seq),
        "in order, none twice"
    );
    let r = http
        .get(format!("{url}?What=history"))
        .basic_auth(ACCOUNT_SID, Some(AUTH_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(r.text().await.unwrap().lines().count(), 2501);
    // Bad parameters and bad rows are 400 with Proxy's error body; no credentials, 401.
    for (query, says) in [
        ("What=everything", "What"),
        ("Since=soon", "Since"),
        ("State=maybe", "State"),
    ] {
        let r = http
            .get(format!("{url}?{query}"))
            .basic_auth(ACCOUNT_SID, Some(AUTH_TOKEN))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["code"], 20001);
        assert!(body["message"].as_str().unwrap().contains(says), "{body}");
    }
    let r = http
        .post(&url)
        .basic_auth(ACCOUNT_SID, Some(AUTH_TOKEN))
        .body("participant,scope\n,+1P\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("line 2"));
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http.post(&url).body(list).send().await.unwrap();
    assert_eq!(r.status(), 401);
    server.shutdown().await.unwrap();
}
