//! Property tests for what the gateway reads from others: nft's JSON listing of our table
//! (observed state) and control-socket requests. Arbitrary input never panics; a real listing
//! with one byte changed parses or is refused; a valid request survives JSON unchanged.

use proptest::prelude::*;
use roamgw_gateway::cli::parse_cidr;
use roamgw_gateway::control::Request;
use roamgw_gateway::dataplane::nftables::observed;
use roamgw_wg::nftwatch::parse_notifications;

/// A few thousand cases per target in the suite; PROPTEST_CASES overrides (bench/fuzz.sh).
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok());
    ProptestConfig::with_cases(cases.unwrap_or(2000))
}

const LISTING: &str = include_str!("../src/dataplane/nftables/observed-sample.json");

fn request() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\"status\"".to_string()),
        any::<Option<u64>>().prop_map(|d| serde_json::json!({"reconcile": {"deadline_unix_ms": d}}).to_string()),
        ("[0-9]{1,5}(/(tcp|udp))?", any::<Option<u64>>()).prop_map(|(spec, d)| serde_json::json!({
            "change": {"change": {"add_port": {"spec": spec, "to": null, "allow_from": []}}, "deadline_unix_ms": d}
        }).to_string()),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn nft_listings_never_panic(text in ".{0,200}") {
        let _ = observed::parse(&text);
    }

    #[test]
    fn a_mutated_listing_parses_or_is_refused(at in 0..LISTING.len(), c in any::<char>()) {
        let mut chars: Vec<char> = LISTING.chars().collect();
        let at = at.min(chars.len() - 1);
        chars[at] = c;
        let text: String = chars.into_iter().collect();
        let _ = observed::parse(&text);
    }

    #[test]
    fn control_requests_never_panic_and_round_trip(text in ".{0,120}", valid in request()) {
        let _ = serde_json::from_str::<Request>(&text);
        if let Ok(request) = serde_json::from_str::<Request>(&valid) {
            let again = serde_json::to_string(&request).expect("serializes");
            let reparsed: Request = serde_json::from_str(&again).expect("parses again");
            prop_assert_eq!(serde_json::to_string(&reparsed).ok(), Some(again));
        }
    }

    #[test]
    fn netlink_notifications_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_notifications(&bytes, "roamgw", 2);
    }

    #[test]
    fn allow_from_cidrs_never_panic_and_round_trip(text in "[0-9./]{0,20}|.{0,20}", ip in any::<[u8; 4]>(), len in 0u8..=32) {
        let _ = parse_cidr(&text);
        let net = ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(ip), len).expect("prefix").trunc();
        prop_assert_eq!(parse_cidr(&net.to_string()), Ok(net));
    }
}
