//! A scripted masked conversation between a rider and a driver, printing for each inbound
//! message what the relay decided: forwarded or dropped, auto-reply, notices, ledger.
//!
//! ```text
//! cargo run --example conversation
//! ```
//!
//! The host's side is reduced to printing: a real backend would send `forwarded()` and
//! `reply()` through its SMS provider, log the notices, and fire its status callback.

use proxy_optout::{Inbound, MemoryStore, Participant, Relay};

const RIDER: &str = "+15551110001";
const DRIVER: &str = "+15552220002";
const PROXY: &str = "+15550000100";
const PROXY_2: &str = "+15550000200";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut relay = Relay::new(MemoryStore::new());
    relay.sessions_mut().open(
        "ride-1042",
        Participant::new(RIDER, PROXY)?,
        Participant::new(DRIVER, PROXY)?,
    )?;

    let script: &[(&str, &str, &str)] = &[
        ("rider", RIDER, "Hi, I'm at the blue door"),
        ("driver", DRIVER, "On my way, 3 min"),
        ("rider", RIDER, "STOP"),
        ("driver", DRIVER, "I'm outside"),
        ("rider", RIDER, "Sorry, wrong button. Where are you?"),
        ("rider", RIDER, "help"),
        ("rider", RIDER, "UNSTOP"),
        ("driver", DRIVER, "Silver Corolla, by the gate"),
        ("rider", RIDER, "stop at the corner please"),
        ("driver", DRIVER, "ARRET"),
        ("driver", DRIVER, "Cancel"),
        ("rider", RIDER, "Thanks!"),
        ("stranger", "+15559990009", "hello? who is this"),
    ];

    println!("session ride-1042: rider {RIDER} and driver {DRIVER}, both via {PROXY}\n");
    for &(who, from, body) in script {
        let outcome = relay.handle(&Inbound::sms(from, PROXY, body))?;
        println!("{who:>8}: {body:?}");
        println!("          {outcome}");
    }

    // Opt-outs are per proxy number, not per pool: in a new ride through another number the
    // driver, who opted out of the first one, is reached again.
    relay.sessions_mut().close("ride-1042");
    relay.sessions_mut().open(
        "ride-1043",
        Participant::new(RIDER, PROXY_2)?,
        Participant::new(DRIVER, PROXY_2)?,
    )?;
    println!("\nsession ride-1043: the same two people via {PROXY_2}\n");
    let outcome = relay.handle(&Inbound::sms(RIDER, PROXY_2, "Same pickup as last time?"))?;
    println!("{:>8}: {:?}", "rider", "Same pickup as last time?");
    println!("          {outcome}");

    println!("\nledger:");
    for (scope, who, state) in relay.store().snapshot() {
        println!("  ({scope}, {who}) {state}");
    }
    Ok(())
}
